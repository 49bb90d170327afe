package scorer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
)

// TestReplicaAccountsForEveryRecord runs a coordinator and a worker over
// loopback gRPC, a scorer replica on an in-process kfake broker, and checks
// that every record produced after the model was ready is scored (on the
// scores topic) or dead-lettered with its reason, alerts naming the version.
func TestReplicaAccountsForEveryRecord(t *testing.T) {
	const p = 8
	log := testkit.Quiet()
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 2, "alerts": 1, "dlq": 1, "scores": 2}); err != nil {
		t.Fatal(err)
	}

	// Coordinator and one worker.
	spec := ae.Spec{Input: p, Hidden: []int{16}, Code: 2, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear}
	co := testenv.StartCoordinator(t, coordinator.Config{Spec: spec, LR: 3e-3, Batch: 256, Holdout: 0.2, WarmupRecords: 500,
		CheckpointRounds: 50, Deadline: 5 * time.Second})
	srv, conn := co.Server, co.Conn
	go func() { _ = srv.Run(ctx) }()
	w, err := trainer.New(trainer.Config{ID: "w1", Conn: conn, Log: log, Source: trainer.NewSynth(1, 1, p, 2, 0.2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(ctx) }()

	cache, err := checkpoint.Open(filepath.Join(t.TempDir(), "s.db"), checkpoint.Options{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq", ScoresTopic: "scores",
		Format: stream.JSONArray, Coordinator: conn, Cache: cache, Log: log, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = rep.Run(ctx) }()
	if !testkit.Until(ctx, func() bool {
		m := rep.model.Load()
		return m != nil && m.Threshold > 0 && m.Version >= 4
	}) {
		t.Fatalf("no model with a threshold in time (coordinator %+v)", srv.Snapshot())
	}

	// Produce records of the stream's kind, with spikes and malformed ones.
	src := trainer.NewSynth(1, 99, p, 2, 0.2, 0)
	codec, _ := stream.NewCodec(stream.JSONArray, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"})
	wr, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var msgs []stream.Record
	wantReason := map[string]string{}
	rec := make([]float64, p)
	for i := 0; i < n; i++ {
		if _, err := src.Read(rec); err != nil {
			t.Fatal(err)
		}
		key := strconv.Itoa(i)
		v := codec.Encode(nil, rec)
		switch i % 100 {
		case 13:
			v, wantReason[key] = []byte(`{"not":"an array"}`), "bad_json"
		case 37:
			v, wantReason[key] = []byte(`[1,2,3]`), "wrong_length"
		case 61:
			v, wantReason[key] = []byte(`[1,2,3,"x",5,6,7,8]`), "not_a_number"
		}
		msgs = append(msgs, stream.Record{Key: []byte(key), Value: v})
	}
	if err := wr.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	wr.Close()

	// Every record comes out on the scores topic or the dead-letter topic.
	seen := map[string]string{} // key -> "scored" or dead-letter reason
	read := func(topic string, f func(stream.Record)) {
		r, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: topic, Group: "check-" + topic, StartFirst: true, MaxWait: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		want := n - len(wantReason)
		if topic == "dlq" {
			want = len(wantReason)
		}
		got := 0
		for got < want {
			b, err := r.Batch(ctx)
			if err != nil {
				t.Fatalf("%s: %d of %d records after %v", topic, got, want, err)
			}
			for _, m := range b {
				if _, dup := seen[string(m.Key)]; !dup {
					got++
				}
				f(m)
			}
		}
	}
	read("scores", func(m stream.Record) { seen[string(m.Key)] = "scored" })
	read("dlq", func(m stream.Record) { seen[string(m.Key)] = header(m, HeaderReason) })
	for i := 0; i < n; i++ {
		key := strconv.Itoa(i)
		want := wantReason[key]
		if want == "" {
			want = "scored"
		}
		if seen[key] != want {
			t.Errorf("record %s: %q, want %q", key, seen[key], want)
		}
	}
	if rep.Version() < 4 {
		t.Errorf("replica at version %d", rep.Version())
	}
	t.Logf("%d records: %d dead-lettered, the rest scored; replica at version %d; coordinator %+v", n, len(wantReason), rep.Version(), srv.Snapshot().Round)
}

// TestReplicaWithoutCoordinator: with the coordinator unreachable, a
// replica with no model at all consumes and commits nothing; a replica
// started from a cache that holds a checkpoint scores every record, all of
// them, since the first committed none.
func TestReplicaWithoutCoordinator(t *testing.T) {
	const p, n = 8, 300
	log := testkit.Quiet()
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 2, "alerts": 1, "dlq": 1, "scores": 1}); err != nil {
		t.Fatal(err)
	}
	events := newSynthProducer(t, brokers, "events")
	events.produce(ctx, n)
	src := events.src
	// Nothing listens on a port just closed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	conn, err := grpc.NewClient(dead, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	replica := func(cache string) *Replica {
		store, err := checkpoint.Open(cache, checkpoint.Options{Keep: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		r, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq", ScoresTopic: "scores",
			Format: stream.JSONArray, Coordinator: conn, Cache: store, Log: log, MaxWait: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// No model: nothing consumed, nothing committed.
	empty := replica(filepath.Join(t.TempDir(), "empty.db"))
	ctx1, stop1 := context.WithTimeout(ctx, 1500*time.Millisecond)
	if err := empty.Run(ctx1); err != nil {
		t.Errorf("a replica with no model: %v", err)
	}
	stop1()
	if got := empty.Processed.Load(); got != 0 {
		t.Errorf("a replica with no model processed %d records", got)
	}
	if committed := committedOffsets(t, ctx, brokers, "recon-scorer", "events", 2); committed != 0 {
		t.Errorf("a replica with no model committed offsets up to %d records", committed)
	}

	// A cached checkpoint: scores everything with it.
	cachePath := filepath.Join(t.TempDir(), "cached.db")
	store, err := checkpoint.Open(cachePath, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	train := make([]float64, 2000*p)
	if _, err := src.Read(train); err != nil {
		t.Fatal(err)
	}
	cfg := fit.Default()
	cfg.Spec.Output, cfg.Epochs = ae.Linear, 5
	res, err := fit.Fit(ctx, cfg, train, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Checkpoint(nil)
	c.Version, c.Optimizer = 3, nil
	if err := store.Put(c); err != nil {
		t.Fatal(err)
	}
	store.Close()
	cached := replica(cachePath)
	if cached.Version() != 3 {
		t.Fatalf("replica started at version %d, want the cached 3", cached.Version())
	}
	ctx2, stop2 := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cached.Run(ctx2) }()
	testkit.Until(ctx, func() bool { return cached.Processed.Load() >= n })
	stop2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := cached.Processed.Load(); got != n {
		t.Errorf("the cached replica processed %d records, want all %d", got, n)
	}
	if committed := committedOffsets(t, ctx, brokers, "recon-scorer", "events", 2); committed != n {
		t.Errorf("committed offsets cover %d records, want %d", committed, n)
	}
}

// committedOffsets sums group's committed offsets over topic's partitions
// (a partition with none counts 0).
func committedOffsets(t *testing.T, ctx context.Context, brokers []string, group, topic string, partitions int) int64 {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(brokers...)}
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(resp.Error, kafka.GroupIdNotFound) {
		return 0 // the group never joined, let alone committed
	}
	if resp.Error != nil {
		t.Fatal(resp.Error)
	}
	var sum int64
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

// TestReplicaRejoinsOverAStuckPartition: a member of the scorers' group
// that holds a partition and never commits (as a partition the group lost
// would look) is noticed by the replica's watchdog, which rejoins the
// group; the replica goes on scoring its own partition meanwhile.
func TestReplicaRejoinsOverAStuckPartition(t *testing.T) {
	const p = 8
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 2, "alerts": 1, "dlq": 1}); err != nil {
		t.Fatal(err)
	}
	// The squatter joins first and sits on what it is given.
	squat, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: "events", Group: "recon-scorer", StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	newSynthProducer(t, brokers, "events").produce(ctx, 400)
	if _, err := squat.Batch(ctx); err != nil { // joined, holding both partitions for now
		t.Fatal(err)
	}

	store := cacheUntrained(t, p)
	var logs testkit.LogBuffer
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq",
		Format: stream.JSONArray, Cache: store, Log: slog.New(slog.NewTextHandler(&logs, nil)), MaxWait: 5 * time.Millisecond,
		StuckAfter: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rep.Run(rctx) }()
	if !testkit.Until(ctx, func() bool { return strings.Contains(logs.String(), " kind=stuck_partition ") }) {
		t.Fatalf("no stuck partition noticed; processed %d\n%s", rep.Processed.Load(), logs.String())
	}
	// The warning names the member holding the partition: the squatter,
	// a live member of the group.
	if line := logs.String(); !regexp.MustCompile(`level=WARN .*kind=stuck_partition .* held_by="[^"]*@[^"]* \([^"]+\)" group_state=Stable`).MatchString(line) {
		t.Errorf("the stuck-partition warning does not name its holder:\n%s", line)
	}
	testkit.Until(ctx, func() bool { return rep.Processed.Load() > 0 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := rep.Processed.Load(); n == 0 || n >= 400 {
		t.Errorf("processed %d records: want its own partition's, not the squatter's", n)
	}
}

// TestReplicaSurvivesFailedCommits: the broker refuses the replica's
// offset commits for a while (closing the connection, as a restarting
// broker does): the replica keeps running, and once commits go through
// again the committed offsets cover every record, each of which was
// scored. A commit that fails while the replica stops does not make Run
// fail either: those records are simply re-delivered.
func TestReplicaSurvivesFailedCommits(t *testing.T) {
	const p = 8
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	const (
		pass = iota
		fail
		hold // wait for release, then fail
	)
	var mode, failures atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	var heldOnce sync.Once
	cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		switch mode.Load() {
		case fail:
			failures.Add(1)
			return nil, errors.New("commit refused by the test"), true
		case hold:
			heldOnce.Do(func() { close(held) })
			cluster.SleepControl(func() { <-release })
			failures.Add(1)
			return nil, errors.New("commit refused by the test"), true
		}
		return nil, nil, false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 2, "alerts": 1, "dlq": 1, "scores": 1}); err != nil {
		t.Fatal(err)
	}
	events := newSynthProducer(t, brokers, "events")
	produce := func(n int) { t.Helper(); events.produce(ctx, n) }

	store := cacheUntrained(t, p)
	var logs testkit.LogBuffer
	metrics := NewMetrics(nil)
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq", ScoresTopic: "scores",
		Format: stream.JSONArray, Cache: store, Log: slog.New(slog.NewTextHandler(&logs, nil)), MaxWait: 5 * time.Millisecond,
		Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- rep.Run(rctx) }()
	running := func(what string) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("%s: Run returned %v\n%s", what, err, logs.String())
		default:
		}
	}

	// Commits fail: the replica goes on.
	mode.Store(fail)
	produce(300)
	testkit.Until(ctx, func() bool { running("while commits fail"); return failures.Load() >= 3 })
	time.Sleep(500 * time.Millisecond) // simulates an outage of commits going on: the replica must keep running through it
	running("after commits failed")
	if got := testutil.ToFloat64(metrics.commitFailures); got < 1 {
		t.Errorf("recon_scorer_commit_failures_total is %v after %d refused commits", got, failures.Load())
	}
	if got := testutil.ToFloat64(metrics.commitFailing); got != 1 {
		t.Errorf("recon_scorer_commit_failing is %v while commits fail", got)
	}

	// Commits pass again: every record is committed, and was scored.
	mode.Store(pass)
	produce(100)
	if !testkit.Until(ctx, func() bool {
		running("once commits pass")
		return committedOffsets(t, ctx, brokers, "recon-scorer", "events", 2) >= int64(events.n)
	}) {
		t.Fatalf("committed offsets never covered the %d records\n%s", events.n, logs.String())
	}
	if got := testutil.ToFloat64(metrics.commitFailing); got != 0 {
		t.Errorf("recon_scorer_commit_failing is %v once commits work again", got)
	}
	scored := map[string]bool{}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	sr, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: "scores", Group: "check", StartFirst: true, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for len(scored) < events.n && sctx.Err() == nil {
		b, err := sr.Batch(sctx)
		if err != nil {
			break
		}
		for _, m := range b {
			scored[string(m.Key)] = true
		}
	}
	scancel()
	sr.Close()
	if len(scored) != events.n {
		t.Errorf("%d of %d records on the scores topic", len(scored), events.n)
	}

	// A commit fails while the replica stops: Run still returns nil.
	mode.Store(hold)
	produce(100)
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatalf("no commit attempted for the last records\n%s", logs.String())
	}
	stop()
	time.Sleep(100 * time.Millisecond) // simulates a commit still in flight well after the stop
	close(release)
	mode.Store(fail)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("a commit failing while stopping made Run fail: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return 10 s after its context ended")
	}

	// Commits that keep failing for longer than CommitGiveUp end Run with
	// an error saying so.
	mode.Store(fail)
	quitter, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq",
		Format: stream.JSONArray, Cache: store, Log: testkit.Quiet(), MaxWait: 5 * time.Millisecond, CommitGiveUp: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	qdone := make(chan error, 1)
	go func() { qdone <- quitter.Run(ctx) }()
	for i := 0; i < 20; i++ { // records keep coming, so commits keep being tried
		produce(10)
		select {
		case err := <-qdone:
			if err == nil || !strings.Contains(err.Error(), "offset commits have failed for") {
				t.Errorf("Run returned %v, want the commits' failure", err)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Error("Run went on 10 s after commits began failing, CommitGiveUp 1 s")
}

// synthProducer writes synthetic records of 8 features as JSON arrays to
// a topic, keyed by their index.
type synthProducer struct {
	t     *testing.T
	w     *stream.Writer
	src   *trainer.Synth
	codec *stream.Codec
	n     int // records written so far
}

func newSynthProducer(t *testing.T, brokers []string, topic string) *synthProducer {
	t.Helper()
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	codec, _ := stream.NewCodec(stream.JSONArray, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"})
	return &synthProducer{t: t, w: w, src: trainer.NewSynth(1, 5, 8, 2, 0.2, 0), codec: codec}
}

// produce writes the next n records.
func (sp *synthProducer) produce(ctx context.Context, n int) {
	sp.t.Helper()
	msgs := make([]stream.Record, 0, n)
	rec := make([]float64, 8)
	for range n {
		if _, err := sp.src.Read(rec); err != nil {
			sp.t.Fatal(err)
		}
		msgs = append(msgs, stream.Record{Key: []byte(strconv.Itoa(sp.n)), Value: sp.codec.Encode(nil, rec)})
		sp.n++
	}
	if err := sp.w.Write(ctx, msgs...); err != nil {
		sp.t.Fatal(err)
	}
}

// cacheUntrained returns a checkpoint store, closed at cleanup, holding an
// untrained model of p features (code width 2) as version 1.
func cacheUntrained(t *testing.T, p int) *checkpoint.Store {
	t.Helper()
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "cache.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, _ := ae.New(ae.Spec{Input: p, Code: 2})
	c := checkpoint.Build(m, nil, nil, nil)
	c.Version = 1
	if err := store.Put(c); err != nil {
		t.Fatal(err)
	}
	return store
}
