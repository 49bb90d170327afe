package summary

import (
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	l := Line{Every: 5 * time.Minute}
	type step struct {
		at       time.Duration
		version  uint64
		due      bool
		n        int
		from, to uint64
	}
	for i, s := range []step{
		{0, 1, true, 1, 1, 1}, // the first at once
		{time.Second, 2, false, 0, 0, 0},
		{time.Minute, 3, false, 0, 0, 0},
		{5 * time.Minute, 4, true, 3, 2, 4}, // 5 min after the first line: 2, 3, 4
		{6 * time.Minute, 5, false, 0, 0, 0},
		{20 * time.Minute, 9, true, 2, 5, 9},
	} {
		now := t0.Add(s.at)
		if due := l.Add(s.version, now); due != s.due {
			t.Fatalf("step %d: due %v, want %v", i, due, s.due)
		}
		if !s.due {
			continue
		}
		if n, from, to := l.Take(now); n != s.n || from != s.from || to != s.to {
			t.Errorf("step %d: Take = %d, %d..%d; want %d, %d..%d", i, n, from, to, s.n, s.from, s.to)
		}
	}
}
