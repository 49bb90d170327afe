//go:build !race

// The race detector slows training about tenfold, too slow for a model to
// settle within the stream; make test runs this package without it too.

package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

const (
	p          = 30
	truthKey   = "recon-truth"
	eventTopic = "events"
)

// names are the feature names f0..f29.
func names() []string {
	n := make([]string, p)
	for i := range n {
		n[i] = "f" + strconv.Itoa(i)
	}
	return n
}

// gen makes the seed's kind of records: rank 3 plus noise 0.4, with 1%
// anomalies of every kind and 0.5% malformed records of four kinds.
type gen struct {
	rng    *rand.Rand
	basis  []float64
	codec  *stream.Codec
	scales []float64
	next   int
}

func newGen(seed uint64) *gen {
	c, _ := stream.NewCodec(stream.JSONArray, names())
	b := synth.Basis(rand.New(rand.NewPCG(1, 0xba5e)), 3, p)
	return &gen{rng: rand.New(rand.NewPCG(seed, 7)), basis: b, codec: c, scales: synth.Scales(b, 3, 0.4)}
}

// malformed kinds and the dead-letter reason each must get.
var malformed = []struct{ value, reason string }{
	{`{"f0": 1`, "bad_json"},
	{`[1, 2, 3]`, "wrong_length"},
	{`[NaN]`, "non_finite"},
	{`"text"`, "bad_json"},
}

// batch returns n records keyed by their sequence number; truth is the
// header: normal, an anomaly kind, or "malformed:<reason>".
func (g *gen) batch(n int) []stream.Record {
	msgs := make([]stream.Record, n)
	rec := make([]float64, p)
	for i := range msgs {
		synth.Sample(g.rng, rec, g.basis, 3, 0.4)
		truth := "normal"
		var v []byte
		switch u := g.rng.Float64(); {
		case u < 0.01:
			truth = synth.Kinds[g.rng.IntN(len(synth.Kinds))]
			synth.Inject(g.rng, rec, g.scales, truth)
		case u < 0.015:
			switch k := g.rng.IntN(6); k {
			case 4: // NaN in a number field
				v = g.codec.Encode(nil, rec)
				v = []byte(`[NaN` + string(v[bytes.IndexByte(v, ','):]))
				truth = "malformed:non_finite"
			case 5: // text in a number field
				v = g.codec.Encode(nil, rec)
				v = []byte(`["x"` + string(v[bytes.IndexByte(v, ','):]))
				truth = "malformed:not_a_number"
			default:
				v, truth = []byte(malformed[k].value), "malformed:"+malformed[k].reason
			}
		}
		if v == nil {
			v = g.codec.Encode(nil, rec)
		}
		msgs[i] = stream.Record{Key: []byte(strconv.Itoa(g.next)), Value: v, Headers: []stream.Header{{Key: truthKey, Value: []byte(truth)}}}
		g.next++
	}
	return msgs
}

// cluster is a coordinator with Kafka trainers and scorer replicas.
type cluster struct {
	t       *testing.T
	brokers []string
	co      *testenv.Coordinator
}

func startCluster(t *testing.T, ctx context.Context, cfg coordinator.Config) *cluster {
	brokers := testkit.Kafka(t)
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{eventTopic: 4, "alerts": 1, "dlq": 1, "scores": 4}); err != nil {
		t.Fatal(err)
	}
	co := testenv.StartCoordinator(t, cfg)
	go func() { _ = co.Server.Run(ctx) }()
	return &cluster{t: t, brokers: brokers, co: co}
}

// trainer starts a worker consuming the events topic in group recon-trainer.
func (c *cluster) trainer(ctx context.Context, id string) {
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: c.brokers, Topic: eventTopic, Group: "recon-trainer", StartFirst: true})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { rd.Close() })
	codec, _ := stream.NewCodec(stream.JSONArray, names())
	w, err := trainer.New(trainer.Config{ID: id, Conn: c.co.Conn, Log: testkit.Quiet(), Replay: 0.75,
		Source: trainer.NewKafkaSource(ctx, rd, codec, testkit.Quiet(), nil)})
	if err != nil {
		c.t.Fatal(err)
	}
	go func() { _ = w.Run(ctx) }()
}

