package schedule

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// step is one call on a schedule: at is the time since t0; due is what
// Due must say; when it says yes, Decide gets mark and must answer write
// (with a reason containing why), and a write is reported Written, or
// Failed when fail is set (its backoff must be wait).
type step struct {
	at    time.Duration
	round uint64
	due   bool
	mark  Mark
	write bool
	why   string
	fail  bool
	wait  time.Duration
}

func run(t *testing.T, s *Schedule, steps []step) {
	t.Helper()
	for i, st := range steps {
		now := t0.Add(st.at)
		if got := s.Due(now, st.round); got != st.due {
			t.Fatalf("step %d (%v, round %d): Due %v, want %v", i, st.at, st.round, got, st.due)
		}
		if !st.due {
			continue
		}
		write, why := s.Decide(now, st.round, st.mark)
		if write != st.write || !strings.Contains(why, st.why) {
			t.Fatalf("step %d (%v, round %d, %+v): Decide %v %q, want %v %q", i, st.at, st.round, st.mark, write, why, st.write, st.why)
		}
		switch {
		case write && st.fail:
			if got := s.Failed(now); got != st.wait {
				t.Fatalf("step %d: backoff %v, want %v", i, got, st.wait)
			}
		case write:
			s.Written(now, st.round, st.mark)
		}
	}
}

