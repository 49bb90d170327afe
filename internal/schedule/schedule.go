// Package schedule decides when the coordinator writes a checkpoint: when
// the model has changed materially, at most every Interval, at least every
// MaxAge while training goes on, and with backoff while writes fail. Like
// internal/round it is a plain type driven by method calls with the time
// passed in: no goroutines, clocks or sockets.
//
// The coordinator asks Due at every step; when it says yes, the
// coordinator recalibrates (for the newest held-out median error and
// threshold) and asks Decide with that Mark; then it reports Written or
// Failed. A checkpoint that Decide turns down (nothing changed) costs
// nothing but the calibration, and the next look comes an Interval later.
//
// Why "materially": a scorer only needs a new version when its scores
// would change, and every version kept costs disk (retention keeps every
// version of the last day by default). A settled model at a maintenance
// pace drifts by noise; its threshold and median error stay within a few
// percent, and its checkpoints would be copies.
package schedule

import (
	"fmt"
	"math"
	"time"
)

// Config sets the schedule. The zero value of a field takes its default.
type Config struct {
	// Interval is the least time between two checkpoints in the course of
	// training (default 30 s), and how often a change is looked for.
	Interval time.Duration
	// Rounds, when positive, also checkpoints every Rounds rounds,
	// material or not, and however recent the last one: for tests and
	// short runs that want many versions (default 0: off).
	Rounds uint64
	// Change is the least relative change of the threshold or of the
	// median held-out error, since the last checkpoint, that counts as
	// material (default 0.05). Negative: every look is material.
	Change float64
	// MaxAge is the most time between checkpoints while rounds complete,
	// changed or not (default 1 h): a restart loses at most this much
	// training, and the hourly retention has one a hour.
	MaxAge time.Duration
	// RetryMin and RetryMax bound the wait before a failed write is tried
	// again: it starts at RetryMin and doubles (defaults 1 s and 30 s).
	RetryMin, RetryMax time.Duration
}

// Defaults.
const (
	DefaultInterval = 30 * time.Second
	DefaultChange   = 0.05
	DefaultMaxAge   = time.Hour
)

func (c Config) withDefaults() Config {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Change == 0 {
		c.Change = DefaultChange
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.RetryMin == 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	return c
}

// Validate reports whether the config can run, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Interval < 0:
		return fmt.Errorf("schedule: checkpoint interval %v: must be positive", c.Interval)
	case c.MaxAge < c.Interval:
		return fmt.Errorf("schedule: checkpoint max age %v below the interval %v", c.MaxAge, c.Interval)
	case math.IsNaN(c.Change) || c.Change >= 1:
		return fmt.Errorf("schedule: change %v: want below 1 (negative: every interval)", c.Change)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("schedule: retry waits %v to %v: want 0 < min <= max", c.RetryMin, c.RetryMax)
	}
	return nil
}

// Mark is what a checkpoint is judged by: its model's threshold (0: none
// yet) and median held-out error (0: not known), and the training state's
// name (a change of state is material).
type Mark struct {
	Threshold float64 // the alert threshold (0: none yet)
	Median    float64 // the median held-out error (0: not known)
	State     string  // the training state's name
}

// Schedule is the checkpoint schedule's state. The zero value is not
// usable; call New.
type Schedule struct {
	cfg Config

	any      bool      // a checkpoint has been written (or resumed from)
	round    uint64    // the round of the last checkpoint
	at       time.Time // when it was written
	mark     Mark      // and what it was judged by
	lookedAt time.Time // the last look, written or not
	retryAt  time.Time // no try before this while failing
	backoff  time.Duration
}

// New returns a schedule. A coordinator resuming a store passes the
// newest checkpoint's round and mark as resumed (nil: a new store); its
// time counts as now, so the first periodic one comes an Interval later.
func New(cfg Config, now time.Time, resumed *Resumed) (*Schedule, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Schedule{cfg: cfg.withDefaults(), at: now, lookedAt: now}
	if resumed != nil {
		s.any, s.round, s.mark = true, resumed.Round, resumed.Mark
	}
	return s, nil
}

