package ae

import (
	"errors"
	"fmt"
	"math"
)

// ErrNonFinite is returned when a record holds NaN or an infinity.
var ErrNonFinite = errors.New("ae: non-finite value")

// Normalizer standardizes features to zero mean and unit variance. It
// accumulates per-feature means and sums of squared deviations with
// Welford's update, and merges with another normalizer's statistics by Chan's
// formula, so shards observed by separate workers combine into the
// statistics of their union.
type Normalizer struct {
	count int64
	mean  []float64
	m2    []float64 // sum of squared deviations from the mean
}

// MinStd is the relative spread below which a feature counts as constant:
// a feature whose standard deviation is at most MinStd * (1 + |mean|) is
// centered and not scaled (scale 1, as scikit-learn's StandardScaler does),
// so a value never seen in the observed records is not blown up by a
// near-zero divisor.
const MinStd = 1e-8

// NewNormalizer returns an empty normalizer for records of width p.
func NewNormalizer(p int) *Normalizer {
	return &Normalizer{mean: make([]float64, p), m2: make([]float64, p)}
}

// RestoreNormalizer builds a normalizer from saved statistics: the record
// count, per-feature means and per-feature sums of squared deviations.
func RestoreNormalizer(count int64, mean, m2 []float64) (*Normalizer, error) {
	if len(mean) != len(m2) {
		return nil, fmt.Errorf("ae: normalizer has %d means and %d deviation sums", len(mean), len(m2))
	}
	if count < 0 {
		return nil, fmt.Errorf("ae: normalizer count %d is negative", count)
	}
	for i := range mean {
		if math.IsNaN(mean[i]) || math.IsInf(mean[i], 0) || math.IsNaN(m2[i]) || math.IsInf(m2[i], 0) || m2[i] < 0 {
			return nil, fmt.Errorf("ae: normalizer feature %d: mean %v, deviation sum %v", i, mean[i], m2[i])
		}
	}
	return &Normalizer{count: count, mean: append([]float64(nil), mean...), m2: append([]float64(nil), m2...)}, nil
}

// Width returns the record width.
func (z *Normalizer) Width() int { return len(z.mean) }

// Count returns the number of records observed.
func (z *Normalizer) Count() int64 { return z.count }

// Observe adds one record. A record holding NaN or an infinity is refused
// with ErrNonFinite and leaves the statistics unchanged. It panics if the
// record's width is wrong.
func (z *Normalizer) Observe(x []float64) error {
	if len(x) != len(z.mean) {
		panic(fmt.Sprintf("ae: Normalizer.Observe: record width %d, want %d", len(x), len(z.mean)))
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w at feature %d", ErrNonFinite, i)
		}
	}
	z.count++
	n := float64(z.count)
	for i, v := range x {
		d := v - z.mean[i]
		z.mean[i] += d / n
		z.m2[i] += d * (v - z.mean[i])
	}
	return nil
}

// Merge adds the statistics of o, as if its records had been observed by z.
func (z *Normalizer) Merge(o *Normalizer) {
	if len(o.mean) != len(z.mean) {
		panic(fmt.Sprintf("ae: Normalizer.Merge: widths %d and %d", len(z.mean), len(o.mean)))
	}
	if o.count == 0 {
		return
	}
	na, nb := float64(z.count), float64(o.count)
	n := na + nb
	for i := range z.mean {
		d := o.mean[i] - z.mean[i]
		z.mean[i] += d * nb / n
		z.m2[i] += o.m2[i] + d*d*na*nb/n
	}
	z.count += o.count
}

// Mean returns a copy of the per-feature means.
func (z *Normalizer) Mean() []float64 { return append([]float64(nil), z.mean...) }

// M2 returns a copy of the per-feature sums of squared deviations.
func (z *Normalizer) M2() []float64 { return append([]float64(nil), z.m2...) }

// Var returns the per-feature population variances (zero before any record).
func (z *Normalizer) Var() []float64 {
	v := make([]float64, len(z.m2))
	if z.count > 0 {
		for i, s := range z.m2 {
			v[i] = s / float64(z.count)
		}
	}
	return v
}

func (z *Normalizer) std(i int) float64 {
	if z.count == 0 {
		return 1
	}
	s := math.Sqrt(z.m2[i] / float64(z.count))
	if s <= MinStd*(1+math.Abs(z.mean[i])) {
		return 1
	}
	return s
}

// Constant returns the indices of the features that are constant on the
// observed records (see MinStd): they are centered, not scaled.
func (z *Normalizer) Constant() []int {
	var out []int
	if z.count == 0 {
		return nil
	}
	for i := range z.mean {
		s := math.Sqrt(z.m2[i] / float64(z.count))
		if s <= MinStd*(1+math.Abs(z.mean[i])) {
			out = append(out, i)
		}
	}
	return out
}

// Transform writes the standardized records of x, (x - mean) / std, into dst.
// x holds whole records row-major; dst and x may be the same slice.
func (z *Normalizer) Transform(dst, x []float64) {
	p := len(z.mean)
	if len(x)%p != 0 || len(dst) != len(x) {
		panic(fmt.Sprintf("ae: Normalizer.Transform: lengths %d and %d for width %d", len(dst), len(x), p))
	}
	sd := z.stds()
	for r := 0; r < len(x); r += p {
		d, xs := dst[r:r+p], x[r:r+p]
		for f, v := range xs {
			d[f] = (v - z.mean[f]) / sd[f]
		}
	}
}

// stds returns each feature's std, as std gives it: computed once per
// call of Transform or Inverse rather than once per value.
func (z *Normalizer) stds() []float64 {
	sd := make([]float64, len(z.mean))
	for f := range sd {
		sd[f] = z.std(f)
	}
	return sd
}

// Inverse maps standardized records back to the original scale.
func (z *Normalizer) Inverse(dst, x []float64) {
	p := len(z.mean)
	if len(x)%p != 0 || len(dst) != len(x) {
		panic(fmt.Sprintf("ae: Normalizer.Inverse: lengths %d and %d for width %d", len(dst), len(x), p))
	}
	sd := z.stds()
	for r := 0; r < len(x); r += p {
		d, xs := dst[r:r+p], x[r:r+p]
		for f, v := range xs {
			d[f] = v*sd[f] + z.mean[f]
		}
	}
}
