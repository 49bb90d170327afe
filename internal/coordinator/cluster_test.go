package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"gonum.org/v1/gonum/mat"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// cluster runs a coordinator on a loopback port and workers against it.
type cluster struct {
	t      *testing.T
	srv    *Server
	addr   string
	gs     *grpc.Server
	cancel context.CancelFunc
	runErr chan error
	wg     sync.WaitGroup
}

func startCluster(t *testing.T, cfg Config, storePath string) *cluster {
	t.Helper()
	return startClusterLog(t, cfg, storePath, quiet())
}

// startClusterLog is startCluster with the coordinator logging to log.
func startClusterLog(t *testing.T, cfg Config, storePath string, log *slog.Logger) *cluster {
	t.Helper()
	store, err := checkpoint.Open(storePath, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{t: t, srv: srv, addr: lis.Addr().String(), gs: gs, cancel: cancel, runErr: make(chan error, 1)}
	go func() { c.runErr <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		store.Close()
	})
	return c
}

// worker starts a worker reading src; it stops when ctx ends.
func (c *cluster) worker(ctx context.Context, id string, src trainer.Source) *trainer.Worker {
	return c.workerCfg(ctx, trainer.Config{ID: id, Source: src})
}

// workerCfg starts a worker from cfg, filling in the connection and log.
func (c *cluster) workerCfg(ctx context.Context, cfg trainer.Config) *trainer.Worker {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	cfg.Conn, cfg.Log, cfg.MinBackoff, cfg.MaxBackoff = conn, quiet(), 10*time.Millisecond, 100*time.Millisecond
	w, err := trainer.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer conn.Close()
		_ = w.Run(ctx) // not always waited for: a test that needs Run's error calls runWorker
	}()
	return w
}

// wait waits for the coordinator's Run to end (MaxRounds) and stops workers.
func (c *cluster) wait(timeout time.Duration, stopWorkers context.CancelFunc) {
	c.t.Helper()
	select {
	case err := <-c.runErr:
		if err != nil {
			c.t.Fatalf("coordinator Run: %v", err)
		}
	case <-time.After(timeout):
		c.t.Fatalf("training did not finish in %v (status %+v)", timeout, c.srv.Snapshot())
	}
	stopWorkers()
	c.wg.Wait()
}

// TestDistributedEqualsSingleWorker is the exactness contract: with the
// plain variant, 3 workers on disjoint shards with batch b and 1 worker with
// batch 3b on the same rows in the same order end with the same parameters
// (within 1e-9 relative) after 100 rounds, over real gRPC on loopback.
func TestDistributedEqualsSingleWorker(t *testing.T) {
	const p, b, rounds, nw = 10, 16, 100, 3
	x := synth.LowRank(rand.New(rand.NewPCG(1, 1)), rounds*nw*b, p, 3, 0.3)
	spec := ae.Spec{Input: p, Hidden: []int{8}, Code: 3, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear}
	cfg := Config{Spec: spec, LR: 3e-3, MaxRounds: rounds, Deadline: 20 * time.Second, CheckpointRounds: 1000}

	run := func(workers, batch int) []float64 {
		c := cfg
		c.Batch, c.MinWorkers = batch, workers
		cl := startCluster(t, c, filepath.Join(t.TempDir(), "ck.db"))
		ctx, stop := context.WithCancel(context.Background())
		for i := 0; i < workers; i++ {
			// Worker i takes the i-th block of b rows of every round's 3b.
			var shard []float64
			for r := 0; r < rounds; r++ {
				for j := 0; j < batch; j++ {
					row := r*nw*b + i*batch + j
					shard = append(shard, x[row*p:(row+1)*p]...)
				}
			}
			cl.worker(ctx, fmt.Sprintf("w%d", i), trainer.NewSlice(shard, p, true))
		}
		cl.wait(60*time.Second, stop)
		if st := cl.srv.Snapshot(); st.Round != rounds {
			t.Fatalf("%d workers: ended at round %d", workers, st.Round)
		}
		return cl.srv.Params()
	}
	three := run(nw, b)
	one := run(1, nw*b)
	var diff, norm float64
	for i := range one {
		diff += (three[i] - one[i]) * (three[i] - one[i])
		norm += one[i] * one[i]
	}
	rel := math.Sqrt(diff / norm)
	t.Logf("after %d rounds: ||params(3 workers) - params(1 worker)|| / ||params|| = %.3g", rounds, rel)
	if rel > 1e-9 {
		t.Errorf("relative parameter difference %.3g > 1e-9", rel)
	}
}

