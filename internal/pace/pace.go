// Package pace is the coordinator's training budget as a pure state
// machine: how many times, on average, a new stream record may be trained
// on, by the state of training. Like internal/round it has no goroutines,
// clocks or sockets: the coordinator reports what happened (warm-up over,
// a calibration's median held-out error, features drifting) and reads
// the budget to send with each round.
//
// The states:
//
//	Warming     no normalizer yet: no rounds run.
//	Learning    no threshold yet: each new record may be presented up to
//	            Config.Learn times (replay draws on the recent ones).
//	Settled     a threshold is set: still Learn, until training plateaus:
//	            neither the median nor the tail (90th percentile) of the
//	            held-out errors has fallen by Config.Settle below its
//	            reference in Config.Patience rounds. The calibrator's own
//	            settling check, over 200 rounds, comes too early for this:
//	            a model keeps improving for thousands of rounds after it,
//	            and the tail, where anomalies are told apart, longest.
//	Maintaining the model has plateaued: Config.Maintain presentations per
//	            new record, so training costs what the stream brings. Drift
//	            (the median or the tail held-out error up by Config.Drift
//	            over its best settled level, or features drifting out of
//	            the normalizer) sends it back to Settled.
//
// The coordinator reports held-out errors with Observe: every CheckRounds
// rounds while Settled (Due says when), and at every calibration.
package pace

import "fmt"

// State is where training stands.
type State int

// The states, in the order training passes them.
const (
	Warming State = iota
	Learning
	Settled
	Maintaining
)

var stateNames = [...]string{"warming", "learning", "settled", "maintaining"}

// String names the state as metrics and logs do.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

// States returns every state, for a metric per state.
func States() []State { return []State{Warming, Learning, Settled, Maintaining} }

// Config sets the budget. A bound of 0 is no bound: training then runs
// at the speed of computing (replay).
type Config struct {
	// Learn is the most presentations per new record while learning
	// (0: no bound).
	Learn float64
	// Maintain is the most presentations per new record once training has
	// plateaued (0: no bound).
	Maintain float64
	// Settle is the least relative fall of the median or the tail
	// held-out error below its reference that still counts as learning
	// (default 0.02).
	Settle float64
	// Patience is how many rounds may pass without such a fall before
	// training counts as plateaued (default 5000).
	Patience uint64
	// CheckRounds is how often, in rounds, the held-out errors are looked
	// at while Settled (default 500).
	CheckRounds uint64
	// Drift is the relative rise of the median or the tail held-out error
	// over its best settled level that counts as drift (default 0.5).
	Drift float64
}

// Defaults of the rules that move between states.
const (
	DefaultSettle      = 0.02
	DefaultPatience    = 5000
	DefaultCheckRounds = 500
	DefaultDrift       = 0.5
	// DefaultMaintain is the coordinator's --presentations-maintain: a
	// plateaued model trains on each new record about 4 times.
	DefaultMaintain = 4
)

// DefaultConfig returns the defaults, a training budget once plateaued
// (DefaultMaintain) included: what the coordinator's flags start from. The
// zero Config differs in one way: no budget at all.
func DefaultConfig() Config {
	return Config{Maintain: DefaultMaintain, Settle: DefaultSettle, Patience: DefaultPatience, CheckRounds: DefaultCheckRounds, Drift: DefaultDrift}
}

func (c Config) withDefaults() Config {
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	if c.Patience == 0 {
		c.Patience = DefaultPatience
	}
	if c.CheckRounds == 0 {
		c.CheckRounds = DefaultCheckRounds
	}
	if c.Drift == 0 {
		c.Drift = DefaultDrift
	}
	return c
}

// Validate reports whether the config can run, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case !(c.Maintain == 0 || c.Maintain >= 1):
		return fmt.Errorf("pace: %v presentations per record when settled: want 0 (no bound) or at least 1", c.Maintain)
	case !(c.Learn == 0 || c.Learn >= 1):
		return fmt.Errorf("pace: %v presentations per record when learning: want 0 (no bound) or at least 1", c.Learn)
	case c.Learn > 0 && (c.Maintain == 0 || c.Learn < c.Maintain):
		return fmt.Errorf("pace: %v presentations per record when learning, %v when settled: learning may not be held tighter", c.Learn, c.Maintain)
	case !(c.Settle > 0 && c.Settle < 1):
		return fmt.Errorf("pace: settle %v: want in (0, 1)", c.Settle)
	case !(c.Drift > 0):
		return fmt.Errorf("pace: drift %v: want positive", c.Drift)
	}
	return nil
}

