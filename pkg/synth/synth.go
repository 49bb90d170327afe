package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
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
