package ae

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/mat"
)

// Whitening scores the reconstruction residuals r = z - g(f(z)) of
// standardized records by their Mahalanobis distance r^T P r, where P is the
// inverse of the residuals' second-moment matrix S on held-out records,
// shrunk towards its mean diagonal m: (1 - a) S + a m I with a = p/n for n
// records (at least WhiteningRidge, at most 1), so that few records for
// many features give a near-diagonal weighting rather than one fitted to
// those records' noise. A plain squared error
// weighs every feature's residual alike, so a feature that reconstructs
// almost exactly for normal records (one the model captures, or one that
// lies in a minor direction of the data) hides a large deviation behind the
// ordinary residuals of the others; whitening measures each residual
// against what is usual for it, and for a linear model it is the classical
// minor-components score. A score is explained per feature by the plain
// squared residual r_l^2 (standardized units): the features the model
// reconstructs worst. The terms r_l (P r)_l of the score itself would sum
// to it, but they spread a one-feature deviation over the features whose
// residuals usually move with it (a spike on one feature was explained by
// three others in internal/scorer's test), so they make a poor
// explanation.
type Whitening struct {
	p    int
	prec []float64 // p x p, symmetric, row-major
}

// WhiteningRidge is the least shrinkage of the residual second-moment
// matrix towards its mean diagonal: it bounds the weight of any direction
// to 1/WhiteningRidge times the typical one.
const WhiteningRidge = 1e-2

// ErrNoResiduals is returned when a whitening is asked of no records.
var ErrNoResiduals = errors.New("ae: no held-out residuals to whiten")