// scorer starts a replica with its own cache file; when ctx ends it
// publishes and commits the batch in hand for up to drain (1 ns: it stops
// without committing what it has not finished, as if it crashed).
func (c *cluster) scorer(ctx context.Context, cache string, drain time.Duration) *scorer.Replica {
	store, err := checkpoint.Open(cache, checkpoint.Options{Keep: 2})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { store.Close() })
	r, err := scorer.NewReplica(scorer.ReplicaConfig{Brokers: c.brokers, Topic: eventTopic, AlertsTopic: "alerts", DLQTopic: "dlq",
		ScoresTopic: "scores", ID: "scorer-" + filepath.Base(cache), Format: stream.JSONArray, Coordinator: c.co.Conn, Cache: store, Log: testkit.Quiet(), MaxWait: 5 * time.Millisecond,
		DrainTimeout: drain})
	if err != nil {
		c.t.Fatal(err)
	}
	go func() {
		if err := r.Run(ctx); err != nil {
			c.t.Errorf("scorer replica: %v", err)
		}
	}()
	return r
}

// outcome collects, per record key, what came out of the scorers.
type outcome struct {
	scored   map[string]scorer.ScoreRecord
	dead     map[string]string // key -> reason
	alerts   map[string][]scorer.Alert
	alertIDs map[string]int // alert id -> copies
	rescored int            // records that came out on the scores topic more than once
}

