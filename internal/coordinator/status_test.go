package coordinator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// client dials the cluster's coordinator for unary calls.
func (c *cluster) client() reconv1.CoordinatorClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return reconv1.NewCoordinatorClient(conn)
}

func (c *cluster) status(cl reconv1.CoordinatorClient) *reconv1.StatusResponse {
	c.t.Helper()
	st, err := cl.Status(context.Background(), &reconv1.StatusRequest{})
	if err != nil {
		c.t.Fatalf("Status: %v", err)
	}
	return st
}

// TestStatusOverGRPC: two workers train; Status over real gRPC names the
// training state as the metric does, reports the last round and its loss
// as the metrics show them, the version and threshold Snapshot has, and
// both workers with gradients counted and their last one's time advancing.
// ListCheckpoints then gives each checkpoint's write time, variant and the
// loss of the round it was written at.
func TestStatusOverGRPC(t *testing.T) {
	const p = 6
	var mu sync.Mutex
	losses := map[uint64]float64{} // by round, from OnRound
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, LR: 1e-2, Batch: 64, Holdout: 0.3, WarmupRecords: 100,
		Calib:    calib.Config{MinRows: 100, MaxRecords: 1500, Settle: -1, SettleRounds: 10},
		Deadline: 20 * time.Second, CheckpointRounds: 10,
		OnRound: func(res *round.Result, _ time.Duration) {
			mu.Lock()
			losses[res.Round] = res.Loss
			mu.Unlock()
		}}
	start := time.Now()
	cl := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	client := cl.client()

	st := cl.status(client)
	if st.GetState() != "warming" || st.GetRound() != 0 || st.GetLoss() != 0 || len(st.GetWorkers()) != 0 ||
		st.GetLineage() != cl.srv.store.ID() || st.GetLineage() == "" || st.GetTime().AsTime().Before(start) {
		t.Fatalf("Status before any worker: %v; want warming at round 0, no workers, lineage %s", st, cl.srv.store.ID())
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for i := range 2 {
		cl.worker(ctx, fmt.Sprintf("w%d", i), trainer.NewSynth(1, uint64(i+1), p, 2, 0.2, 0))
	}
	pollUntil(t, 60*time.Second, "20 rounds, a threshold and both workers' gradients", func() bool {
		st = cl.status(client)
		return st.GetRound() >= 20 && st.GetThreshold() > 0 && len(st.GetWorkers()) == 2 &&
			st.GetWorkers()[0].GetGradients() > 0 && st.GetWorkers()[1].GetGradients() > 0
	})
	if !slices.Contains([]string{"learning", "settled", "maintaining"}, st.GetState()) {
		t.Errorf("state %q after %d rounds: want learning, settled or maintaining", st.GetState(), st.GetRound())
	}
	if !(st.GetLoss() > 0) || st.GetRecords() == 0 || !(st.GetPresentationsPerRecord() > 0) || st.GetVersion() == 0 {
		t.Errorf("Status after %d rounds: loss %v, records %d, presentations per record %v, version %d; want all above 0",
			st.GetRound(), st.GetLoss(), st.GetRecords(), st.GetPresentationsPerRecord(), st.GetVersion())
	}
	now := st.GetTime().AsTime()
	for i, w := range st.GetWorkers() {
		joined, last := w.GetJoinedAt().AsTime(), w.GetLastGradientAt().AsTime()
		if w.GetId() != fmt.Sprintf("w%d", i) || w.GetJoinedAt() == nil || w.GetLastGradientAt() == nil ||
			joined.Before(start) || last.Before(joined) || last.After(now) || w.GetBenched() {
			t.Errorf("worker %d: %v; want w%d, joined after the test began, its last gradient after that and not after %v, not benched", i, w, i, now)
		}
	}

	// Against what the metrics and Snapshot show at the same moment: taken
	// between two looks that agree, so that no round or checkpoint came
	// in between.
	agreed := false
	for try := 0; try < 200 && !agreed; try++ {
		r1, l1, s1 := testutil.ToFloat64(cl.srv.metrics.round), testutil.ToFloat64(cl.srv.metrics.loss), cl.srv.Snapshot()
		st := cl.status(client)
		r2, l2, s2 := testutil.ToFloat64(cl.srv.metrics.round), testutil.ToFloat64(cl.srv.metrics.loss), cl.srv.Snapshot()
		if r1 != r2 || l1 != l2 || s1.Version != s2.Version || s1.Threshold != s2.Threshold {
			continue
		}
		agreed = true
		if float64(st.GetRound()) != r1 || st.GetLoss() != l1 || st.GetVersion() != s1.Version || st.GetThreshold() != s1.Threshold {
			t.Errorf("Status round %d, loss %v, version %d, threshold %v; the metrics show round %v, loss %v, Snapshot version %d, threshold %v",
				st.GetRound(), st.GetLoss(), st.GetVersion(), st.GetThreshold(), r1, l1, s1.Version, s1.Threshold)
		}
		mu.Lock()
		want, ok := losses[st.GetRound()]
		mu.Unlock()
		if !ok || st.GetLoss() != want {
			t.Errorf("Status loss %v at round %d; the round's result had %v (known: %v)", st.GetLoss(), st.GetRound(), want, ok)
		}
	}
	if !agreed {
		t.Fatal("the metrics and Snapshot never held still around a Status call")
	}

	// Both workers' last gradients advance.
	first := cl.status(client).GetWorkers()
	pollUntil(t, 30*time.Second, "both workers' last gradients advancing", func() bool {
		now := cl.status(client).GetWorkers()
		if len(now) != 2 {
			return false
		}
		for i := range now {
			if !now[i].GetLastGradientAt().AsTime().After(first[i].GetLastGradientAt().AsTime()) || now[i].GetGradients() <= first[i].GetGradients() {
				return false
			}
		}
		return true
	})

	// ListCheckpoints: every checkpoint written by this coordinator carries
	// its write time, its variant and its round's loss.
	list, err := client.ListCheckpoints(context.Background(), &reconv1.ListCheckpointsRequest{})
	if err != nil || len(list.GetCheckpoints()) == 0 {
		t.Fatalf("ListCheckpoints: %v, %v", list, err)
	}
	for _, ci := range list.GetCheckpoints() {
		mu.Lock()
		want, ok := losses[ci.GetRound()]
		mu.Unlock()
		at := ci.GetCreatedAt().AsTime()
		if ci.GetError() != "" || ci.GetCreatedAt() == nil || at.Before(start) || at.After(time.Now()) ||
			ci.GetVariant() != "plain" || !(ci.GetLoss() > 0) || !ok || ci.GetLoss() != want {
			t.Errorf("checkpoint %v; want written during the test, variant plain, the loss of round %d (%v)", ci, ci.GetRound(), want)
		}
	}
}

