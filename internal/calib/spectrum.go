// Package calib holds the pure cores that turn what trainers see into what
// scorers need: the second-moment sums behind the automatic code width, the
// held-out window behind the residual whitening and the alert threshold,
// the settle test that gates the first threshold, and the alert-rate rule.
// They are plain types driven by method calls, with time passed in; the
// coordinator and the offline fit drive them.
package calib

import (
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// Moments are exact, mergeable sums of a stream's records: their count,
// per-feature sums and the sums of their outer products. From them follow
// the covariance and its spectrum. Trainers send their warm-up records'
// moments with their normalizer statistics; the coordinator adds them.
type Moments struct {
	Count int64     // records added
	Sum   []float64 // p
	Outer []float64 // p x p, row-major: sum of x x^T
}

// MaxMomentsWidth is the widest record whose moments are gathered (p^2
// sums); wider records get the fallback code width.
const MaxMomentsWidth = 256

// NewMoments returns empty moments for records of width p.
func NewMoments(p int) *Moments {
	return &Moments{Sum: make([]float64, p), Outer: make([]float64, p*p)}
}

// Width returns the record width.
func (m *Moments) Width() int { return len(m.Sum) }

// Add adds one record.
func (m *Moments) Add(x []float64) {
	p := len(m.Sum)
	if len(x) != p {
		panic(fmt.Sprintf("calib: Moments.Add: record width %d, want %d", len(x), p))
	}
	m.Count++
	for j, v := range x {
		m.Sum[j] += v
		row := m.Outer[j*p : (j+1)*p]
		for l, w := range x {
			row[l] += v * w
		}
	}
}

// Merge adds o's sums to m's.
func (m *Moments) Merge(o *Moments) error {
	if len(o.Sum) != len(m.Sum) || len(o.Outer) != len(m.Outer) {
		return fmt.Errorf("calib: moments of width %d merged into width %d", len(o.Sum), len(m.Sum))
	}
	m.Count += o.Count
	for i, v := range o.Sum {
		m.Sum[i] += v
	}
	for i, v := range o.Outer {
		m.Outer[i] += v
	}
	return nil
}

// Validate reports whether the sums are usable: the right sizes and finite.
func (m *Moments) Validate(p int) error {
	if len(m.Sum) != p || len(m.Outer) != p*p {
		return fmt.Errorf("moments of width %d (%d outer sums), want %d", len(m.Sum), len(m.Outer), p)
	}
	if m.Count < 0 {
		return fmt.Errorf("moments count %d is negative", m.Count)
	}
	for _, v := range m.Sum {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("moments hold %v", v)
		}
	}
	for _, v := range m.Outer {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("moments hold %v", v)
		}
	}
	return nil
}

// Spectrum returns the eigenvalues, largest first, of the records'
// correlation matrix: the covariance of the standardized features, a
// constant feature counting as a zero column (it is centered, not scaled).
// It returns nil with fewer than two records.
func (m *Moments) Spectrum() []float64 {
	p := len(m.Sum)
	if m.Count < 2 {
		return nil
	}
	n := float64(m.Count)
	mean := make([]float64, p)
	sd := make([]float64, p)
	for j := range mean {
		mean[j] = m.Sum[j] / n
	}
	cov := func(j, l int) float64 { return m.Outer[j*p+l]/n - mean[j]*mean[l] }
	for j := range sd {
		if v := cov(j, j); v > 1e-16*(1+mean[j]*mean[j]) {
			sd[j] = math.Sqrt(v)
		}
	}
	c := mat.NewSymDense(p, nil)
	for j := 0; j < p; j++ {
		for l := j; l < p; l++ {
			if sd[j] > 0 && sd[l] > 0 {
				c.SetSym(j, l, cov(j, l)/(sd[j]*sd[l]))
			}
		}
	}
	var e mat.EigenSym
	if !e.Factorize(c, false) {
		return nil
	}
	v := e.Values(nil)
	slices.Reverse(v)
	for i := range v {
		v[i] = max(v[i], 0)
	}
	return v
}

// CodeWidth chooses a code width from a spectrum (eigenvalues, largest
// first): the elbow of the discarded-variance curve, the k at which the
// share of variance kept exceeds the share of dimensions used, k/p, by the
// most (the point of the curve farthest from its chord). On records near a
// rank-r subspace plus noise it is r. It returns at least 1 and at most
// p-1 (1 for p < 2), and 0 for an empty or all-zero spectrum.
func CodeWidth(spectrum []float64) int {
	p := len(spectrum)
	var total float64
	for _, v := range spectrum {
		total += v
	}
	if p == 0 || !(total > 0) {
		return 0
	}
	if p < 2 {
		return 1
	}
	best, bestGap, kept := 1, math.Inf(-1), 0.0
	for k := 1; k < p; k++ {
		kept += spectrum[k-1]
		if gap := kept/total - float64(k)/float64(p); gap > bestGap {
			best, bestGap = k, gap
		}
	}
	return best
}
