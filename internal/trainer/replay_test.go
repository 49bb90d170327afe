package trainer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
)

// counting counts the records a source hands out.
type counting struct {
	trainer.Source
	mu sync.Mutex
	n  int
}

func (c *counting) Read(dst []float64) (int, error) {
	n, err := c.Source.Read(dst)
	c.mu.Lock()
	c.n += n
	c.mu.Unlock()
	return n, err
}

// TestReplayReadsAQuarter: with Replay 0.75 a worker reads a full batch of
// new records only in its first round, then a quarter batch per round, and
// still sends gradients over full batches (less the held-out records, which
// are never replayed).
func TestReplayReadsAQuarter(t *testing.T) {
	const p, batch, rounds = 6, 200, 40
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	samples := map[uint64]int{}
	co := testenv.StartCoordinator(t, coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: batch, Holdout: 0.2, WarmupRecords: 100,
		MaxRounds: rounds, Deadline: 10 * time.Second, CheckpointRounds: 1000,
		OnRound: func(res *round.Result, _ time.Duration) { mu.Lock(); samples[res.Round] = res.Samples; mu.Unlock() }})
	src := &counting{Source: trainer.NewSynth(1, 5, p, 2, 0.2, 0)}
	w, err := trainer.New(trainer.Config{ID: "r1", Conn: co.Conn, Log: testkit.Quiet(), Source: src, Replay: 0.75})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		if err := w.Run(wctx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(done)
	}()
	if err := co.Server.Run(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	// Warm-up reads 100 records, which train in round 1 with 100 more;
	// every later round reads 200 - 0.75*200 = 50.
	if want := batch + (rounds-1)*batch/4; src.n != want {
		t.Errorf("read %d records in %d rounds, want %d", src.n, rounds, want)
	}
	mu.Lock()
	defer mu.Unlock()
	for r := uint64(2); r <= rounds; r++ {
		// 50 new records, about 10 held out; the rest topped up to 200.
		if s := samples[r]; s < batch-batch/4 || s > batch {
			t.Errorf("round %d trained on %d records, want between %d and %d", r, s, batch-batch/4, batch)
		}
	}
	if _, err := trainer.New(trainer.Config{ID: "x", Conn: co.Conn, Log: testkit.Quiet(), Source: src, Replay: 1}); err == nil {
		t.Error("replay fraction 1: no error")
	}
}
