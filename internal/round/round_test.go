package round

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func grad(samples int, v ...float64) *Gradient {
	return &Gradient{Samples: samples, Loss: float64(samples), Values: v}
}

func newMachine(t *testing.T, min int) *Machine {
	t.Helper()
	m, err := New(Config{NumParams: 2, MinWorkers: min, Deadline: time.Second, Lease: 3 * time.Second}, 10)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundCompletesWhenAllMembersSubmit(t *testing.T) {
	m := newMachine(t, 1)
	m.Join("b", t0)
	m.Join("a", t0)
	r, ok := m.Start(t0)
	if !ok || r != 11 {
		t.Fatalf("Start = %d, %v; want round 11 (resumed after 10)", r, ok)
	}
	if err := m.Submit("b", r, grad(3, 3, 6), at(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Tick(at(200 * time.Millisecond)); res != nil {
		t.Fatal("round completed with a member missing before the deadline")
	}
	if err := m.Submit("a", r, grad(1, 1, 2), at(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	res, _ := m.Tick(at(300 * time.Millisecond))
	if res == nil {
		t.Fatal("round with every member in did not complete")
	}
	// Weighted by samples: (1*[1,2] + 3*[3,6]) / 4.
	if res.Gradient[0] != 2.5 || res.Gradient[1] != 5 || res.Samples != 4 || res.Loss != 2.5 {
		t.Errorf("result %+v", res)
	}
	if !slices.Equal(res.Contributors, []string{"a", "b"}) || len(res.Missing) != 0 {
		t.Errorf("contributors %v missing %v", res.Contributors, res.Missing)
	}
	if _, open := m.Round(); open {
		t.Error("round still open after completing")
	}
}

func TestDeadline(t *testing.T) {
	for _, tc := range []struct {
		name      string
		min       int
		submit    []string
		wantDone  bool
		wantAband bool
	}{
		{"enough at the deadline", 2, []string{"a", "b"}, true, false},
		{"too few at the deadline", 2, []string{"a"}, false, true},
		{"none at the deadline", 1, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, tc.min)
			for _, id := range []string{"a", "b", "c"} {
				m.Join(id, t0)
			}
			r, _ := m.Start(t0)
			for _, id := range tc.submit {
				if err := m.Submit(id, r, grad(1, 1, 1), at(10*time.Millisecond)); err != nil {
					t.Fatal(err)
				}
			}
			if res, ab := m.Tick(at(999 * time.Millisecond)); res != nil || ab {
				t.Fatal("round ended before its deadline")
			}
			res, ab := m.Tick(at(time.Second))
			if (res != nil) != tc.wantDone || ab != tc.wantAband {
				t.Fatalf("at the deadline: result %v abandoned %v", res, ab)
			}
			if res != nil && !slices.Equal(res.Missing, []string{"c"}) {
				t.Errorf("missing %v, want [c]", res.Missing)
			}
			// Whatever happened, the late member's gradient is now refused.
			if err := m.Submit("c", r, grad(1, 1, 1), at(1100*time.Millisecond)); !errors.Is(err, ErrRejected) {
				t.Errorf("late gradient: %v, want rejected", err)
			}
			if m.Rejected()[WrongRound] != 1 {
				t.Errorf("rejections %v, want one wrong_round", m.Rejected())
			}
			// The next round is a new number with the same membership.
			if r2, ok := m.Start(at(1100 * time.Millisecond)); !ok || r2 != r+1 {
				t.Errorf("next Start = %d, %v", r2, ok)
			}
		})
	}
}

func TestSubmitRejections(t *testing.T) {
	m := newMachine(t, 1)
	m.Join("a", t0)
	r, _ := m.Start(t0)
	m.Join("late", t0) // joins after the start: member only from the next round
	for _, tc := range []struct {
		name   string
		id     string
		round  uint64
		g      *Gradient
		reason Rejection
	}{
		{"NaN", "a", r, grad(1, math.NaN(), 0), NotFinite},
		{"Inf", "a", r, grad(1, 0, math.Inf(-1)), NotFinite},
		{"NaN loss", "a", r, &Gradient{Samples: 1, Loss: math.NaN(), Values: []float64{0, 0}}, NotFinite},
		{"short", "a", r, grad(1, 0), WrongLength},
		{"past round", "a", r - 1, grad(1, 0, 0), WrongRound},
		{"future round", "a", r + 1, grad(1, 0, 0), WrongRound},
		{"stranger", "zed", r, grad(1, 0, 0), UnknownMember},
		{"joined mid-round", "late", r, grad(1, 0, 0), UnknownMember},
		{"no samples", "a", r, grad(0, 0, 0), NoSamples},
	} {
		before := m.Rejected()[tc.reason]
		err := m.Submit(tc.id, tc.round, tc.g, at(time.Millisecond))
		if !errors.Is(err, ErrRejected) {
			t.Errorf("%s: Submit = %v, want rejected", tc.name, err)
		}
		if m.Rejected()[tc.reason] != before+1 {
			t.Errorf("%s: %s count %d, want %d", tc.name, tc.reason, m.Rejected()[tc.reason], before+1)
		}
	}
	if err := m.Submit("a", r, grad(2, 1, 1), at(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := m.Submit("a", r, grad(2, 9, 9), at(time.Millisecond)); !errors.Is(err, ErrRejected) || m.Rejected()[Duplicate] != 1 {
		t.Errorf("duplicate: %v", err)
	}
	res, _ := m.Tick(at(2 * time.Millisecond))
	if res == nil || res.Gradient[0] != 1 {
		t.Fatalf("only the valid gradient counts: %+v", res)
	}
	if r2, _ := m.Start(at(3 * time.Millisecond)); !slices.Equal(m.Members(), []string{"a", "late"}) || r2 != r+1 {
		t.Errorf("next round members %v", m.Members())
	}
}

func TestLeaseAndLeave(t *testing.T) {
	m := newMachine(t, 1)
	m.Join("a", t0)
	m.Join("b", t0)
	r, _ := m.Start(t0)
	if err := m.Submit("a", r, grad(1, 1, 1), at(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	m.Leave("b") // the round stops waiting for b
	res, _ := m.Tick(at(200 * time.Millisecond))
	if res == nil || !slices.Equal(res.Contributors, []string{"a"}) {
		t.Fatalf("after b left: %+v", res)
	}
	// a stays silent past its lease (3 s) and is dropped.
	if _, ok := m.Start(at(time.Second)); !ok {
		t.Fatal("no round with a joined")
	}
	m.Heartbeat("a", at(2*time.Second))
	if res, ab := m.Tick(at(4 * time.Second)); res != nil || !ab {
		t.Fatalf("round past its deadline without gradients: result %v abandoned %v", res, ab)
	}
	if len(m.Workers()) != 1 {
		t.Fatalf("a dropped within its lease")
	}
	m.Tick(at(5500 * time.Millisecond))
	if m.Dropped() != 1 || len(m.Workers()) != 0 {
		t.Errorf("dropped %d, workers %v: want a dropped after 3 s of silence", m.Dropped(), m.Workers())
	}
	if _, ok := m.Start(at(6 * time.Second)); ok {
		t.Error("round started with no workers")
	}
}

// TestAggregateOrderIsFixed: the average is summed in worker-id order, so
// the result does not depend on arrival order, bit for bit.
func TestAggregateOrderIsFixed(t *testing.T) {
	vals := map[string][]float64{"w1": {0.1, 1e16}, "w2": {0.2, 1}, "w3": {0.3, -1e16}}
	var first []float64
	for _, order := range [][]string{{"w1", "w2", "w3"}, {"w3", "w2", "w1"}, {"w2", "w3", "w1"}} {
		m := newMachine(t, 1)
		for _, id := range order {
			m.Join(id, t0)
		}
		r, _ := m.Start(t0)
		for _, id := range order {
			if err := m.Submit(id, r, grad(7, vals[id]...), t0); err != nil {
				t.Fatal(err)
			}
		}
		res, _ := m.Tick(t0)
		if first == nil {
			first = res.Gradient
			continue
		}
		for i := range first {
			if math.Float64bits(first[i]) != math.Float64bits(res.Gradient[i]) {
				t.Fatalf("order %v gives %v, first order gave %v", order, res.Gradient, first)
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{NumParams: 0},
		{NumParams: 1, MinWorkers: -1},
		{NumParams: 1, Deadline: time.Second, Lease: time.Millisecond},
	} {
		if _, err := New(c, 0); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestResizeBetweenRounds(t *testing.T) {
	m := newMachine(t, 1)
	m.Join("a", t0)
	r, _ := m.Start(t0)
	if err := m.Resize(3); !errors.Is(err, ErrRoundOpen) {
		t.Fatalf("Resize during a round: %v", err)
	}
	if err := m.Submit("a", r, grad(1, 1, 2), t0); err != nil {
		t.Fatal(err)
	}
	m.Tick(t0)
	if err := m.Resize(3); err != nil {
		t.Fatal(err)
	}
	r, _ = m.Start(at(time.Millisecond))
	if err := m.Submit("a", r, grad(1, 1, 2), at(time.Millisecond)); err == nil {
		t.Error("a gradient of the old length was accepted after Resize")
	}
	if err := m.Submit("a", r, grad(1, 1, 2, 3), at(time.Millisecond)); err != nil {
		t.Errorf("a gradient of the new length: %v", err)
	}
	if !m.Joined("a") || m.Resize(0) == nil {
		t.Error("member lost, or Resize(0) accepted")
	}
}

// A member that misses MaxMisses completed rounds in a row is benched:
// later rounds are still sent to it but complete without waiting for it;
// a lease drop and a rejoin keep it benched; a gradient of it within its
// round's deadline, even after the round closed, makes rounds wait for it
// again.
func TestSilentMemberIsBenched(t *testing.T) {
	m := newMachine(t, 1) // deadline 1 s, lease 3 s, MaxMisses 3
	now := t0
	m.Join("fast", now)
	m.Join("stuck", now)
	var benched []string
	for i := range 3 {
		r, ok := m.Start(now)
		if !ok {
			t.Fatalf("round %d did not start", i)
		}
		if err := m.Submit("fast", r, grad(1, 1, 1), now); err != nil {
			t.Fatal(err)
		}
		if res, _ := m.Tick(now.Add(500 * time.Millisecond)); res != nil {
			t.Fatalf("round %d completed before its deadline without a waited-for member", r)
		}
		now = now.Add(1100 * time.Millisecond)
		m.Heartbeat("stuck", now) // alive (say reading warm-up), just sends no gradient
		res, _ := m.Tick(now)
		if res == nil || !slices.Equal(res.Missing, []string{"stuck"}) {
			t.Fatalf("round %d: result %+v, want stuck missing", r, res)
		}
		benched = append(benched, res.Benched...)
		if want := i == 2; m.Benched("stuck") != want {
			t.Fatalf("after %d missed rounds benched = %v", i+1, !want)
		}
	}
	if !slices.Equal(benched, []string{"stuck"}) {
		t.Fatalf("benched %v, want stuck once, in the third round", benched)
	}
	// Benched: the round is sent to it but completes on fast's gradient alone.
	r, _ := m.Start(now)
	if !slices.Equal(m.Members(), []string{"fast", "stuck"}) {
		t.Errorf("members %v: the benched worker must still be sent the round", m.Members())
	}
	if err := m.Submit("fast", r, grad(1, 1, 1), now); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Tick(now); res == nil || len(res.Missing) != 0 {
		t.Fatalf("round with a benched member did not complete at once: %+v", res)
	}
	// Dropped for silence past the lease, then rejoining: still benched.
	now = now.Add(4 * time.Second)
	m.Heartbeat("fast", now)
	m.Tick(now)
	if m.Joined("stuck") {
		t.Fatal("stuck not dropped after its lease")
	}
	m.Join("stuck", now)
	if !m.Benched("stuck") {
		t.Fatal("a rejoin unbenched a worker that never sent a gradient")
	}
	// Its gradient for a round that already closed, but within that
	// round's deadline: it would have made it, so it is waited for again.
	r, _ = m.Start(now)
	if err := m.Submit("fast", r, grad(1, 1, 1), now); err != nil {
		t.Fatal(err)
	}
	m.Tick(now)
	if err := m.Submit("stuck", r, grad(1, 1, 1), now.Add(200*time.Millisecond)); !errors.Is(err, ErrRejected) {
		t.Fatalf("a gradient for a closed round was accepted: %v", err)
	}
	if m.Benched("stuck") {
		t.Fatal("a gradient within its round's deadline did not unbench the worker")
	}
	r, _ = m.Start(now.Add(300 * time.Millisecond))
	if err := m.Submit("fast", r, grad(1, 1, 1), now.Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if res, _ := m.Tick(now.Add(400 * time.Millisecond)); res != nil {
		t.Fatal("the round did not wait for the unbenched worker")
	}
}

// A benched worker whose gradient arrives past its round's deadline stays
// benched: it would still have held the rounds up.
func TestLateGradientKeepsWorkerBenched(t *testing.T) {
	m := newMachine(t, 1)
	now := t0
	m.Join("fast", now)
	m.Join("slow", now)
	for range 3 {
		r, _ := m.Start(now)
		if err := m.Submit("fast", r, grad(1, 1, 1), now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(1100 * time.Millisecond)
		m.Heartbeat("slow", now)
		m.Tick(now)
	}
	r, _ := m.Start(now)
	if err := m.Submit("fast", r, grad(1, 1, 1), now); err != nil {
		t.Fatal(err)
	}
	m.Tick(now)
	if err := m.Submit("slow", r, grad(1, 1, 1), now.Add(1500*time.Millisecond)); !errors.Is(err, ErrRejected) {
		t.Fatalf("a gradient for a closed round was accepted: %v", err)
	}
	if !m.Benched("slow") {
		t.Error("a gradient 1.5 s into a 1 s round unbenched the worker")
	}
}