// FitWhitening estimates the whitening of model m's residuals on the
// standardized records z (row-major). With trim > 0 the estimate is made
// robust to anomalies among the records: it is refitted iters times on the
// records whose whitened score is at most the (1 - trim) quantile under the
// previous estimate.
func FitWhitening(m *Model, z []float64, trim float64, iters int) (*Whitening, error) {
	p := m.spec.Input
	n := m.rows(z, "FitWhitening")
	if n == 0 {
		return nil, ErrNoResiduals
	}
	res := make([]float64, len(z))
	m.Reconstruct(res, z)
	for i := range res {
		res[i] = z[i] - res[i]
	}
	w, err := whiteningOf(res, p, nil)
	if err != nil || !(trim > 0) {
		return w, err
	}
	scores := make([]float64, n)
	keep := make([]bool, n)
	for range iters {
		w.residualScores(scores, nil, res)
		cut := Quantile(scores, 1-trim)
		for i, s := range scores {
			keep[i] = s <= cut
		}
		if w, err = whiteningOf(res, p, keep); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// whiteningOf inverts the second-moment matrix of the residual rows res
// (those with keep[i], all when keep is nil).
func whiteningOf(res []float64, p int, keep []bool) (*Whitening, error) {
	c := mat.NewSymDense(p, nil)
	var count float64
	for i := 0; i < len(res)/p; i++ {
		if keep != nil && !keep[i] {
			continue
		}
		count++
		c.SymRankOne(c, 1, mat.NewVecDense(p, res[i*p:(i+1)*p]))
	}
	if count == 0 {
		return nil, ErrNoResiduals
	}
	var tr float64
	for j := 0; j < p; j++ {
		tr += c.At(j, j) / count
	}
	a := min(max(float64(p)/count, WhiteningRidge), 1)
	ridge := a*tr/float64(p) + 1e-12
	for j := 0; j < p; j++ {
		for l := j; l < p; l++ {
			v := (1 - a) * c.At(j, l) / count
			if j == l {
				v += ridge
			}
			c.SetSym(j, l, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(c) {
		return nil, fmt.Errorf("ae: residual second moments are not positive definite")
	}
	var inv mat.SymDense
	if err := ch.InverseTo(&inv); err != nil {
		return nil, fmt.Errorf("ae: invert residual second moments: %w", err)
	}
	w := &Whitening{p: p, prec: make([]float64, p*p)}
	for j := 0; j < p; j++ {
		for l := 0; l < p; l++ {
			w.prec[j*p+l] = inv.At(j, l)
		}
	}
	return w, nil
}

// RestoreWhitening builds a whitening of width p from its precision matrix
// (p x p, row-major), as Precision returns it.
func RestoreWhitening(p int, prec []float64) (*Whitening, error) {
	if p < 1 || len(prec) != p*p {
		return nil, fmt.Errorf("ae: whitening of width %d has %d values, want %d", p, len(prec), p*p)
	}
	for i, v := range prec {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("ae: whitening value %d is %v", i, v)
		}
		if j, l := i/p, i%p; l > j && v != prec[l*p+j] {
			return nil, fmt.Errorf("ae: whitening is not symmetric at (%d,%d)", j, l)
		}
		if i/p == i%p && !(v > 0) {
			return nil, fmt.Errorf("ae: whitening diagonal %d is %v, want > 0", i/p, v)
		}
	}
	var ch mat.Cholesky
	if !ch.Factorize(mat.NewSymDense(p, slices.Clone(prec))) {
		return nil, fmt.Errorf("ae: whitening is not positive definite")
	}
	return &Whitening{p: p, prec: slices.Clone(prec)}, nil
}

// Width returns the record width.
func (w *Whitening) Width() int { return w.p }

// Precision returns a copy of the precision matrix (p x p, row-major).
func (w *Whitening) Precision() []float64 { return slices.Clone(w.prec) }

// Score writes into scores the whitened score of each standardized record
// of z given its reconstruction rec (both row-major, same shape) and, when
// explain is not nil, each feature's squared residual r_l^2 (row-major, the
// shape of z).
func (w *Whitening) Score(scores, explain, z, rec []float64) {
	if len(z) != len(rec) || len(z)%w.p != 0 || len(scores) != len(z)/w.p || (explain != nil && len(explain) != len(z)) {
		panic(fmt.Sprintf("ae: Whitening.Score: lengths %d scores, %d records, %d reconstructions for width %d", len(scores), len(z), len(rec), w.p))
	}
	if level.Load() >= levelAVX2 {
		w.scoreChunks(scores, explain, z, rec)
		return
	}
	r := make([]float64, w.p)
	pr := make([]float64, w.p)
	for i := range scores {
		for l := range r {
			r[l] = z[i*w.p+l] - rec[i*w.p+l]
		}
		scores[i] = w.score(r, pr, nil)
		if explain != nil {
			for l, d := range r {
				explain[i*w.p+l] = d * d
			}
		}
	}
}

// whitenScratch holds scoreChunks' two feature-major chunks, p x chunk
// each, between calls.
var whitenScratch sync.Pool

// scoreChunks is Score through the affine kernel, for the SIMD kernel sets:
// each chunk of residuals is made feature-major (p x n), multiplied by the
// precision matrix in one call, and each record's score summed from the
// products feature by feature, in Terms' order. The products are fused
// multiply-adds, so scores agree with Terms to rounding, not bit for bit.
// The portable affine is slower than score's row loop, so the portable set
// keeps that.
func (w *Whitening) scoreChunks(scores, explain, z, rec []float64) {
	p := w.p
	need := 2 * p * min(len(scores), chunk)
	bp, _ := whitenScratch.Get().(*[]float64)
	if bp == nil || cap(*bp) < need {
		b := make([]float64, need)
		bp = &b
	}
	defer whitenScratch.Put(bp)
	for first := 0; first < len(scores); first += chunk {
		n := min(chunk, len(scores)-first)
		rt, prt := (*bp)[:p*n], (*bp)[p*n:2*p*n]
		zs, rs := z[first*p:(first+n)*p], rec[first*p:(first+n)*p]
		for r := range n {
			for l := range p {
				d := zs[r*p+l] - rs[r*p+l]
				rt[l*n+r] = d
				if explain != nil {
					explain[(first+r)*p+l] = d * d
				}
			}
		}
		affine(prt, w.prec, rt, nil, p, p, n)
		dst := scores[first : first+n]
		clear(dst)
		for l := range p {
			a, b := rt[l*n:(l+1)*n], prt[l*n:(l+1)*n]
			b = b[:len(a)]
			for r, v := range a {
				dst[r] += v * b[r]
			}
		}
	}
}

func (w *Whitening) residualScores(scores, contrib, res []float64) {
	pr := make([]float64, w.p)
	for i := range scores {
		var c []float64
		if contrib != nil {
			c = contrib[i*w.p : (i+1)*w.p]
		}
		scores[i] = w.score(res[i*w.p:(i+1)*w.p], pr, c)
	}
}

// Terms writes into terms each feature's term r_l (P r)_l of the whitened
// score of one standardized residual r, and returns the score r^T P r,
// their sum: the decomposition that explains a score feature by feature.
func (w *Whitening) Terms(terms, r []float64) float64 {
	if len(r) != w.p || len(terms) != w.p {
		panic(fmt.Sprintf("ae: Whitening.Terms: %d terms, residual of %d for width %d", len(terms), len(r), w.p))
	}
	return w.score(r, make([]float64, w.p), terms)
}

// score returns r^T P r, with pr as scratch and the contributions in c when
// not nil. Four rows of P at a time share each load of r, so four sums are
// in flight; each row's sum, and the total, add in the same order as one
// row at a time would.
func (w *Whitening) score(r, pr, c []float64) float64 {
	p := w.p
	r, pr = r[:p], pr[:p]
	j := 0
	for ; j+4 <= p; j += 4 {
		r0 := w.prec[j*p : (j+1)*p]
		r1 := w.prec[(j+1)*p : (j+2)*p][:len(r0)]
		r2 := w.prec[(j+2)*p : (j+3)*p][:len(r0)]
		r3 := w.prec[(j+3)*p : (j+4)*p][:len(r0)]
		var v0, v1, v2, v3 float64
		for l, x := range r[:len(r0)] {
			v0 += r0[l] * x
			v1 += r1[l] * x
			v2 += r2[l] * x
			v3 += r3[l] * x
		}
		pr[j], pr[j+1], pr[j+2], pr[j+3] = v0, v1, v2, v3
	}
	for ; j < p; j++ {
		row := w.prec[j*p : (j+1)*p]
		var v float64
		for l, x := range r {
			v += row[l] * x
		}
		pr[j] = v
	}
	var s float64
	for j, v := range pr {
		s += r[j] * v
	}
	for j := range c {
		c[j] = r[j] * pr[j]
	}
	return s
}

// Quantile returns the q-quantile of s by linear interpolation between
// order statistics (the "type 7" definition of R and numpy); s is not
// changed. It returns NaN for an empty s.
func Quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	v := slices.Clone(s)
	slices.Sort(v)
	return QuantileSorted(v, q)
}

// QuantileSorted is Quantile of an ascending, non-empty v.
func QuantileSorted(v []float64, q float64) float64 {
	h := q * float64(len(v)-1)
	lo := int(math.Floor(h))
	if lo >= len(v)-1 {
		return v[len(v)-1]
	}
	return v[lo] + (h-float64(lo))*(v[lo+1]-v[lo])
}

// RowHash is a 64-bit FNV-1a hash of a record's bits, finished with a
// mixer (FNV's high bits depend weakly on the last bytes): the identity of
// a record for choosing held-out records and keeping them once.
func RowHash(rec []float64) uint64 {
	h := uint64(14695981039346656037)
	for _, v := range rec {
		b := math.Float64bits(v)
		for range 8 {
			h ^= b & 0xff
			h *= 1099511628211
			b >>= 8
		}
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}