// Errors are the held-out errors training is judged by: the median and
// the tail (90th percentile) of the calibration window's plain errors.
type Errors struct {
	Median float64 // the median plain held-out error
	Tail   float64 // its calib.TailQuantile
}

// Pace is the budget's state. The zero value is not usable; call New.
type Pace struct {
	cfg      Config
	state    State
	ref      Errors // Settled: the levels at the last real fall (zero: none yet)
	refRound uint64 // and its round
	level    Errors // Maintaining: the best levels, drift is measured from them
	checked  uint64 // the round of the last look
}

// New returns a pace in Warming, or, for a coordinator resuming a model
// that has a threshold, in Settled (it proves it has plateaued again).
func New(cfg Config, resumed bool) (*Pace, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pace{cfg: cfg.withDefaults()}
	if resumed {
		p.state = Settled
	}
	return p, nil
}

// State returns the current state.
func (p *Pace) State() State { return p.state }

// Presentations returns the most times, on average, a new record may be
// trained on in the state (0: no bound): what rounds carry to the workers.
func (p *Pace) Presentations() float64 {
	if p.state == Maintaining {
		return p.cfg.Maintain
	}
	return p.cfg.Learn
}

// WarmedUp records that the normalizer is frozen: training starts.
func (p *Pace) WarmedUp() {
	if p.state == Warming {
		p.state = Learning
	}
}

// Threshold records the first threshold, at round, and its held-out errors.
func (p *Pace) Threshold(round uint64, e Errors) {
	p.state = Settled
	p.ref, p.refRound, p.checked = e, round, round
}

// Due reports whether the held-out errors should be looked at after
// round: every CheckRounds rounds while Settled.
func (p *Pace) Due(round uint64) bool {
	return p.state == Settled && round >= p.checked+p.cfg.CheckRounds
}

// Observe records the held-out errors at round and whether features have
// drifted out of the normalizer; it returns why the state changed, ""
// when it did not.
func (p *Pace) Observe(round uint64, e Errors, drifted bool) string {
	p.checked = round
	switch p.state {
	case Settled:
		if p.ref == (Errors{}) || fell(e.Median, p.ref.Median, p.cfg.Settle) || fell(e.Tail, p.ref.Tail, p.cfg.Settle) {
			p.ref, p.refRound = e, round
			return ""
		}
		if round >= p.refRound+p.cfg.Patience {
			p.state = Maintaining
			p.level = Errors{min(e.Median, p.ref.Median), min(e.Tail, p.ref.Tail)}
			return fmt.Sprintf("the held-out errors fell by under %g%% in %d rounds (median %.4g, tail %.4g)", 100*p.cfg.Settle, round-p.refRound, e.Median, e.Tail)
		}
	case Maintaining:
		rise := 1 + p.cfg.Drift
		switch {
		case drifted:
			p.back(round, e)
			return "features drifted out of the normalizer"
		case e.Median > rise*p.level.Median:
			p.back(round, e)
			return fmt.Sprintf("the median held-out error rose to %.4g from its settled %.4g", e.Median, p.level.Median)
		case e.Tail > rise*p.level.Tail:
			p.back(round, e)
			return fmt.Sprintf("the tail held-out error rose to %.4g from its settled %.4g", e.Tail, p.level.Tail)
		}
		p.level = Errors{min(e.Median, p.level.Median), min(e.Tail, p.level.Tail)}
	}
	return ""
}

// back returns to Settled at round, learning from errors e.
func (p *Pace) back(round uint64, e Errors) {
	p.state = Settled
	p.ref, p.refRound = e, round
}

// fell reports whether v lies below ref by at least the fraction settle.
func fell(v, ref, settle float64) bool { return v < (1-settle)*ref }