// TestThreeWorkersReachPCA: a linear model trained by 3 workers on the
// seed's demonstration data reaches the closed-form error within 1% at k = 3.
func TestThreeWorkersReachPCA(t *testing.T) {
	x, n, p := synth.Demo(rand.New(rand.NewPCG(7, 2026)))
	const k = 3
	spec := ae.Spec{Input: p, Code: k}
	per := n / 3
	// The closed form of exactly the rows the workers hold (3 x 166).
	pca, err := ae.NewPCA(mat.NewDense(3*per, p, x[:3*per*p]))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Spec: spec, LR: 0.02, Batch: per, MinWorkers: 3, MaxRounds: 2500, Deadline: 20 * time.Second, CheckpointRounds: 1000}
	cl := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	ctx, stop := context.WithCancel(context.Background())
	for i := 0; i < 3; i++ {
		cl.worker(ctx, fmt.Sprintf("w%d", i), trainer.NewSlice(x[i*per*p:(i+1)*per*p], p, true))
	}
	cl.wait(120*time.Second, stop)
	m, _ := ae.New(spec)
	m.SetParams(cl.srv.Params())
	rows := x[:3*per*p]
	scores := make([]float64, 3*per)
	m.Score(scores, rows)
	var got float64
	for _, s := range scores {
		got += s
	}
	got /= float64(len(scores))
	closed := pca.TailError(k)
	t.Logf("3 workers, k=%d: mean error %.5f, closed form %.5f (ratio %.5f)", k, got, closed, got/closed)
	if got > 1.01*closed {
		t.Errorf("mean error %.5f not within 1%% of the closed form %.5f", got, closed)
	}
}

// TestCalibratedThresholdHoldsItsAlertRate: 4 workers send held-out
// records; the coordinator calibrates a whitening and a threshold from them,
// and the checkpoint it writes, applied to fresh records of the same
// stream, alerts on about the configured share of them.
func TestCalibratedThresholdHoldsItsAlertRate(t *testing.T) {
	const p, rounds, rate = 12, 400, 0.02
	spec := ae.Spec{Input: p, Hidden: []int{8}, Code: 3, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Tanh}
	dir := t.TempDir()
	cfg := Config{Spec: spec, LR: 3e-3, Batch: 200, Holdout: 0.3, MinWorkers: 4, MaxRounds: rounds,
		Calib: calib.Config{AlertRate: rate, Settle: -1}, WarmupRecords: 300, Deadline: 20 * time.Second, CheckpointRounds: 1000}
	cl := startCluster(t, cfg, filepath.Join(dir, "ck.db"))
	ctx, stop := context.WithCancel(context.Background())
	for i := 0; i < 4; i++ {
		cl.worker(ctx, fmt.Sprintf("w%d", i), trainer.NewSynth(1, uint64(i+1), p, 3, 0.3, 0))
	}
	// A bound, not a speed target: under -race on 2 loaded cores the 400
	// rounds of 4 workers have taken over a minute.
	cl.wait(3*time.Minute, stop)
	if th := cl.srv.Snapshot().Threshold; !(th > 0) {
		t.Fatalf("no threshold after %d rounds of 4 workers holding out 30%%", rounds)
	}
	if n, total := testutil.ToFloat64(cl.srv.metrics.firstRecords), testutil.ToFloat64(cl.srv.metrics.records); !(n > 0 && n <= total) {
		t.Errorf("recon_coordinator_first_threshold_records = %v with %v records read, want the records read when the threshold came", n, total)
	}
	c, err := cl.srv.store.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GetWhitening()) != p*p || c.GetThresholdRule() != "alert-rate 0.02" {
		t.Fatalf("checkpoint has %d whitening values (want %d) and rule %q", len(c.GetWhitening()), p*p, c.GetThresholdRule())
	}
	l, err := checkpoint.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	x := make([]float64, n*p)
	src := trainer.NewSynth(1, 99, p, 3, 0.3, 0)
	for got := 0; got < n; {
		k, err := src.Read(x[got*p:])
		if err != nil {
			t.Fatal(err)
		}
		got += k
	}
	l.Normalizer.Transform(x, x)
	scores, rec := make([]float64, n), make([]float64, n*p)
	l.Score(scores, nil, rec, x)
	alerts := 0
	for _, s := range scores {
		if s > c.GetThreshold() {
			alerts++
		}
	}
	share := float64(alerts) / n
	t.Logf("threshold %.4g: %d of %d fresh records alert (%.4f; configured %v)", c.GetThreshold(), alerts, n, share, rate)
	if share < rate/2 || share > 2*rate {
		t.Errorf("alert share %.4f on fresh records, configured %v: want within a factor 2", share, rate)
	}
}

