package scorer

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// scriptedCoordinator streams its checkpoints to a watcher one by one,
// each when the test sends on next.
type scriptedCoordinator struct {
	reconv1.UnimplementedCoordinatorServer
	next chan *reconv1.Checkpoint
}

func (s *scriptedCoordinator) WatchCheckpoints(_ *reconv1.WatchCheckpointsRequest, st reconv1.Coordinator_WatchCheckpointsServer) error {
	for {
		select {
		case c := <-s.next:
			if err := st.Send(c); err != nil {
				return err
			}
		case <-st.Context().Done():
			return nil
		}
	}
}

func lineageCheckpoint(t *testing.T, version uint64, lineage string) *reconv1.Checkpoint {
	t.Helper()
	m, err := ae.New(ae.Spec{Input: 3, Code: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := checkpoint.Build(m, nil, nil, nil)
	c.Version, c.Lineage = version, lineage
	return c
}

// A scorer holding version 30 of lineage A: a coordinator that started
// over (lineage B, version 1) is switched to at once, with a warning that
// says so, and the cache holds only B's checkpoint; then B going back
// (version 5, then 3: its store restored) is switched to with its own
// warning; a lower version without a lineage (an older coordinator) is
// ignored as before.
func TestScorerFollowsALineageChange(t *testing.T) {
	cache, err := checkpoint.Open(filepath.Join(t.TempDir(), "cache.db"), checkpoint.Options{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	if err := cache.Put(lineageCheckpoint(t, 30, "A")); err != nil {
		t.Fatal(err)
	}
	fake := &scriptedCoordinator{next: make(chan *reconv1.Checkpoint)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, fake)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var logs testkit.LogBuffer
	metrics := NewMetrics(nil)
	r, err := NewReplica(ReplicaConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t", AlertsTopic: "a", DLQTopic: "d",
		Cache: cache, Log: slog.New(slog.NewTextHandler(&logs, nil)), Coordinator: conn, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	if r.Version() != 30 {
		t.Fatalf("cached version %d, want 30", r.Version())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.watch(ctx)
	send := func(c *reconv1.Checkpoint, want uint64) {
		t.Helper()
		select {
		case fake.next <- c:
		case <-time.After(5 * time.Second):
			t.Fatal("the scorer is not watching")
		}
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if !testkit.Until(wctx, func() bool { return r.Version() == want }) {
			t.Fatalf("after version %d of lineage %q the scorer uses %d, want %d", c.GetVersion(), c.GetLineage(), r.Version(), want)
		}
	}
	changes := func(kind string) float64 { return testutil.ToFloat64(metrics.lineageChanges.WithLabelValues(kind)) }
	send(lineageCheckpoint(t, 1, "B"), 1)
	if changes(changeNewLineage) != 1 || changes(changeWentBack) != 0 {
		t.Errorf("after a new lineage: new_lineage %v, went_back %v; want 1, 0", changes(changeNewLineage), changes(changeWentBack))
	}
	if c, err := cache.Latest(); err != nil || c.GetVersion() != 1 || c.GetLineage() != "B" {
		t.Errorf("cache latest %d %q (%v), want B's version 1 alone", c.GetVersion(), c.GetLineage(), err)
	}
	send(lineageCheckpoint(t, 5, "B"), 5)
	send(lineageCheckpoint(t, 3, "B"), 3)
	if changes(changeWentBack) != 1 {
		t.Errorf("after a store that went back: went_back %v, want 1", changes(changeWentBack))
	}
	send(lineageCheckpoint(t, 2, ""), 3)  // unknown lineage: versions never go down
	send(lineageCheckpoint(t, 4, "B"), 4) // taken only once the one before was
	if a, b := changes(changeNewLineage), changes(changeWentBack); a != 1 || b != 1 {
		t.Errorf("recon_scorer_lineage_changes_total new_lineage %v, went_back %v; want 1 each", a, b)
	}
}

// The scorer's gauges tell the truth between batches: the model version
// and threshold are the cached one's before any record is scored, and the lag gauge
// lists only the partitions of the latest reading (a topic recreated with
// fewer partitions leaves no stale series).
func TestScorerGaugesAreNotStale(t *testing.T) {
	cache, err := checkpoint.Open(filepath.Join(t.TempDir(), "cache.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	cached := lineageCheckpoint(t, 30, "A")
	cached.Threshold = 7.5
	if err := cache.Put(cached); err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics(nil)
	if _, err := NewReplica(ReplicaConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "t", AlertsTopic: "a", DLQTopic: "d",
		Cache: cache, Log: testkit.Quiet(), Metrics: metrics}); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(metrics.version); v != 30 {
		t.Errorf("recon_scorer_model_version = %v before any batch, want the cached 30", v)
	}
	if v := testutil.ToFloat64(metrics.threshold); v != 7.5 {
		t.Errorf("recon_scorer_threshold = %v before any batch, want the cached checkpoint's 7.5", v)
	}
	twelve := map[int]stream.PartitionProgress{}
	for p := range 12 {
		twelve[p] = stream.PartitionProgress{Committed: 5, End: 10}
	}
	metrics.setLag(twelve)
	metrics.setLag(map[int]stream.PartitionProgress{0: {Committed: 1, End: 10}, 1: {}, 2: {}})
	if n := testutil.CollectAndCount(metrics.lag); n != 3 {
		t.Errorf("%d lag series after a reading of 3 partitions, want 3", n)
	}
	if v := testutil.ToFloat64(metrics.lag.WithLabelValues("0")); v != 9 {
		t.Errorf("partition 0's lag %v, want 9", v)
	}
}
