package calib

import (
	"fmt"
	"math"

	"github.com/recon-ad/recon/pkg/ae"
)

// MaxHeldOutRows is the most held-out records a worker sends with one
// gradient; the rest of a round's held-out records are neither trained on
// nor sent.
const MaxHeldOutRows = 64

// Config says how held-out records become the residual whitening and the
// alert threshold. Zero fields take the defaults listed.
type Config struct {
	// AlertRate is the share of held-out records scored above the
	// threshold (default DefaultAlertRate).
	AlertRate float64
	// Window is how many of the newest held-out records are kept (default
	// 16384), capped for wide records at max(1000, 2^21/width) records
	// whatever is asked: a 2,500-feature stream would otherwise hold 330 MB.
	// An alert rate of 0.05% needs that many: with 4096 records of 30
	// features the whitening fitted to them let 0.26% of fresh normal
	// records alert, with 16384 0.045%.
	Window int
	// MinRows is how many held-out records the first calibration needs
	// (default 500).
	MinRows int
	// MaxRecords bounds the wait for the first threshold: once this many
	// stream records have been seen it is set whether or not training has
	// settled (default 10000).
	MaxRecords int64
	// Settle: before MaxRecords, the first threshold waits until the
	// median plain held-out error of the window has fallen by less than
	// this fraction between two checks SettleRounds rounds apart (default
	// 0.03; negative: set it at the first check).
	Settle       float64
	SettleRounds uint64 // default 200
	// Every is how many new held-out records trigger a recalibration once
	// a threshold is set (default Window/8).
	Every int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{AlertRate: DefaultAlertRate, Window: 16384, MinRows: 500, MaxRecords: 10000, Settle: 0.03, SettleRounds: 200}
}

func (c Config) withDefaults(p int) Config {
	d := DefaultConfig()
	if c.AlertRate == 0 {
		c.AlertRate = d.AlertRate
	}
	if c.Window == 0 {
		c.Window = d.Window
	}
	if p > 0 {
		c.Window = min(c.Window, max(1000, (1<<21)/p))
	}
	if c.MinRows == 0 {
		c.MinRows = min(d.MinRows, c.Window)
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = d.MaxRecords
	}
	if c.Settle == 0 {
		c.Settle = d.Settle
	}
	if c.SettleRounds == 0 {
		c.SettleRounds = d.SettleRounds
	}
	if c.Every == 0 {
		c.Every = max(c.Window/8, 1)
	}
	return c
}

// Validate reports whether the config can run (after defaults).
func (c Config) Validate() error {
	switch {
	case !(c.AlertRate > 0 && c.AlertRate < 1):
		return fmt.Errorf("alert rate %v: must be in (0,1)", c.AlertRate)
	case c.Window < 1:
		return fmt.Errorf("window %d: must be at least 1", c.Window)
	case c.MinRows < 1 || c.MinRows > c.Window:
		return fmt.Errorf("min rows %d: must be in [1, window %d]", c.MinRows, c.Window)
	case c.MaxRecords < 0:
		return fmt.Errorf("max records %d: must not be negative", c.MaxRecords)
	case c.Every < 1:
		return fmt.Errorf("every %d: must be at least 1", c.Every)
	case math.IsNaN(c.Settle) || c.Settle >= 1:
		return fmt.Errorf("settle %v: must be below 1", c.Settle)
	}
	return nil
}

// Calibrator keeps a window of held-out (standardized) records and turns it,
// with the model of the moment, into the residual whitening and the alert
// threshold. Drive it with Observe as held-out records arrive, ask Due after
// each training round, and call Calibrate when it says so. It is not safe
// for concurrent use.
type Calibrator struct {
	cfg Config
	p   int

	rows     []float64      // ring of held-out records, row-major
	at, n    int            // next slot, rows held
	hashes   []uint64       // of the rows held, by slot
	held1    map[uint64]int // rows held by hash: a record already held is not kept twice
	since    int            // rows observed since the last calibration
	records  int64          // stream records seen
	pending  int64          // of them, seen since the last Due
	peak     int64          // the most records seen between two Due calls
	perRound int64          // what the next round may bring: twice peak, at most MaxRecords/10
	held     int64          // held-out records seen

	checkedAt  uint64 // round of the last settle check
	lastMedian float64
	checked    bool

	threshold float64
	whitening *ae.Whitening
	settled   bool
	version   uint64
}

