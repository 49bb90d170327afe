// Package fit trains one autoencoder offline on an in-memory data set: a
// seeded train/held-out split, standardization fitted on the training rows,
// minibatch Adam with learning-rate decay on plateaus and early stopping on
// the held-out error, and an alert threshold at a quantile of held-out
// scores. Sweep repeats it over code widths and finds the elbow. The package
// does no I/O; progress goes to a callback.
package fit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Config is a training run's settings. Zero fields take the defaults
// listed; Spec.Input is set from the data.
type Config struct {
	// Spec is the model. A zero Code and nil Hidden ask for the automatic
	// architecture (see AutoSpec).
	Spec ae.Spec
	// Auto fills Hidden and Code from the input width (AutoSpec).
	Auto bool

	Epochs   int     // most epochs (0: automatic, see EpochBudget)
	Batch    int     // minibatch size (default 32)
	LR       float64 // Adam learning rate (default 1e-3)
	Holdout  float64 // held-out fraction of the rows (default 0.2)
	Patience int     // epochs without held-out improvement before stopping (default 12)
	// AlertRate is the share of normal records the threshold lets alert
	// (default 0.005); see calib.AlertThreshold.
	AlertRate float64
	Seed      uint64 // seeds the split, the initialization, the batches and the noise (default 1)
	// StopOnTrain tracks the training objective instead of the held-out
	// score for early stopping and the best epoch: for fitting a model to
	// its training rows as closely as possible (the linear sweep's PCA
	// comparison), not for generalization.
	StopOnTrain bool
}

// Default returns recon's default offline configuration: the automatic
// architecture with tanh hidden and code layers and a linear output, a
// squared-error objective trimmed of each batch's 15% worst-reconstructed
// records (ae.Spec.Trim), and minibatches of 32. It was chosen on the
// twelve ADBench sets of make eval, both protocols: a linear output ranks
// best on clean training data, and the trim keeps it from learning the
// anomalies of contaminated data, where a bounded (tanh) output had been
// the defence (docs/DESIGN.md has the figures).
func Default() Config {
	return Config{
		Spec:  ae.Spec{Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear, Trim: 0.15},
		Auto:  true,
		Batch: 32,
	}.Defaults()
}

