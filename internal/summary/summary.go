// Package summary turns an event that repeats many times a minute (a
// checkpoint written, a checkpoint taken) into one log line per period:
// the first event at once, then a count and the newest version at most
// every Every. It is a plain type driven with the time passed in.
package summary

import "time"

// Line counts events between log lines. The zero value logs every event;
// set Every.
type Line struct {
	Every time.Duration // the least time between lines after the first

	n      int
	from   uint64
	to     uint64
	lineAt time.Time
	any    bool
}

// Add counts an event of version v at now and reports whether a line is
// due: for the first event, and once Every has passed since the last line.
func (l *Line) Add(v uint64, now time.Time) bool {
	if l.n == 0 {
		l.from = v
	}
	l.n++
	l.to = v
	return !l.any || now.Sub(l.lineAt) >= l.Every
}

// Take returns the events counted since the last line (how many, and the
// versions of the first and the newest) and starts a new period at now.
func (l *Line) Take(now time.Time) (n int, from, to uint64) {
	n, from, to = l.n, l.from, l.to
	l.n, l.any, l.lineAt = 0, true, now
	return n, from, to
}
