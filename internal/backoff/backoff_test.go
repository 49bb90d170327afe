package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

const ms = time.Millisecond

// TestSchedules: the delays a Backoff hands out, from the start, across Max,
// and after Reset.
func TestSchedules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     Backoff
		steps string // n: Next, r: Reset
		want  []time.Duration
	}{
		{"zero value", Backoff{}, "nnnnnnnnn", []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms}},
		{"bounds", Backoff{Min: 10 * ms, Max: 35 * ms}, "nnnnn", []time.Duration{10 * ms, 20 * ms, 35 * ms, 35 * ms, 35 * ms}},
		{"reset", Backoff{Min: 10 * ms, Max: time.Second}, "nnnrnn", []time.Duration{10 * ms, 20 * ms, 40 * ms, 10 * ms, 20 * ms}},
		{"max below min", Backoff{Min: 50 * ms, Max: 10 * ms}, "nn", []time.Duration{50 * ms, 50 * ms}},
		{"default max above min", Backoff{Min: 2 * time.Second}, "nnn", []time.Duration{2 * time.Second, 4 * time.Second, 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			var got []time.Duration
			for _, s := range tc.steps {
				if s == 'r' {
					b.Reset()
					continue
				}
				d := b.Delay()
				if n := b.Next(); n != d {
					t.Fatalf("Next %v, but Delay said %v", n, d)
				}
				got = append(got, d)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestRetryingAndAtMax: the flags retry loops log by.
func TestRetryingAndAtMax(t *testing.T) {
	b := Backoff{Min: 10 * ms, Max: 40 * ms}
	if b.Retrying() || b.AtMax() {
		t.Fatal("fresh backoff retrying or at max")
	}
	b.Next()
	if !b.Retrying() || b.AtMax() {
		t.Fatal("after one wait: want retrying, not at max")
	}
	b.Next()
	b.Next()
	if !b.AtMax() {
		t.Fatalf("delay %v: want at max", b.Delay())
	}
	b.Reset()
	if b.Retrying() || b.Delay() != 10*ms {
		t.Fatalf("after Reset: retrying %v, delay %v", b.Retrying(), b.Delay())
	}
}

// TestJitter: with Rand, each wait lies in [d/2, d] of the schedule's delay
// and the waits are not all the same.
func TestJitter(t *testing.T) {
	b := Backoff{Min: 100 * ms, Max: 100 * ms, Rand: rand.New(rand.NewPCG(1, 2))}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := b.Next()
		if d < 50*ms || d > 100*ms {
			t.Fatalf("jittered wait %v outside [50ms, 100ms]", d)
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Fatalf("%d distinct waits in 200", len(seen))
	}
}

// TestWaitEndsWithContext: a done context ends a wait at once with its
// error, and still advances the schedule.
func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: 2 * time.Hour}
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on a canceled context: %v", err)
	}
	if b.Delay() != 2*time.Hour {
		t.Fatalf("delay after the wait %v, want 2h", b.Delay())
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep 0: %v", err)
	}
}