// Defaults returns c with zero fields set to their defaults.
func (c Config) Defaults() Config {
	if c.Batch == 0 {
		c.Batch = 32
	}
	if c.LR == 0 {
		c.LR = 1e-3
	}
	if c.Holdout == 0 {
		c.Holdout = 0.2
	}
	if c.Patience == 0 {
		c.Patience = 12
	}
	if c.AlertRate == 0 {
		c.AlertRate = calib.DefaultAlertRate
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// Validate reports whether the settings can run.
func (c Config) Validate() error {
	switch {
	case c.Epochs < 0:
		return fmt.Errorf("epochs %d: must not be negative (0: automatic)", c.Epochs)
	case c.Batch < 1:
		return fmt.Errorf("batch %d: must be at least 1", c.Batch)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("learning rate %v: must be positive", c.LR)
	case !(c.Holdout > 0 && c.Holdout < 1):
		return fmt.Errorf("held-out fraction %v: must be in (0,1)", c.Holdout)
	case c.Patience < 1:
		return fmt.Errorf("patience %d: must be at least 1", c.Patience)
	case !(c.AlertRate > 0 && c.AlertRate < 1):
		return fmt.Errorf("alert rate %v: must be in (0,1)", c.AlertRate)
	}
	return nil
}

// AutoSpec fills in the architecture for input width p where spec leaves
// it open: one hidden layer of width clamp(p, 16, 128) when Hidden is nil,
// and, when Code is 0, the code width calib.CodeWidth chooses from
// spectrum (the eigenvalues of the records' correlation matrix, largest
// first), or clamp(ceil(p/8), 2, 16) without one; kept below p for a plain
// model.
func AutoSpec(spec ae.Spec, p int, spectrum []float64) ae.Spec {
	spec.Input = p
	if spec.Hidden == nil {
		spec.Hidden = []int{min(max(p, 16), 128)}
	}
	if spec.Code == 0 {
		spec.Code = calib.CodeWidth(spectrum)
		if spec.Code == 0 {
			spec.Code = min(max((p+7)/8, 2), 16)
		}
		if spec.Variant == ae.Plain && spec.Code >= p {
			spec.Code = max(p-1, 1)
		}
	}
	return spec
}

// Progress reports one finished epoch.
type Progress struct {
	Epoch, Epochs int     // this epoch (from 1) and the most epochs
	TrainLoss     float64 // mean batch objective over the epoch
	HeldOut       float64 // mean held-out score after the epoch
	Best          bool    // this epoch improved the held-out score
	LR            float64 // learning rate used
	RowsPerSec    float64 // training rows per second over the epoch
}

// Result is a trained model and what was learned about its data.
type Result struct {
	Model      *ae.Model      // at the best epoch
	Optimizer  *ae.Adam       // its state at the best epoch
	Normalizer *ae.Normalizer // fitted on the training rows
	Whitening  *ae.Whitening  // of the residuals, fitted on the held-out rows
	Threshold  float64        // calib.AlertThreshold of the held-out scores
	AlertRate  float64        // the alert rate the threshold is set for
	// Constant are the features constant on the training rows (centered,
	// not scaled).
	Constant []int
	// HeldOutScores are the held-out rows' scores (at the best epoch).
	HeldOutScores []float64
	HeldOutRows   []int         // held-out rows' indices in the input
	TrainRows     []int         // training rows' indices in the input
	Train, Test   []float64     // standardized training and held-out rows
	Epochs        int           // epochs run
	BestEpoch     int           // the epoch whose parameters were kept
	HeldOut       float64       // mean held-out score at the best epoch
	Elapsed       time.Duration // wall time of the whole fit
}

// Score returns the scores of the rows of x (row-major, in input units):
// standardized by the result's normalizer, reconstructed by its model, the
// residuals whitened.
func (r *Result) Score(x []float64) []float64 {
	z := make([]float64, len(x))
	r.Normalizer.Transform(z, x)
	rec := make([]float64, len(x))
	r.Model.Reconstruct(rec, z)
	out := make([]float64, len(x)/r.Normalizer.Width())
	r.Whitening.Score(out, nil, z, rec)
	return out
}

// Checkpoint returns the result as a checkpoint (version 0: the caller
// numbers it): model, optimizer, normalizer, residual whitening, threshold
// and its rule, and the epochs run as the round.
func (r *Result) Checkpoint(features []string) *reconv1.Checkpoint {
	c := checkpoint.Build(r.Model, r.Optimizer, r.Normalizer, features)
	c.Whitening = r.Whitening.Precision()
	c.Threshold, c.Quantile = r.Threshold, 1-r.AlertRate
	c.ThresholdRule = calib.RuleText(r.AlertRate)
	c.Round = uint64(r.Epochs)
	return c
}

// trimmedMean is the mean of the values of s at or below its q-quantile.
func trimmedMean(s []float64, q float64) float64 {
	cut := Quantile(s, q)
	var sum float64
	var n int
	for _, v := range s {
		if v <= cut {
			sum += v
			n++
		}
	}
	return sum / float64(max(n, 1))
}

// EpochBudget is the automatic number of epochs for n training rows: 200,
// or fewer on large data so that about 4 million records are presented
// (at least 20 epochs). Early stopping usually ends training sooner.
func EpochBudget(n int) int {
	return min(200, max(20, (4_000_000+n-1)/max(n, 1)))
}

// ErrTooFew is returned when the data cannot be split into training and
// held-out rows.
var ErrTooFew = errors.New("fit: need at least 2 rows")

// Fit trains a model on the n = len(x)/p rows of x (row-major).
// progress, when not nil, is called after every epoch. A cancelled ctx
// stops training with ctx's error.
func Fit(ctx context.Context, cfg Config, x []float64, p int, progress func(Progress)) (*Result, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p < 1 || len(x)%p != 0 {
		return nil, fmt.Errorf("fit: %d values do not make rows of width %d", len(x), p)
	}
	n := len(x) / p
	if n < 2 {
		return nil, ErrTooFew
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("fit: row %d feature %d is %v", i/p, i%p, v)
		}
	}
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	perm := rng.Perm(n)
	nHold := min(max(int(math.Round(cfg.Holdout*float64(n))), 1), n-1)
	res := &Result{HeldOutRows: perm[:nHold], TrainRows: perm[nHold:], AlertRate: cfg.AlertRate}
	slices.Sort(res.HeldOutRows)
	slices.Sort(res.TrainRows)

	norm := ae.NewNormalizer(p)
	for _, r := range res.TrainRows {
		if err := norm.Observe(x[r*p : (r+1)*p]); err != nil {
			return nil, err
		}
	}
	for j, v := range norm.Var() {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("fit: feature %d: values too large to standardize (variance overflows)", j)
		}
	}
	gather := func(rows []int) []float64 {
		out := make([]float64, len(rows)*p)
		for i, r := range rows {
			copy(out[i*p:(i+1)*p], x[r*p:(r+1)*p])
		}
		norm.Transform(out, out)
		return out
	}
	train, test := gather(res.TrainRows), gather(res.HeldOutRows)
	res.Train, res.Test = train, test
	res.Constant = norm.Constant()

	spec := cfg.Spec
	spec.Input = p
	if cfg.Auto {
		var spectrum []float64
		if spec.Code == 0 {
			mom := calib.NewMoments(p)
			for r := range len(train) / p {
				mom.Add(train[r*p : (r+1)*p])
			}
			spectrum = mom.Spectrum()
		}
		spec = AutoSpec(spec, p, spectrum)
	}
	m, err := ae.New(spec)
	if err != nil {
		return nil, err
	}
	// The fastest kernel set for this model (a no-op in the portable build).
	if _, _, err := ae.ChooseKernels(spec, cfg.Batch, ae.TaskTrain); err != nil {
		return nil, err
	}

	m.Init(rng)
	opt := ae.NewAdam(m.NumParams(), cfg.LR)
	tr := ae.NewTrainer(m, opt, rand.New(rand.NewPCG(cfg.Seed, 0x401)))
	nTrain := len(res.TrainRows)
	if cfg.Epochs == 0 {
		cfg.Epochs = EpochBudget(nTrain)
	}
	batch := min(cfg.Batch, nTrain)
	order := make([]int, nTrain)
	for i := range order {
		order[i] = i
	}
	buf := make([]float64, batch*p)
	scores := make([]float64, nHold)
	// The held-out error that early stopping follows is the mean of the
	// scores below their 0.9 quantile: a few rows far outside the training
	// data (anomalies, or a value of a feature constant on the training
	// rows) would otherwise swamp the improvement on the rest.
	heldOut := func() float64 {
		m.Score(scores, test)
		return trimmedMean(scores, 0.9)
	}

	best := math.Inf(1)
	bestParams := make([]float64, m.NumParams())
	var bestState ae.State
	var bestOpt []float64
	since, decays := 0, 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		rng.Shuffle(nTrain, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var sum float64
		var rows int
		for b := 0; b < nTrain; b += batch {
			e := min(b+batch, nTrain)
			if e-b < batch && b > 0 {
				break // drop the ragged tail: equal batches, equal weight
			}
			for i := b; i < e; i++ {
				r := order[i]
				copy(buf[(i-b)*p:(i-b+1)*p], train[r*p:(r+1)*p])
			}
			sum += tr.Step(buf[:(e-b)*p]) * float64(e-b)
			rows += e - b
		}
		dt := time.Since(t0)
		h := heldOut()
		if math.IsNaN(h) || math.IsInf(h, 0) {
			return nil, fmt.Errorf("fit: training diverged at epoch %d (held-out error %v); lower the learning rate", epoch, h)
		}
		metric := h
		if cfg.StopOnTrain {
			metric = sum / float64(rows)
		}
		improved := metric < best*(1-1e-5)
		if improved {
			best, res.BestEpoch, since = metric, epoch, 0
			copy(bestParams, m.Params())
			bestState, bestOpt = m.State(), opt.State()
		} else {
			since++
		}
		res.Epochs = epoch
		if progress != nil {
			progress(Progress{Epoch: epoch, Epochs: cfg.Epochs, TrainLoss: sum / float64(rows), HeldOut: h,
				Best: improved, LR: opt.LR, RowsPerSec: float64(rows) / dt.Seconds()})
		}
		if since >= cfg.Patience {
			if decays == 2 {
				break
			}
			// Plateau: return to the best point with a smaller step.
			decays++
			since = 0
			m.SetParams(bestParams)
			if err := m.SetState(bestState); err != nil {
				return nil, err
			}
			if err := opt.Restore(bestOpt); err != nil {
				return nil, err
			}
			opt.LR /= 5
		}
	}
	m.SetParams(bestParams)
	if err := m.SetState(bestState); err != nil {
		return nil, err
	}
	if err := opt.Restore(bestOpt); err != nil {
		return nil, err
	}
	res.Model, res.Optimizer, res.Normalizer = m, opt, norm
	res.HeldOut = heldOut()
	if res.Whitening, err = ae.FitWhitening(m, test, calib.WhiteningTrim, calib.WhiteningIters); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	rec := make([]float64, len(test))
	m.Reconstruct(rec, test)
	res.HeldOutScores = make([]float64, nHold)
	res.Whitening.Score(res.HeldOutScores, nil, test, rec)
	res.Threshold = calib.AlertThreshold(res.HeldOutScores, cfg.AlertRate)
	res.Elapsed = time.Since(start)
	return res, nil
}

// Quantile returns the q-quantile of s (ae.Quantile: type 7, s unchanged,
// NaN when empty).
func Quantile(s []float64, q float64) float64 { return ae.Quantile(s, q) }