// TestRollbackPublishesOldParametersAsNewVersion: rollback to version v
// publishes a new, higher version whose parameters equal v's; a subscriber
// receives it, and the versions it sees only grow.
func TestRollbackPublishesOldParametersAsNewVersion(t *testing.T) {
	const p = 8
	spec := ae.Spec{Input: p, Code: 2}
	cfg := Config{Spec: spec, LR: 1e-2, Batch: 64, CheckpointRounds: 5, Deadline: 10 * time.Second}
	cl := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	cl.worker(ctx, "w0", trainer.NewSynth(1, 1, p, 2, 0.2, 0))

	conn, err := grpc.NewClient(cl.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := reconv1.NewCoordinatorClient(conn)
	watch, err := client.WatchCheckpoints(ctx, &reconv1.WatchCheckpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan uint64, 1000)
	go func() {
		for {
			c, err := watch.Recv()
			if err != nil {
				close(seen)
				return
			}
			seen <- c.GetVersion()
		}
	}()
	if !testkit.Within(20*time.Second, func() bool { return cl.srv.Snapshot().Version >= 4 }) {
		t.Fatalf("no version 4 in time: %+v", cl.srv.Snapshot())
	}
	old, err := client.GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Rollback(ctx, &reconv1.RollbackRequest{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersion() <= 4 {
		t.Fatalf("rollback published version %d, want above 4", resp.GetVersion())
	}
	rb, err := client.GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{Version: resp.GetVersion()})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range old.GetParams() {
		if rb.GetParams()[i] != v {
			t.Fatalf("rolled-back version %d parameter %d = %v, version 2 has %v", resp.GetVersion(), i, rb.GetParams()[i], v)
		}
	}
	if rb.GetRound() < old.GetRound() {
		t.Errorf("round went down: %d after rollback, %d before", rb.GetRound(), old.GetRound())
	}
	// The subscriber reaches the rollback's version, versions only growing.
	var last uint64
	for v := range seen {
		if v <= last {
			t.Fatalf("subscriber saw version %d after %d", v, last)
		}
		last = v
		if v >= resp.GetVersion() {
			break
		}
	}
	if last < resp.GetVersion() {
		t.Fatalf("subscriber never reached version %d", resp.GetVersion())
	}
	if _, err := client.Rollback(ctx, &reconv1.RollbackRequest{Version: 999}); err == nil {
		t.Error("rollback to a missing version succeeded")
	}
	list, err := client.ListCheckpoints(ctx, &reconv1.ListCheckpointsRequest{})
	if err != nil || len(list.GetCheckpoints()) < 5 {
		t.Fatalf("ListCheckpoints: %v, %v", list, err)
	}
}

// TestExpiredWorkerIsToldToRejoin: a worker that joins and then falls
// silent past its lease (as one blocked on an unreachable broker does) has
// its session ended by the coordinator, so that it reconnects and joins
// again; before, it stayed connected while no round included it.
func TestExpiredWorkerIsToldToRejoin(t *testing.T) {
	const p = 4
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 16, WarmupRecords: 0, Deadline: 50 * time.Millisecond,
		Lease: 300 * time.Millisecond, CheckpointRounds: 1000}
	c := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reconv1.NewCoordinatorClient(conn).Train(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Join{Join: &reconv1.Join{WorkerId: "silent"}}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("session ended with %v, want Unavailable", err)
			}
			break
		}
	}
	if d := time.Since(start); d < cfg.Lease || d > 5*time.Second {
		t.Errorf("session ended after %v; the lease is %v", d, cfg.Lease)
	}
	if w := c.srv.Snapshot().Workers; len(w) != 0 {
		t.Errorf("workers after the lease: %v", w)
	}
}
