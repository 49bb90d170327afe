package ae

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// PCA is the principal component analysis of a data set: the reference a
// linear autoencoder is measured against. With Sigma = Xc^T Xc / n for the
// centered data Xc, the best rank-k linear reconstruction projects onto the
// top-k eigenvectors of Sigma, and its mean squared error per record is the
// sum of the discarded eigenvalues.
type PCA struct {
	n, p int
	mean []float64
	vals []float64  // eigenvalues of Sigma, descending, length p
	vecs *mat.Dense // p x r, columns the principal directions, r = min(n, p)
}

// NewPCA computes the principal components of the rows of x by the singular
// value decomposition of the centered data.
func NewPCA(x mat.Matrix) (*PCA, error) {
	n, p := x.Dims()
	if n < 1 || p < 1 {
		return nil, errors.New("ae: PCA of an empty data set")
	}
	c := mat.NewDense(n, p, nil)
	c.Copy(x)
	mean := make([]float64, p)
	for j := 0; j < p; j++ {
		col := mat.Col(nil, j, c)
		var s float64
		for _, v := range col {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%w in column %d", ErrNonFinite, j)
			}
			s += v
		}
		mean[j] = s / float64(n)
		for i := range col {
			c.Set(i, j, col[i]-mean[j])
		}
	}
	var svd mat.SVD
	if !svd.Factorize(c, mat.SVDThin) {
		return nil, errors.New("ae: PCA: singular value decomposition did not converge")
	}
	d := svd.Values(nil)
	vals := make([]float64, p)
	for i, s := range d {
		vals[i] = s * s / float64(n)
	}
	var v mat.Dense
	svd.VTo(&v)
	return &PCA{n: n, p: p, mean: mean, vals: vals, vecs: &v}, nil
}

// Mean returns a copy of the data's column means.
func (c *PCA) Mean() []float64 { return append([]float64(nil), c.mean...) }

// Eigenvalues returns the eigenvalues of the covariance Xc^T Xc / n in
// decreasing order (zeros past the data's rank).
func (c *PCA) Eigenvalues() []float64 { return append([]float64(nil), c.vals...) }

// TailError returns the closed-form minimum mean squared reconstruction
// error of a rank-k linear map: the sum of the eigenvalues past the k-th.
func (c *PCA) TailError(k int) float64 {
	if k < 0 || k > c.p {
		panic(fmt.Sprintf("ae: PCA.TailError: k = %d outside [0, %d]", k, c.p))
	}
	var s float64
	for _, v := range c.vals[k:] {
		s += v
	}
	return s
}

// Subspace returns the top-k principal directions as the columns of a
// p x k matrix with orthonormal columns.
func (c *PCA) Subspace(k int) *mat.Dense {
	_, r := c.vecs.Dims()
	if k < 1 || k > r {
		panic(fmt.Sprintf("ae: PCA.Subspace: k = %d outside [1, %d]", k, r))
	}
	s := mat.NewDense(c.p, k, nil)
	s.Copy(c.vecs.Slice(0, c.p, 0, k))
	return s
}

// Error returns the mean squared error per record of reconstructing the
// rows of x by projecting them, centered on the PCA's mean, onto the top-k
// principal subspace: the "PCA route" to the error the closed form predicts.
func (c *PCA) Error(k int, x mat.Matrix) float64 {
	n, p := x.Dims()
	if p != c.p {
		panic(fmt.Sprintf("ae: PCA.Error: data has %d columns, PCA has %d", p, c.p))
	}
	xc := mat.NewDense(n, p, nil)
	xc.Copy(x)
	for i := 0; i < n; i++ {
		for j := 0; j < p; j++ {
			xc.Set(i, j, xc.At(i, j)-c.mean[j])
		}
	}
	if k == 0 {
		return sqNorm(xc) / float64(n)
	}
	v := c.Subspace(k)
	var code, rec mat.Dense
	code.Mul(xc, v)
	rec.Mul(&code, v.T())
	rec.Sub(xc, &rec)
	return sqNorm(&rec) / float64(n)
}

func sqNorm(m *mat.Dense) float64 {
	f := mat.Norm(m, 2)
	return f * f
}

// PrincipalAngles returns the principal angles, in radians and increasing,
// between the column spaces of a and b (both p x k with full column rank):
// zero when the spaces coincide, pi/2 for orthogonal directions.
func PrincipalAngles(a, b mat.Matrix) []float64 {
	pa, ka := a.Dims()
	pb, kb := b.Dims()
	if pa != pb {
		panic(fmt.Sprintf("ae: PrincipalAngles: %d and %d rows", pa, pb))
	}
	qa, qb := orthonormal(a), orthonormal(b)
	var m mat.Dense
	m.Mul(qa.T(), qb)
	var svd mat.SVD
	if !svd.Factorize(&m, mat.SVDNone) {
		panic("ae: PrincipalAngles: singular value decomposition did not converge")
	}
	s := svd.Values(nil)
	ang := make([]float64, min(ka, kb))
	for i := range ang {
		ang[i] = math.Acos(min(1, s[i]))
	}
	return ang
}

// orthonormal returns an orthonormal basis of the column space of a (p x k,
// full column rank), from its thin QR factorization.
func orthonormal(a mat.Matrix) *mat.Dense {
	p, k := a.Dims()
	var qr mat.QR
	qr.Factorize(a)
	var q mat.Dense
	qr.QTo(&q)
	out := mat.NewDense(p, k, nil)
	out.Copy(q.Slice(0, p, 0, k))
	return out
}

// LinearDecoder returns, for a model with no hidden layers, its decoder
// weight as a p x k matrix (for tied weights, the encoder weight's
// transpose): for a linear autoencoder its column space is the learned
// subspace, to compare with PCA.Subspace by PrincipalAngles. ok is false for
// models with hidden layers.
func (m *Model) LinearDecoder() (w *mat.Dense, ok bool) {
	if len(m.dec) != 1 {
		return nil, false
	}
	l := m.dec[0]
	if l.tiedTo >= 0 {
		e := m.enc[l.tiedTo]
		enc := mat.NewDense(e.out, e.in, append([]float64(nil), m.params[e.wOff:e.wOff+e.in*e.out]...))
		w = mat.DenseCopyOf(enc.T())
		return w, true
	}
	return mat.NewDense(l.out, l.in, append([]float64(nil), m.params[l.wOff:l.wOff+l.in*l.out]...)), true
}
