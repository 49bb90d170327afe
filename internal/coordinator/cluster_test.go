package coordinator

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/worker"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

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
	store, err := checkpoint.Open(storePath, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, store, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, srv)
	go gs.Serve(lis)
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

// worker starts a worker reading src; it stops when the cluster does.
func (c *cluster) worker(ctx context.Context, id string, src worker.Source) *worker.Worker {
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	w, err := worker.New(worker.Config{ID: id, Conn: conn, Source: src, Log: quiet(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer conn.Close()
		w.Run(ctx)
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
		c.t.Fatalf("training did not finish in %v (status %+v)", timeout, c.srv.Status())
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
			cl.worker(ctx, fmt.Sprintf("w%d", i), worker.NewSlice(shard, p, true))
		}
		cl.wait(60*time.Second, stop)
		if st := cl.srv.Status(); st.Round != rounds {
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
		cl.worker(ctx, fmt.Sprintf("w%d", i), worker.NewSlice(x[i*per*p:(i+1)*per*p], p, true))
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