func newSchedule(t *testing.T, cfg Config, resumed *Resumed) *Schedule {
	t.Helper()
	s, err := New(cfg, t0, resumed)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchedule(t *testing.T) {
	learning := Mark{Median: 1.0, State: "learning"}
	settled := Mark{Threshold: 10, Median: 0.5, State: "settled"}
	sec := time.Second
	for _, tc := range []struct {
		name    string
		cfg     Config
		resumed *Resumed
		steps   []step
	}{
		{"the first checkpoint waits an interval, then the model's changes decide", Config{}, nil, []step{
			{at: 0, round: 0, due: false},          // no round yet
			{at: 10 * sec, round: 500, due: false}, // within the interval
			{at: 30 * sec, round: 900, due: true, mark: learning, write: true, why: "first"},
			{at: 45 * sec, round: 1500, due: false},
			{at: 60 * sec, round: 2000, due: true, mark: Mark{Median: 0.97, State: "learning"}, write: false}, // 3%: not material
			{at: 75 * sec, round: 2500, due: false},                                                           // the next look is an interval after the last
			{at: 90 * sec, round: 3000, due: true, mark: Mark{Median: 0.9, State: "learning"}, write: true, why: "median"},
			{at: 120 * sec, round: 3500, due: true, mark: Mark{Threshold: 10, Median: 0.89, State: "learning"}, write: true, why: "first threshold"},
			{at: 150 * sec, round: 4000, due: true, mark: Mark{Threshold: 10.4, Median: 0.89, State: "learning"}, write: false},
			{at: 180 * sec, round: 4500, due: true, mark: Mark{Threshold: 10.6, Median: 0.89, State: "learning"}, write: true, why: "threshold moved"}, // 6% from the last written, 10
			{at: 210 * sec, round: 5000, due: true, mark: Mark{Threshold: 10.6, Median: 0.89, State: "maintaining"}, write: true, why: "training maintaining"},
		}},
		{"no round since the last checkpoint: no look", Config{}, nil, []step{
			{at: 30 * sec, round: 10, due: true, mark: learning, write: true, why: "first"},
			{at: 90 * sec, round: 10, due: false},
			{at: 2 * time.Hour, round: 10, due: false}, // an idle stream writes nothing, however old
			{at: 2*time.Hour + sec, round: 11, due: true, mark: learning, write: true, why: "old"},
		}},
		{"a settled model checkpoints once an hour", Config{}, &Resumed{Round: 100, Mark: settled}, []step{
			{at: 30 * sec, round: 100, due: false}, // resumed at round 100: nothing new
			{at: 30 * sec, round: 101, due: true, mark: settled, write: false},
			{at: 30*time.Minute + 30*sec, round: 5000, due: true, mark: settled, write: false},
			{at: time.Hour, round: 9000, due: true, mark: Mark{Threshold: 10.2, Median: 0.51, State: "settled"}, write: true, why: "1h0m0s old"},
			{at: time.Hour + 30*sec, round: 9100, due: true, mark: settled, write: false},
		}},
		{"Rounds checkpoints every so many rounds, material or not", Config{Rounds: 25, Interval: time.Hour}, nil, []step{
			{at: sec, round: 24, due: false},
			{at: sec, round: 25, due: true, mark: learning, write: true, why: "first"},
			{at: 2 * sec, round: 49, due: false},
			{at: 2 * sec, round: 50, due: true, mark: learning, write: true, why: "25 rounds"},
		}},
		{"a negative Change writes at every look", Config{Change: -1}, &Resumed{Round: 1, Mark: settled}, []step{
			{at: 30 * sec, round: 2, due: true, mark: settled, write: true, why: "every interval"},
			{at: 60 * sec, round: 3, due: true, mark: settled, write: true, why: "every interval"},
		}},
		{"failed writes back off from 1 s to 30 s, then a success resets", Config{}, nil, []step{
			{at: 30 * sec, round: 5, due: true, mark: learning, write: true, why: "first", fail: true, wait: sec},
			{at: 30*sec + 500*time.Millisecond, round: 6, due: false}, // waiting out the backoff
			{at: 31 * sec, round: 7, due: true, mark: learning, write: true, fail: true, wait: 2 * sec},
			{at: 33 * sec, round: 8, due: true, mark: learning, write: true, fail: true, wait: 4 * sec},
			{at: 37 * sec, round: 9, due: true, mark: learning, write: true, fail: true, wait: 8 * sec},
			{at: 45 * sec, round: 10, due: true, mark: learning, write: true, fail: true, wait: 16 * sec},
			{at: 61 * sec, round: 11, due: true, mark: learning, write: true, fail: true, wait: 30 * sec},
			{at: 91 * sec, round: 12, due: true, mark: learning, write: true, fail: true, wait: 30 * sec},
			{at: 121 * sec, round: 13, due: true, mark: learning, write: true, why: "first"},
			{at: 122 * sec, round: 14, due: false}, // back on the interval
			{at: 151 * sec, round: 15, due: true, mark: learning, write: false},
			{at: 181 * sec, round: 16, due: true, mark: Mark{Median: 0.5, State: "learning"}, write: true, fail: true, wait: sec}, // the backoff starts again at 1 s
			// The model moved back, but the failed write stays wanted until one succeeds.
			{at: 182 * sec, round: 17, due: true, mark: learning, write: true, why: "retrying a failed write", fail: true, wait: 2 * sec},
			{at: 184 * sec, round: 18, due: true, mark: learning, write: true, why: "retrying a failed write"},
			{at: 214 * sec, round: 19, due: true, mark: learning, write: false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, newSchedule(t, tc.cfg, tc.resumed), tc.steps)
		})
	}
}

func TestScheduleFailingAndConfig(t *testing.T) {
	s := newSchedule(t, Config{}, nil)
	if c := s.Config(); c.Interval != DefaultInterval || c.Change != DefaultChange || c.MaxAge != DefaultMaxAge {
		t.Fatalf("defaults %+v", c)
	}
	s.Failed(t0)
	if !s.Failing() {
		t.Fatal("not failing after Failed")
	}
	s.Written(t0.Add(time.Minute), 3, Mark{})
	if s.Failing() {
		t.Fatal("failing after Written")
	}
	for _, bad := range []Config{
		{Interval: -time.Second},
		{Interval: time.Hour, MaxAge: time.Minute},
		{Change: 1},
		{RetryMin: time.Minute, RetryMax: time.Second},
	} {
		if _, err := New(bad, t0, nil); err == nil {
			t.Errorf("New(%+v): no error", bad)
		}
	}
}

func TestMoved(t *testing.T) {
	for _, tc := range []struct {
		a, b, change float64
		want         bool
	}{
		{10, 10.4, 0.05, false},
		{10, 10.5, 0.05, true},
		{10, 9.5, 0.05, true},
		{0, 0, 0.05, false},
		{0, 1e-9, 0.05, true}, // from nothing
	} {
		if got := moved(tc.a, tc.b, tc.change); got != tc.want {
			t.Errorf("moved(%v, %v, %v) = %v, want %v", tc.a, tc.b, tc.change, got, tc.want)
		}
	}
}
