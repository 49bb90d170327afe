package trainer_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
)

// trickle is a stream source whose records arrive at a fixed rate: Read
// waits for at least one, TryRead takes what has arrived.
type trickle struct {
	src   trainer.Source
	mu    sync.Mutex
	ready int // arrived, not yet read
	read  int // handed out
	wake  chan struct{}
	ctx   context.Context
}

func newTrickle(ctx context.Context, src trainer.Source, perTick int, tick time.Duration) *trickle {
	t := &trickle{src: src, wake: make(chan struct{}, 1), ctx: ctx}
	go func() {
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				t.mu.Lock()
				t.ready += perTick
				t.mu.Unlock()
				select {
				case t.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	return t
}

func (t *trickle) Width() int { return t.src.Width() }

func (t *trickle) take(dst []float64) (int, error) {
	t.mu.Lock()
	n := min(t.ready, len(dst)/t.src.Width())
	t.ready -= n
	t.read += n
	t.mu.Unlock()
	if n == 0 {
		return 0, nil
	}
	return t.src.Read(dst[:n*t.src.Width()])
}

func (t *trickle) TryRead(dst []float64) (int, error) { return t.take(dst) }

func (t *trickle) Read(dst []float64) (int, error) {
	for {
		if n, err := t.take(dst); n > 0 || err != nil {
			return n, err
		}
		select {
		case <-t.wake:
		case <-t.ctx.Done():
			return 0, io.EOF
		}
	}
}

func (t *trickle) records() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.read
}

// presentations trains for d on a stream of 2,000 records/s with budget b
// and returns the records trained on per record read, and the rounds.
func presentations(t *testing.T, b pace.Config, d time.Duration) (float64, int) {
	return trainOn(t, b, d, 20, 0, 256)
}

// trainOn trains for d on a stream of perTick records every 10 ms with
// budget b, the held-out fraction holdout and rounds of batch records; it
// returns the records trained on per record read, and the rounds.
func trainOn(t *testing.T, b pace.Config, d time.Duration, perTick int, holdout float64, batch int) (float64, int) {
	t.Helper()
	const p = 6
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	samples, rounds := 0, 0
	co := testenv.StartCoordinator(t, coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: batch, WarmupRecords: 100, Holdout: holdout,
		Deadline: time.Second, CheckpointRounds: 1 << 30, Pace: b,
		OnRound: func(res *round.Result, _ time.Duration) { mu.Lock(); samples += res.Samples; rounds++; mu.Unlock() }})
	src := newTrickle(ctx, trainer.NewSynth(1, 5, p, 2, 0.2, 0), perTick, 10*time.Millisecond)
	w, err := trainer.New(trainer.Config{ID: "b1", Conn: co.Conn, Log: testkit.Quiet(), Source: src, Replay: 0.75})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(done)
	}()
	if err := co.Server.Run(ctx); err != nil {
		t.Errorf("coordinator: %v", err)
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	return float64(samples) / float64(src.records()), rounds
}

// A budget of 4 presentations per record holds training on a 2,000
// records/s stream to about 4 records trained on per record read, where
// without one replay trains at the speed of computing, many times over.
func TestBudgetBoundsPresentations(t *testing.T) {
	free, freeRounds := presentations(t, pace.Config{}, 3*time.Second)
	held, heldRounds := presentations(t, pace.Config{Learn: 4, Maintain: 4}, 3*time.Second)
	t.Logf("presentations per record: %.1f without a budget (%d rounds), %.2f with 4 (%d rounds)", free, freeRounds, held, heldRounds)
	if held > 4.2 {
		t.Errorf("with a budget of 4: %.2f presentations per record", held)
	}
	if held < 2 {
		t.Errorf("with a budget of 4: only %.2f presentations per record: the budget starves training", held)
	}
	if free < 2*held {
		t.Errorf("without a budget %.2f presentations per record, with one %.2f: the test does not tell them apart", free, held)
	}
}

// With a budget a worker on a slow stream reads what has arrived, often a
// single record; when every new record of a round is held out it still
// sends its gradient (one replayed record, on credit) with the held-out
// records, rather than nothing, which left the round to its deadline. On
// a stream of 100 records/s with half held out, rounds must come at the
// stream's pace, not one a deadline (1 s here).
func TestBudgetRoundsOnHeldOutRecordsOnly(t *testing.T) {
	// Rounds of 16: the replay ring is full (and the budget's reads
	// begin) after 16 training records.
	per, rounds := trainOn(t, pace.Config{Learn: 4, Maintain: 4}, 4*time.Second, 1, 0.5, 16)
	t.Logf("%d rounds in 4 s (1 s of warm-up), %.2f presentations per record", rounds, per)
	if rounds < 50 {
		t.Errorf("%d rounds in 3 s of training at 100 records/s: rounds waited for their deadline", rounds)
	}
	if per > 4.5 {
		t.Errorf("%.2f presentations per record with a budget of 4", per)
	}
}

// With the budget spent a round gathers the stream's records for a
// quarter of a second rather than going with the first one: on a stream
// of 100 records/s rounds come a few a second, not one a record (each
// round costs its messages and an optimizer step whatever its size).
func TestBudgetRoundsGatherRecords(t *testing.T) {
	per, rounds := trainOn(t, pace.Config{Learn: 4, Maintain: 4}, 6*time.Second, 1, 0, 64)
	t.Logf("%d rounds in 6 s (1 s of warm-up, then the replay ring fills), %.2f presentations per record", rounds, per)
	if rounds > 40 {
		t.Errorf("%d rounds in 5 s of training at 100 records/s: rounds do not gather records", rounds)
	}
	if rounds < 5 || per > 4.5 {
		t.Errorf("%d rounds, %.2f presentations per record: want a few rounds a second within the budget of 4", rounds, per)
	}
}
