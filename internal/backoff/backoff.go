// Package backoff is the retry delay of every loop in recon that waits for
// something to come back (a broker, the coordinator, a sink): it starts at
// Min, doubles after each wait up to Max, and starts over at Reset.
//
// A Backoff is a plain value driven by method calls; Next and Reset do not
// touch the clock, so schedules are table-tested without sleeping, and Wait
// is the one place that sleeps.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// The delays of a zero Backoff.
const (
	DefaultMin = 100 * time.Millisecond
	DefaultMax = 5 * time.Second
)

// Backoff is a capped exponential delay. The zero value waits 100 ms, then
// 200 ms, doubling to 5 s. It is not safe for concurrent use: each retry
// loop owns one.
type Backoff struct {
	Min, Max time.Duration // first and largest delay; zero takes the defaults
	// Rand, when not nil, spreads each wait uniformly over [d/2, d] of its
	// delay d, so that many clients that lost the same server do not come
	// back in step.
	Rand *rand.Rand

	cur time.Duration // the next delay; zero: Min
}

func (b *Backoff) bounds() (lo, hi time.Duration) {
	lo, hi = b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	return lo, max(lo, hi)
}

// Delay returns the delay the next wait takes, without taking it.
func (b *Backoff) Delay() time.Duration {
	lo, hi := b.bounds()
	if b.cur == 0 {
		return lo
	}
	return min(b.cur, hi)
}

// Retrying reports whether a wait has been taken since the start or the last
// Reset: false on the first failure of a run, the one to log at once.
func (b *Backoff) Retrying() bool { return b.cur != 0 }

// AtMax reports whether the delay has reached Max.
func (b *Backoff) AtMax() bool {
	_, hi := b.bounds()
	return b.Delay() == hi
}

// Next returns the next delay (spread by Rand when set) and doubles the one
// after it, up to Max.
func (b *Backoff) Next() time.Duration {
	_, hi := b.bounds()
	d := b.Delay()
	b.cur = min(2*d, hi)
	if b.Rand != nil {
		d = d/2 + time.Duration(b.Rand.Int64N(int64(d/2)+1))
	}
	return d
}

// Reset makes the next delay Min again: the thing waited for came back.
func (b *Backoff) Reset() { b.cur = 0 }

// Wait sleeps Next's delay, or until ctx is done, when it returns ctx.Err().
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits d, or until ctx is done, when it returns ctx.Err() (at once
// for d <= 0 too).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