// collect reads the scores, dead-letter and alerts topics until every key
// in want has come out on scores or dead letters, or ctx ends.
func (c *cluster) collect(ctx context.Context, want map[string]bool) *outcome {
	o := &outcome{scored: map[string]scorer.ScoreRecord{}, dead: map[string]string{}, alerts: map[string][]scorer.Alert{}, alertIDs: map[string]int{}}
	var mu sync.Mutex
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k := range want {
			_, s := o.scored[k]
			_, d := o.dead[k]
			if !s && !d {
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	read := func(topic string, f func(stream.Record)) {
		r, err := stream.NewReader(stream.ReaderConfig{Brokers: c.brokers, Topic: topic, Group: "check-" + topic, StartFirst: true, MaxWait: 5 * time.Millisecond})
		if err != nil {
			c.t.Error(err)
			return
		}
		defer r.Close()
		for {
			b, err := r.Batch(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			for _, m := range b {
				f(m)
			}
			mu.Unlock()
		}
	}
	go read("scores", func(m stream.Record) {
		var s scorer.ScoreRecord
		if err := json.Unmarshal(m.Value, &s); err != nil {
			c.t.Errorf("scores topic: %v", err)
		}
		if !strings.HasPrefix(s.Scorer, "scorer-") {
			c.t.Errorf("score %s names no replica of this test: %q", s.ID, s.Scorer)
		}
		if _, dup := o.scored[string(m.Key)]; dup {
			o.rescored++
		}
		o.scored[string(m.Key)] = s
	})
	go read("dlq", func(m stream.Record) { o.dead[string(m.Key)] = header(m, scorer.HeaderReason) })
	go read("alerts", func(m stream.Record) {
		var a scorer.Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			c.t.Errorf("alerts topic: %v", err)
		}
		o.alerts[string(m.Key)] = append(o.alerts[string(m.Key)], a)
		o.alertIDs[a.ID]++
	})
	testkit.Until(ctx, done)
	// A record's alert is written before its score but read on another
	// topic: wait until every alerting score's alert is in too (what is
	// still missing after 5 s is the checks' to report).
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	testkit.Until(actx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k, s := range o.scored {
			if s.Alert && len(o.alerts[k]) == 0 {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	return o
}

// lagWatch measures how long a published checkpoint takes to reach every
// scorer replica.
type lagWatch struct {
	mu  sync.Mutex
	max time.Duration
	n   int
}

func (l *lagWatch) run(ctx context.Context, co *coordinator.Server, replicas func() []*scorer.Replica) {
	var seen uint64
	var at time.Time
	tick := time.NewTicker(2 * time.Millisecond) // the resolution of the lag measured
	defer tick.Stop()
	for ctx.Err() == nil {
		<-tick.C
		v := co.Snapshot().Version
		if v > seen && at.IsZero() {
			seen, at = v, time.Now() // published (within 2 ms)
		}
		if at.IsZero() {
			continue
		}
		all := true
		for _, r := range replicas() {
			if r.Version() < seen && r.Version() != 0 {
				all = false
			}
		}
		if all {
			l.mu.Lock()
			l.max, l.n = max(l.max, time.Since(at)), l.n+1
			l.mu.Unlock()
			at = time.Time{}
		}
	}
}

func header(m stream.Record, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// TestPipeline100k is the Kafka issue's first acceptance test: 100,000
// records with 1% anomalies and 0.5% malformed ones stream through 2
// trainers and 2 scorers. Every record produced after the model has a
// threshold must come out scored or dead-lettered with the right reason,
// and the alerts must reach recall 0.95 and precision 0.9 on the injected
// anomalies.
func TestPipeline100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 records through the whole pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := coordinator.Config{Spec: fit.AutoSpec(coordinator.DefaultSpec, p, nil), Features: names(), Batch: 256, Holdout: 0.1,
		// 1% of the stream is anomalous: precision 0.9 needs false alarms
		// on fewer than 0.1% of normal records. Early in a stream (the
		// window filling, the model learning) they run above a small
		// configured rate (0.03-0.035% measured here at 0.02%): ask 0.02%.
		SkipAnomalies: true, Calib: calib.Config{AlertRate: 0.0002}, WarmupRecords: 1000, CheckpointRounds: 25, CheckpointInterval: time.Second, Deadline: 5 * time.Second,
		Pace: pace.Config{Maintain: pace.DefaultMaintain}} // the training budget of coordinator's defaults
	cfg.Spec.Input = p
	cfg.AutoCode = true         // the code width from the stream's spectrum: its rank, 3
	cfg.Spec.Output = ae.Linear // unbounded records with one-feature spikes: see tools/demo
	c := startCluster(t, ctx, cfg)
	c.trainer(ctx, "t1")
	c.trainer(ctx, "t2")
	dir := t.TempDir()
	s1 := c.scorer(ctx, filepath.Join(dir, "s1.db"), 0)
	ctx2, stop2 := context.WithCancel(ctx)
	defer stop2()
	s2 := c.scorer(ctx2, filepath.Join(dir, "s2.db"), time.Nanosecond)
	replicas := []*scorer.Replica{s1, s2}
	var lag lagWatch
	go lag.run(ctx, c.co.Server, func() []*scorer.Replica { lag.mu.Lock(); defer lag.mu.Unlock(); return replicas })

	wr, err := stream.NewWriter(stream.WriterConfig{Brokers: c.brokers, Topic: eventTopic})
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	g := newGen(2026)
	const total, chunk, rate = 100_000, 500, 5000 // records/s
	truth := map[string]string{}
	ready := -1 // records produced before both scorers had a threshold
	start := time.Now()
	for g.next < total {
		if ready < 0 && s1.Threshold() > 0 && s2.Threshold() > 0 {
			ready = g.next
			st := c.co.Server.Snapshot()
			t.Logf("both scorers have a threshold after %d records (%.1fs): coordinator %+v", ready, time.Since(start).Seconds(), st)
			if st.Code != 3 {
				t.Errorf("automatic code width %d on a rank-3 stream, want 3", st.Code)
			}
		}
		if g.next == 75_000 {
			// Stop a scorer mid-stream without committing what it holds,
			// and start a replacement with its own cache.
			stop2()
			s3 := c.scorer(ctx, filepath.Join(dir, "s3.db"), 0)
			lag.mu.Lock()
			replicas = []*scorer.Replica{s1, s3}
			lag.mu.Unlock()
			t.Logf("scorer 2 stopped after %d records; scorer 3 started", g.next)
		}
		msgs := g.batch(chunk)
		for _, m := range msgs {
			truth[string(m.Key)] = header(m, truthKey)
		}
		if err := wr.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		if d := time.Duration(float64(g.next)/rate*float64(time.Second)) - time.Since(start); d > 0 {
			time.Sleep(d) // simulates a stream arriving at rate records a second
		}
	}
	if ready < 0 {
		t.Fatalf("no threshold after %d records: coordinator %+v", total, c.co.Server.Snapshot())
	}
	want := map[string]bool{}
	for i := ready; i < total; i++ {
		want[strconv.Itoa(i)] = true
	}
	o := c.collect(ctx, want)

	var missing, wrongReason, tp, fp, fn, anomalies int
	missed := map[string]int{}
	versions := map[uint64]int{}
	for k := range want {
		tr := truth[k]
		s, scored := o.scored[k]
		reason, dead := o.dead[k]
		switch {
		case !scored && !dead:
			missing++
			continue
		case len(tr) > 10 && tr[:10] == "malformed:":
			if !dead || reason != tr[10:] {
				wrongReason++
				if wrongReason <= 5 {
					t.Errorf("record %s (%s): dead-lettered %v with reason %q", k, tr, dead, reason)
				}
			}
			continue
		case dead:
			t.Errorf("record %s (%s) dead-lettered: %q", k, tr, reason)
			continue
		}
		versions[s.Version]++
		alerted := len(o.alerts[k]) > 0
		if alerted != s.Alert {
			t.Errorf("record %s: scores topic says alert=%v, the alerts topic has %d", k, s.Alert, len(o.alerts[k]))
		}
		if tr != "normal" {
			anomalies++
		}
		for _, a := range o.alerts[k] {
			if a.Model.Version == 0 || a.ID != o.alerts[k][0].ID {
				t.Errorf("record %s: alert %s names version %d", k, a.ID, a.Model.Version)
			}
		}
		if as := o.alerts[k]; len(as) == 1 && as[0].Model.Version != s.Version {
			t.Errorf("record %s: alert names version %d, its score version %d", k, as[0].Model.Version, s.Version)
		}
		switch {
		case tr != "normal" && alerted:
			tp++
		case tr != "normal":
			fn++
			missed[tr]++
		case alerted:
			fp++
		}
	}
	dupAlerts := 0
	for _, n := range o.alertIDs {
		if n > 1 {
			dupAlerts++
		}
	}
	precision, recall := float64(tp)/float64(max(tp+fp, 1)), float64(tp)/float64(max(tp+fn, 1))
	t.Logf("%d records after the threshold: %d missing, %d wrong dead-letter reasons; %d anomalies: precision %.3f recall %.3f (tp %d fp %d fn %d, missed %v); scored by %d versions; %d records scored twice, %d alerts written twice (same id); coordinator %+v",
		len(want), missing, wrongReason, anomalies, precision, recall, tp, fp, fn, missed, len(versions), o.rescored, dupAlerts, c.co.Server.Snapshot())
	lag.mu.Lock() // the watcher still runs
	lagMax, lagN := lag.max, lag.n
	lag.mu.Unlock()
	if lagN == 0 {
		t.Error("no checkpoint swap was measured: the 1 s bound was not checked")
	}
	if lagMax > time.Second {
		t.Errorf("a checkpoint reached a scorer %v after it was published (%d checks); want within 1s", lagMax, lagN)
	}
	t.Logf("checkpoint publication to scorer swap: %d versions seen, slowest %v", lagN, lagMax)
	if missing > 0 {
		t.Errorf("%d records produced after the threshold were neither scored nor dead-lettered", missing)
	}
	if recall < 0.95 || precision < 0.9 {
		t.Errorf("precision %.3f recall %.3f: want at least 0.9 and 0.95", precision, recall)
	}
}
