package synth

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat/distuv"
)

// LowRank returns n records of width p (row-major) of the form
// X = Z B + noise: Z (n x rank) and B (rank x p) standard normal, noise
// normal with standard deviation sd. The records lie near a rank-dimensional
// subspace, the shape an undercomplete autoencoder with code width rank
// captures.
func LowRank(rng *rand.Rand, n, p, rank int, sd float64) []float64 {
	b := Basis(rng, rank, p)
	x := make([]float64, n*p)
	Sample(rng, x, b, rank, sd)
	return x
}

// Basis draws a rank x p matrix B with standard normal entries: the
// directions records of a low-rank stream are made of.
func Basis(rng *rand.Rand, rank, p int) []float64 {
	if rank < 1 || p < 1 {
		panic(fmt.Sprintf("synth: basis %d x %d", rank, p))
	}
	b := make([]float64, rank*p)
	for i := range b {
		b[i] = rng.NormFloat64()
	}
	return b
}

// Sample fills dst (whole records of width len(b)/rank) with z B + noise for
// fresh z ~ N(0, I_rank) per record and noise of standard deviation sd.
func Sample(rng *rand.Rand, dst, b []float64, rank int, sd float64) {
	p := len(b) / rank
	if len(b) != rank*p || len(dst)%p != 0 {
		panic(fmt.Sprintf("synth: Sample: basis length %d, rank %d, destination length %d", len(b), rank, len(dst)))
	}
	z := make([]float64, rank)
	for r := 0; r < len(dst)/p; r++ {
		for i := range z {
			z[i] = rng.NormFloat64()
		}
		row := dst[r*p : r*p+p]
		for j := range row {
			var s float64
			for i, zi := range z {
				s += zi * b[i*p+j]
			}
			row[j] = s + sd*rng.NormFloat64()
		}
	}
}

// Center subtracts each column's mean from the records of x (width p) in place.
func Center(x []float64, p int) {
	n := len(x) / p
	if n == 0 {
		return
	}
	for j := 0; j < p; j++ {
		var s float64
		for r := 0; r < n; r++ {
			s += x[r*p+j]
		}
		s /= float64(n)
		for r := 0; r < n; r++ {
			x[r*p+j] -= s
		}
	}
}

// Demo returns the seed's demonstration data: 500 records of width 10 near
// a rank-3 subspace, noise standard deviation 0.4, centered.
func Demo(rng *rand.Rand) (x []float64, n, p int) {
	n, p = 500, 10
	x = LowRank(rng, n, p, 3, 0.4)
	Center(x, p)
	return x, n, p
}

// Anomaly kinds Inject knows.
const (
	Spike       = "spike"        // one feature pushed 6 to 8 of its standard deviations
	OffSubspace = "off-subspace" // every feature pushed off the subspace (sd 2.5)
	Scaled      = "scaled"       // the whole record multiplied by 4
)

// Kinds lists the anomaly kinds.
var Kinds = []string{Spike, OffSubspace, Scaled}

// Scales returns each feature's standard deviation in records Sample
// draws from basis b (rank rows) with noise sd: sqrt(sum_i b_ij^2 + sd^2).
func Scales(b []float64, rank int, sd float64) []float64 {
	p := len(b) / rank
	s := make([]float64, p)
	for j := range s {
		v := sd * sd
		for i := 0; i < rank; i++ {
			v += b[i*p+j] * b[i*p+j]
		}
		s[j] = math.Sqrt(v)
	}
	return s
}

// Inject turns record rec into an anomaly of the given kind, in place;
// scales are the features' standard deviations (Scales), which size a
// spike. It panics on an unknown kind.
func Inject(rng *rand.Rand, rec, scales []float64, kind string) {
	switch kind {
	case Spike:
		j := rng.IntN(len(rec))
		rec[j] += (6 + 2*rng.Float64()) * scales[j]
	case OffSubspace:
		for j := range rec {
			rec[j] += 2.5 * rng.NormFloat64()
		}
	case Scaled:
		for j := range rec {
			rec[j] *= 4
		}
	default:
		panic(fmt.Sprintf("synth: unknown anomaly kind %q", kind))
	}
}

// Region is the ellipsoid holding a given share q of the records Sample
// draws: x^T Sigma^-1 x <= the chi-square(p) quantile at q, where
// Sigma = B^T B + sd^2 I is their covariance. An anomaly inside it is one a
// normal draw would match at least once in 1/(1-q) records, so no detector
// could tell the two apart there: Outlying keeps injected anomalies out.
type Region struct {
	chol  mat.Cholesky
	limit float64
	v     *mat.VecDense // scratch of width p
}

// NewRegion returns the Region holding share q (in (0, 1)) of the records of
// basis b (rank rows) with noise sd. It panics on q outside (0, 1) or a
// covariance that is not positive definite (sd 0 with rank < p).
func NewRegion(b []float64, rank int, sd, q float64) *Region {
	p := len(b) / rank
	if len(b) != rank*p || !(q > 0 && q < 1) {
		panic(fmt.Sprintf("synth: NewRegion: basis length %d, rank %d, share %v", len(b), rank, q))
	}
	sigma := mat.NewSymDense(p, nil)
	for j := 0; j < p; j++ {
		for k := j; k < p; k++ {
			var s float64
			for i := 0; i < rank; i++ {
				s += b[i*p+j] * b[i*p+k]
			}
			if j == k {
				s += sd * sd
			}
			sigma.SetSym(j, k, s)
		}
	}
	r := &Region{limit: distuv.ChiSquared{K: float64(p)}.Quantile(q), v: mat.NewVecDense(p, nil)}
	if !r.chol.Factorize(sigma) {
		panic("synth: NewRegion: covariance not positive definite")
	}
	return r
}

// Distance2 returns x^T Sigma^-1 x, the squared Mahalanobis distance of
// record x from the records' mean.
func (r *Region) Distance2(x []float64) float64 {
	xv := mat.NewVecDense(len(x), x)
	if err := r.chol.SolveVecTo(r.v, xv); err != nil {
		panic("synth: Region: " + err.Error())
	}
	return mat.Dot(xv, r.v)
}

// Contains reports whether record x lies in the region.
func (r *Region) Contains(x []float64) bool { return r.Distance2(x) <= r.limit }

// Outlying fills rec with an anomaly of the given kind that lies outside
// region out: a fresh record of basis b (Sample) turned into the anomaly
// (Inject), drawn again while it falls inside, at most 1000 times (the last
// draw is kept). It returns the number of draws. A nil out keeps the first.
func Outlying(rng *rand.Rand, rec, b []float64, rank int, sd float64, scales []float64, kind string, out *Region) int {
	for n := 1; ; n++ {
		Sample(rng, rec, b, rank, sd)
		Inject(rng, rec, scales, kind)
		if out == nil || !out.Contains(rec) || n == 1000 {
			return n
		}
	}
}