// New returns a calibrator for records of width p.
func New(cfg Config, p int) (*Calibrator, error) {
	cfg = cfg.withDefaults(p)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("calib: %w", err)
	}
	if p < 1 {
		return nil, fmt.Errorf("calib: record width %d", p)
	}
	return &Calibrator{cfg: cfg, p: p, held1: map[uint64]int{}}, nil
}

// Config returns the configuration with defaults applied.
func (c *Calibrator) Config() Config { return c.cfg }

// Resume starts from an earlier calibration (a checkpoint's): its
// threshold and whitening stay in force until the next calibration.
func (c *Calibrator) Resume(threshold float64, w *ae.Whitening) {
	if threshold > 0 {
		c.threshold, c.whitening, c.settled = threshold, w, true
	}
}

// Observe adds held-out records (standardized, row-major) and counts the
// stream records read along with them (held-out and training alike). A
// record identical to one the window holds (a replayed file) is counted
// but not kept again: calibration needs distinct records.
func (c *Calibrator) Observe(held []float64, records int) {
	if len(held)%c.p != 0 {
		panic(fmt.Sprintf("calib: Observe: %d values for width %d", len(held), c.p))
	}
	c.records += int64(records)
	c.pending += int64(records)
	for r := 0; r < len(held)/c.p; r++ {
		rec := held[r*c.p : (r+1)*c.p]
		h := ae.RowHash(rec)
		if _, dup := c.held1[h]; dup {
			c.held++
			continue
		}
		if c.n < c.cfg.Window {
			c.rows = append(c.rows, rec...)
			c.hashes = append(c.hashes, h)
			c.n++
		} else {
			copy(c.rows[c.at*c.p:(c.at+1)*c.p], rec)
			delete(c.held1, c.hashes[c.at])
			c.hashes[c.at] = h
		}
		c.held1[h] = c.at
		c.at = (c.at + 1) % c.cfg.Window
		c.since++
		c.held++
	}
}

// Due reports whether Calibrate should run after round: before the first
// threshold, once the window holds MinRows records, every SettleRounds
// rounds, and at once when the next round could pass MaxRecords (were it
// twice the largest round so far, or a tenth of MaxRecords if less) with at least
// MinBoundRows held out (a small data set replayed holds out few distinct
// records), so that the first threshold comes within MaxRecords; after it,
// every Every new held-out records. Rounds vary (a burst of a batch after
// rounds of a record or two, a trainer's gradient late): judged by the last
// round alone, the first threshold came up to 40 records past the bound on
// the ADBench stream eval. The largest round so far is a batch read from
// the backlog at the start, so the bound fires at most a few batches early.
func (c *Calibrator) Due(round uint64) bool {
	c.peak, c.pending = max(c.peak, c.pending), 0
	c.perRound = min(2*c.peak, c.cfg.MaxRecords/10)
	if c.threshold == 0 {
		if c.records+c.perRound >= c.cfg.MaxRecords && c.n >= MinBoundRows {
			return true
		}
		return c.n >= c.cfg.MinRows && (!c.checked || round >= c.checkedAt+c.cfg.SettleRounds)
	}
	return c.n > 0 && c.since >= c.cfg.Every
}

// MinBoundRows is the fewest distinct held-out records the first threshold
// is set from at the record bound. A small file replayed may hold out only
// a handful (glass: 150 training rows, about 15 held out, once 8): the
// threshold from them is rough (Update.Rows says how rough), but a stream
// without any alerts would be worse.
const MinBoundRows = 2

// Update is what a calibration set.
type Update struct {
	Threshold float64       // alert when a whitened score exceeds it
	Whitening *ae.Whitening // the residual whitening the threshold belongs to
	Version   uint64        // counts calibrations that set a threshold, from 1
	First     bool          // the first threshold
	Forced    bool          // set at MaxRecords before training settled
	Median    float64       // median plain held-out error of the window
	Tail      float64       // and its TailQuantile
	Rows      int           // held-out records it used
}

