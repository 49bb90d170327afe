package fit

import (
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/recon-ad/recon/pkg/ae"
)

// SweepRow is one code width's result.
type SweepRow struct {
	K        int     // code width
	Train    float64 // mean training-row score
	HeldOut  float64 // mean held-out score
	Epochs   int     // epochs run
	Linear   bool    // the model is a linear autoencoder: the fields below are set
	Closed   float64 // PCA closed form on the training rows: sum of discarded eigenvalues
	PCATest  float64 // PCA reconstruction error of the held-out rows
	AngleDeg float64 // largest principal angle between the decoder's and the top-k PCA subspace
}

// Sweep is the result of fitting one model per code width.
type Sweep struct {
	Rows []SweepRow // one per code width, increasing
	// Total is the held-out rows' mean squared distance from the training
	// mean: the error of a zero-width code.
	Total float64
	Elbow int // suggested code width
}

// IsLinear reports whether spec is a linear autoencoder: no hidden layers
// and linear code and output (whatever the hidden activation field says).
func IsLinear(spec ae.Spec) bool {
	return len(spec.Hidden) == 0 && spec.CodeActivation == ae.Linear && spec.Output == ae.Linear && spec.Variant == ae.Plain
}

// RunSweep fits cfg's model for each code width in ks on the same split and
// reports the errors, PCA references for a linear model, and the elbow.
func RunSweep(ctx context.Context, cfg Config, x []float64, p int, ks []int, progress func(k int, pr Progress)) (*Sweep, error) {
	if len(ks) == 0 {
		return nil, fmt.Errorf("sweep: no code widths")
	}
	sw := &Sweep{}
	var pca *ae.PCA
	for i, k := range ks {
		if k < 1 || (i > 0 && k <= ks[i-1]) {
			return nil, fmt.Errorf("sweep: code widths must be increasing and positive, got %v", ks)
		}
		c := cfg
		c.Spec.Code = k
		var pf func(Progress)
		if progress != nil {
			pf = func(pr Progress) { progress(k, pr) }
		}
		res, err := Fit(ctx, c, x, p, pf)
		if err != nil {
			return nil, fmt.Errorf("k=%d: %w", k, err)
		}
		row := SweepRow{K: k, HeldOut: res.HeldOut, Epochs: res.Epochs, Train: meanScore(res.Model, res.Train)}
		nTest := len(res.Test) / p
		if i == 0 {
			var t float64
			for _, v := range res.Test {
				t += v * v // standardized with the training mean: centered on it
			}
			sw.Total = t / float64(nTest)
		}
		if IsLinear(res.Model.Spec()) {
			if pca == nil {
				if pca, err = ae.NewPCA(mat.NewDense(len(res.Train)/p, p, res.Train)); err != nil {
					return nil, err
				}
			}
			row.Linear = true
			row.Closed = pca.TailError(k)
			row.PCATest = pca.Error(k, mat.NewDense(nTest, p, res.Test))
			if w, ok := res.Model.LinearDecoder(); ok && k < p {
				ang := ae.PrincipalAngles(w, pca.Subspace(k))
				row.AngleDeg = ang[len(ang)-1] * 180 / math.Pi
			}
		}
		sw.Rows = append(sw.Rows, row)
	}
	sw.Elbow = Elbow(sw.Total, sw.Rows)
	return sw, nil
}

// Elbow returns the code width after which held-out error stops falling
// steeply: the k whose drop from the previous width is largest relative to
// the drop to the next one (the error of width 0 is total). With fewer than
// two rows it returns the first width.
func Elbow(total float64, rows []SweepRow) int {
	if len(rows) < 2 {
		if len(rows) == 1 {
			return rows[0].K
		}
		return 0
	}
	best, bestRatio := rows[0].K, math.Inf(-1)
	for i := 0; i+1 < len(rows); i++ {
		prev := total
		if i > 0 {
			prev = rows[i-1].HeldOut
		}
		drop := prev - rows[i].HeldOut
		next := math.Max(rows[i].HeldOut-rows[i+1].HeldOut, 1e-3*math.Abs(drop)+1e-12)
		if r := drop / next; r > bestRatio {
			best, bestRatio = rows[i].K, r
		}
	}
	return best
}

func meanScore(m *ae.Model, x []float64) float64 {
	n := len(x) / m.Spec().Input
	s := make([]float64, n)
	m.Score(s, x)
	var t float64
	for _, v := range s {
		t += v
	}
	return t / float64(n)
}

// LinearDemoConfig is the configuration sweep-k uses for a linear model:
// full-batch Adam run to convergence on the training rows, which reaches the
// PCA optimum closely on small data.
func LinearDemoConfig() Config {
	return Config{
		Spec:        ae.Spec{Activation: ae.Linear, CodeActivation: ae.Linear, Output: ae.Linear},
		Epochs:      6000,
		Batch:       1 << 30, // full batch
		LR:          0.02,
		Patience:    200,
		StopOnTrain: true,
	}
}
