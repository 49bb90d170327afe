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
//	Settled     a threshold is set: still Learn, until the median held-out
//	            error stops falling between calibrations (the calibrator's
//	            own settling check, over 200 rounds, comes too early: a
//	            model keeps improving for thousands of rounds after it).
//	Maintaining the model has settled: Config.Maintain presentations per new
//	            record, so training costs what the stream brings. Drift (the
//	            median held-out error up by Config.Drift, or features drifting
//	            out of the normalizer) sends it back to Settled.
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
// at the speed of computing (replay), as it does by default. The bounds
// are off by default because the settling rule below moves to
// maintenance too early: on internal/pipeline's 100k stream a bound of 2
// once settled took precision and recall from 1.00 to 0.95 and 0.97.
type Config struct {
	// Learn is the most presentations per new record while learning
	// (0: no bound).
	Learn float64
	// Maintain is the most presentations per new record once settled
	// (0: no bound).
	Maintain float64
	// Settle is the least relative fall of the median held-out error
	// between calibrations that still counts as learning (default 0.05).
	Settle float64
	// Drift is the relative rise of the median held-out error over its
	// settled level that counts as drift (default 0.5).
	Drift float64
}

// Defaults of the rules that move between states.
const (
	DefaultSettle = 0.05
	DefaultDrift  = 0.5
)

func (c Config) withDefaults() Config {
	if c.Settle == 0 {
		c.Settle = DefaultSettle
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

// Pace is the budget's state. The zero value is not usable; call New.
type Pace struct {
	cfg   Config
	state State
	last  float64 // median held-out error at the last calibration (0: none)
	level float64 // the settled level drift is measured from
}

// New returns a pace in Warming, or, for a coordinator resuming a model
// that has a threshold, in Settled (it proves it is settled again at its
// next calibrations).
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

// Threshold records the first threshold and its median held-out error.
func (p *Pace) Threshold(median float64) {
	p.last = median
	p.state = Settled
}

// Calibrated records a later calibration's median held-out error and
// whether features have drifted out of the normalizer; it returns why
// the state changed, "" when it did not.
func (p *Pace) Calibrated(median float64, drifted bool) string {
	last := p.last
	p.last = median
	switch p.state {
	case Settled:
		if last > 0 && median >= (1-p.cfg.Settle)*last {
			p.level = median
			p.state = Maintaining
			return fmt.Sprintf("the median held-out error stopped falling (%.4g, was %.4g)", median, last)
		}
	case Maintaining:
		switch {
		case drifted:
			p.state = Settled
			return "features drifted out of the normalizer"
		case median > (1+p.cfg.Drift)*p.level:
			p.state = Settled
			return fmt.Sprintf("the median held-out error rose to %.4g from its settled %.4g", median, p.level)
		case median < p.level:
			p.level = median // better still: drift is measured from the best
		}
	}
	return ""
}