// Calibrate recalibrates with model m (at training round round): it
// returns the new threshold and whitening, or ok false when the first
// threshold must still wait for training to settle.
func (c *Calibrator) Calibrate(m *ae.Model, round uint64) (u Update, ok bool, err error) {
	if m.Spec().Input != c.p {
		panic(fmt.Sprintf("calib: Calibrate: model width %d, calibrator %d", m.Spec().Input, c.p))
	}
	if c.n == 0 {
		return u, false, ae.ErrNoResiduals
	}
	z := c.rows[:c.n*c.p]
	plain := make([]float64, c.n)
	m.Score(plain, z)
	med := quantile(plain, 0.5)
	u.Median, u.Tail, u.Rows = med, quantile(plain, TailQuantile), c.n
	if c.threshold == 0 {
		settled := c.cfg.Settle < 0 || c.checked && med >= (1-c.cfg.Settle)*c.lastMedian
		c.checked, c.checkedAt, c.lastMedian = true, round, med
		forced := !settled && c.records+c.perRound >= c.cfg.MaxRecords
		if !settled && !forced {
			return u, false, nil
		}
		u.First, u.Forced = true, forced
		c.settled = settled
	}
	w, err := ae.FitWhitening(m, z, WhiteningTrim, WhiteningIters)
	if err != nil {
		return u, false, err
	}
	rec := make([]float64, len(z))
	m.Reconstruct(rec, z)
	scores := make([]float64, c.n)
	w.Score(scores, nil, z, rec)
	th := AlertThreshold(scores, c.cfg.AlertRate)
	if !(th > 0) || math.IsInf(th, 0) {
		return u, false, fmt.Errorf("calib: threshold %v from %d held-out records", th, c.n)
	}
	c.threshold, c.whitening, c.since = th, w, 0
	c.version++
	u.Threshold, u.Whitening, u.Version = th, w, c.version
	return u, true, nil
}

// Errors returns the median and the tail (TailQuantile) of the plain
// held-out errors of the window under model m (zeros when the window is
// empty), changing nothing.
func (c *Calibrator) Errors(m *ae.Model) (median, tail float64) {
	if c.n == 0 {
		return 0, 0
	}
	plain := make([]float64, c.n)
	m.Score(plain, c.rows[:c.n*c.p])
	return quantile(plain, 0.5), quantile(plain, TailQuantile)
}

// TailQuantile is the quantile of the plain held-out errors that
// Update.Tail and Errors report: where training still improves after the
// median has stopped. Held-out records are the stream's, anomalies
// included: the 99th percentile of a stream of 1% anomalies lies at their
// edge and jumped 3-6 times between calibrations (read as drift); the
// 90th stays among the normal records for contamination up to several
// percent.
const TailQuantile = 0.9

// Progress is where calibration stands, for metrics and logs.
type Progress struct {
	Rows      int     // held-out records in the window
	HeldOut   int64   // held-out records seen
	Records   int64   // stream records seen
	Threshold float64 // 0 until the first calibration
	Settled   bool    // training had settled at the first threshold (or it was resumed)
}

// Progress returns where calibration stands.
func (c *Calibrator) Progress() Progress {
	return Progress{Rows: c.n, HeldOut: c.held, Records: c.records, Threshold: c.threshold, Settled: c.settled}
}

// DriftLimit is how far a feature's spread among held-out records may lie
// from the normalizer's (a factor either way), or its mean from the
// normalizer's (in the normalizer's standard deviations), before it counts
// as drifted.
const DriftLimit = 3

// Drifted returns the features whose held-out records in the window no
// longer fit the normalizer: their standardized mean beyond DriftLimit, or
// their standardized spread beyond a factor DriftLimit either way (a
// feature constant in the window is not judged on spread). A normalizer
// frozen from unrepresentative first records shows here.
func (c *Calibrator) Drifted() []int {
	if c.n < c.cfg.MinRows {
		return nil
	}
	var out []int
	for j := 0; j < c.p; j++ {
		var sum, sq float64
		for r := 0; r < c.n; r++ {
			v := c.rows[r*c.p+j]
			sum += v
			sq += v * v
		}
		mean := sum / float64(c.n)
		sd := math.Sqrt(max(sq/float64(c.n)-mean*mean, 0))
		if math.Abs(mean) > DriftLimit || sd > DriftLimit || sd > 0 && sd < 1/float64(DriftLimit) {
			out = append(out, j)
		}
	}
	return out
}