// TestStatusShowsABenchedWorker: a worker that joined and sends no
// gradient is listed with none and no last-gradient time, and benched once
// it has missed three rounds, while the one that trains is not.
func TestStatusShowsABenchedWorker(t *testing.T) {
	const p = 4
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 16, Deadline: 100 * time.Millisecond, Lease: time.Minute, CheckpointRounds: 1000}
	cl := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	client := cl.client()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	mute, err := client.Train(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := mute.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Join{Join: &reconv1.Join{WorkerId: "mute"}}}); err != nil {
		t.Fatal(err)
	}
	go func() { // takes the rounds, answers none
		for {
			if _, err := mute.Recv(); err != nil {
				return
			}
		}
	}()
	cl.worker(ctx, "active", trainer.NewSynth(1, 1, p, 2, 0.2, 0))
	var st *reconv1.StatusResponse
	// The training worker, too, is benched for a while if a slow moment
	// (-race, a loaded machine) makes it miss the 100 ms deadline a few
	// rounds in a row; the state awaited is both at once.
	pollUntil(t, 30*time.Second, "the mute worker benched and the training one not", func() bool {
		st = cl.status(client)
		ws := st.GetWorkers()
		return len(ws) == 2 && ws[1].GetBenched() && !ws[0].GetBenched() && ws[0].GetGradients() > 0
	})
	active, m := st.GetWorkers()[0], st.GetWorkers()[1]
	if active.GetId() != "active" || active.GetBenched() || active.GetGradients() == 0 || active.GetLastGradientAt() == nil {
		t.Errorf("the training worker: %v; want active, not benched, with gradients", active)
	}
	if m.GetId() != "mute" || m.GetGradients() != 0 || m.GetLastGradientAt() != nil || m.GetJoinedAt() == nil {
		t.Errorf("the mute worker: %v; want mute, joined, no gradient", m)
	}
}

// TestStatusAfterResume: a coordinator resumed from a checkpoint reports
// the checkpoint's round and loss (in Status and the metrics) until its
// first round, and the state it resumes in.
func TestStatusAfterResume(t *testing.T) {
	spec := ae.Spec{Input: 4, Code: 2}
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "ck.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m, err := ae.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(1, 2)))
	c := checkpoint.Build(m, ae.NewAdam(m.NumParams(), 1e-3), ae.NewNormalizer(spec.Input), nil)
	c.Version, c.Round, c.Loss = 1, 42, 0.25
	if err := store.Put(c); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Spec: spec}, store, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := srv.Status(context.Background(), &reconv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetRound() != 42 || st.GetLoss() != 0.25 || st.GetVersion() != 1 || st.GetState() != "learning" || len(st.GetWorkers()) != 0 ||
		testutil.ToFloat64(srv.metrics.loss) != 0.25 || testutil.ToFloat64(srv.metrics.round) != 42 {
		t.Errorf("resumed from round 42 (loss 0.25, version 1): Status %v, metrics round %v loss %v; want those, learning, no workers",
			st, testutil.ToFloat64(srv.metrics.round), testutil.ToFloat64(srv.metrics.loss))
	}
}
