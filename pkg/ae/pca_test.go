package ae

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/recon-ad/recon/pkg/synth"
)

// meanScore returns the mean reconstruction error of m over x.
func meanScore(m *Model, x []float64) float64 {
	s := make([]float64, len(x)/m.Spec().Input)
	m.Score(s, x)
	var t float64
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

// trainLinear fits an untied linear autoencoder with code width k to x by
// full-batch Adam with a step-decayed learning rate.
func trainLinear(t *testing.T, x []float64, p, k int, seed uint64) *Model {
	t.Helper()
	m, err := New(Spec{Input: p, Code: k})
	if err != nil {
		panic(err) // the spec is fixed and valid; t.Fatal may not run off the test goroutine
	}
	m.Init(rand.New(rand.NewPCG(seed, 1)))
	opt := NewAdam(m.NumParams(), 0.02)
	tr := NewTrainer(m, opt, nil)
	for _, phase := range []struct {
		lr    float64
		steps int
	}{{0.02, 4000}, {0.005, 1500}, {0.001, 500}} {
		opt.LR = phase.lr
		for i := 0; i < phase.steps; i++ {
			tr.Step(x)
		}
	}
	return m
}

// TestLinearAutoencoderRecoversPCA is the seed's correctness anchor: on the
// demonstration data a linear autoencoder reaches, for every k, the PCA
// closed-form error (within 1%) and the principal subspace (within 1 degree).
//
// The top-k subspace is only as well determined as the gap lambda_k -
// lambda_(k+1): past k = 3 the eigenvalues are noise and some draws have two
// nearly equal ones (gap 3e-4 for seed (2026, 11)), where no first-order
// method settles the angle in a test's time. The draw used here is the first
// seed (s, 2026), s = 1, 2, ..., whose smallest gap is at least the 0.005 of
// the seed notes' published run; the test checks that it is.
func TestLinearAutoencoderRecoversPCA(t *testing.T) {
	x, n, p := synth.Demo(rand.New(rand.NewPCG(7, 2026)))
	X := mat.NewDense(n, p, x)
	pca, err := NewPCA(X)
	if err != nil {
		t.Fatal(err)
	}
	ev := pca.Eigenvalues()
	t.Logf("eigenvalues %.4f", ev)
	for k := 1; k < p; k++ {
		if gap := ev[k-1] - ev[k]; gap < 0.005 {
			t.Fatalf("eigen-gap after k=%d is %.4f < 0.005: the subspace criterion is ill-posed on this draw", k, gap)
		}
	}
	// Train the nine models concurrently (each owns its model), then report.
	models := make([]*Model, p)
	var wg sync.WaitGroup
	for k := 1; k < p; k++ {
		wg.Go(func() { models[k] = trainLinear(t, x, p, k, uint64(k)) })
	}
	wg.Wait()
	t.Logf("%2s %10s %10s %10s %8s %9s", "k", "closed", "pca-route", "linear-ae", "ratio", "angle(deg)")
	for k := 0; k <= p; k++ {
		closed := pca.TailError(k)
		route := pca.Error(k, X)
		if math.Abs(route-closed) > 1e-9 {
			t.Errorf("k=%d: PCA route %.12f, closed form %.12f differ by more than 1e-9", k, route, closed)
		}
		if k == 0 || k == p {
			t.Logf("%2d %10.4f %10.4f", k, closed, route)
			continue
		}
		m := models[k]
		got := meanScore(m, x)
		ratio := got / closed
		dw, _ := m.LinearDecoder()
		ang := PrincipalAngles(dw, pca.Subspace(k))
		maxDeg := ang[len(ang)-1] * 180 / math.Pi
		t.Logf("%2d %10.4f %10.4f %10.4f %8.5f %9.4f", k, closed, route, got, ratio, maxDeg)
		if got < closed*(1-1e-9) {
			t.Errorf("k=%d: error %.6f below the closed-form minimum %.6f", k, got, closed)
		}
		if ratio > 1.01 {
			t.Errorf("k=%d: error %.6f more than 1%% above the closed form %.6f", k, got, closed)
		}
		if maxDeg >= 1 {
			t.Errorf("k=%d: largest principal angle %.3f degrees, want < 1", k, maxDeg)
		}
	}
}

func TestPrincipalAngles(t *testing.T) {
	a := mat.NewDense(3, 2, []float64{1, 0, 0, 1, 0, 0})
	for _, tc := range []struct {
		name string
		b    *mat.Dense
		want []float64
	}{
		{"same span, other basis", mat.NewDense(3, 2, []float64{1, 1, 1, -1, 0, 0}), []float64{0, 0}},
		{"one orthogonal direction", mat.NewDense(3, 2, []float64{1, 0, 0, 0, 0, 1}), []float64{0, math.Pi / 2}},
		{"tilted by 30 degrees", mat.NewDense(3, 2, []float64{1, 0, 0, math.Cos(math.Pi / 6), 0, math.Sin(math.Pi / 6)}), []float64{0, math.Pi / 6}},
	} {
		got := PrincipalAngles(a, tc.b)
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-7 {
				t.Errorf("%s: angles %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
}
