package scorer

import (
	"sync"
	"time"
)

// failureRun tracks a run of failed attempts (output writes, sink
// requests): since when, the last error, and when the next warning may be
// logged, the first of a run at once and then at intervals doubling from
// 5 s to a minute. It is safe for concurrent use (Ready reads it).
type failureRun struct {
	mu      sync.Mutex
	since   time.Time // failing since (zero: the last attempt worked)
	lastErr string
	next    time.Time // when the next warning may be logged
	every   time.Duration
	kind    string // of the failure last warned about
}

// fail records err, of a kind the caller names; it returns how long the
// run has lasted and whether a warning is due now: the interval is up, or
// the failure is of another kind than the one last warned about (a write
// that first timed out and is then refused is told as refused at once).
func (f *failureRun) fail(err error, kind string) (failingFor time.Duration, warn bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if f.since.IsZero() {
		f.since, f.next, f.every = now, now, 5*time.Second
	}
	f.lastErr = err.Error()
	if now.Before(f.next) && kind == f.kind {
		return now.Sub(f.since), false
	}
	f.kind = kind
	f.next = now.Add(f.every)
	f.every = min(2*f.every, time.Minute)
	return now.Sub(f.since), true
}

// ok ends a run; ended says whether one was running, failedFor how long.
func (f *failureRun) ok() (failedFor time.Duration, ended bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.since.IsZero() {
		return 0, false
	}
	failedFor = time.Since(f.since)
	f.since, f.lastErr, f.kind = time.Time{}, "", ""
	return failedFor, true
}

// failing returns since when attempts have been failing, and the last
// error (zero time: they work).
func (f *failureRun) failing() (time.Time, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.since, f.lastErr
}