// Resumed is the checkpoint a coordinator resumed from.
type Resumed struct {
	Round uint64 // its training round
	Mark  Mark   // what it is judged by (its median may be 0: not stored)
}

// Config returns the config with its defaults.
func (s *Schedule) Config() Config { return s.cfg }

// Due reports whether to look at a checkpoint now, with the newest
// completed round: some round completed since the last checkpoint, no
// failed write is waiting out its backoff, and Interval has passed since
// the last look (or Rounds rounds since the last checkpoint).
func (s *Schedule) Due(now time.Time, round uint64) bool {
	if round <= s.round && s.any || round == 0 || now.Before(s.retryAt) {
		return false
	}
	if s.cfg.Rounds > 0 && round-s.round >= s.cfg.Rounds {
		return true
	}
	return now.Sub(s.lookedAt) >= s.cfg.Interval
}

// Decide reports whether the checkpoint Due offered is to be written, and
// why: the first one, a retry after a failed write, a change of state or
// of threshold (from none, or by Change), the median held-out error moved
// by Change, MaxAge passed, or Rounds. "" with false: nothing material,
// and the next look is an Interval away.
func (s *Schedule) Decide(now time.Time, round uint64, m Mark) (bool, string) {
	s.lookedAt = now
	switch {
	case !s.any:
		return true, "the first checkpoint"
	case s.backoff > 0:
		// A write was wanted and failed: it stays wanted until one
		// succeeds, even if the model has since moved back.
		return true, "retrying a failed write"
	case s.cfg.Rounds > 0 && round-s.round >= s.cfg.Rounds:
		return true, fmt.Sprintf("%d rounds", round-s.round)
	case m.State != s.mark.State:
		return true, fmt.Sprintf("training %s, was %s", m.State, s.mark.State)
	case (m.Threshold > 0) != (s.mark.Threshold > 0):
		return true, "the first threshold"
	case s.cfg.Change < 0:
		return true, "every interval"
	case moved(s.mark.Threshold, m.Threshold, s.cfg.Change):
		return true, fmt.Sprintf("the threshold moved to %.4g from %.4g", m.Threshold, s.mark.Threshold)
	case moved(s.mark.Median, m.Median, s.cfg.Change):
		return true, fmt.Sprintf("the median held-out error moved to %.4g from %.4g", m.Median, s.mark.Median)
	case now.Sub(s.at) >= s.cfg.MaxAge:
		return true, fmt.Sprintf("the last checkpoint is %v old", now.Sub(s.at).Round(time.Second))
	}
	return false, ""
}

// moved reports whether b differs from a by at least the fraction change
// of a (a 0 or non-finite a moves whenever b differs).
func moved(a, b, change float64) bool {
	if !(a > 0) || math.IsInf(a, 0) {
		return a != b && !(math.IsNaN(a) && math.IsNaN(b))
	}
	return math.Abs(b-a) >= change*a
}

// Written records a checkpoint of round with mark m written at now.
func (s *Schedule) Written(now time.Time, round uint64, m Mark) {
	s.any, s.round, s.at, s.mark, s.lookedAt = true, round, now, m, now
	s.retryAt, s.backoff = time.Time{}, 0
}

// Failed records a failed write at now and returns the wait before the
// next try: RetryMin, doubling to RetryMax while writes keep failing.
func (s *Schedule) Failed(now time.Time) time.Duration {
	s.backoff = min(max(2*s.backoff, s.cfg.RetryMin), s.cfg.RetryMax)
	s.retryAt = now.Add(s.backoff)
	s.lookedAt = time.Time{} // due again as soon as the wait is over
	return s.backoff
}

// Failing reports whether the last write failed.
func (s *Schedule) Failing() bool { return s.backoff > 0 }
