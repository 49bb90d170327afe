package ae

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/recon-ad/recon/pkg/synth"
)

// The tests in this file train each regularized variant on data of the
// seed's kind (p = 10 near a rank-3 subspace, noise sd 0.4, centered; 500
// training records as in the seed, 500 more held out) and check the
// behaviour its penalty promises, against a plain model of the same
// architecture trained the same way.

func behaviourData() (train, test []float64, p int) {
	const n, rank = 1000, 3
	p = 10
	x := synth.LowRank(rand.New(rand.NewPCG(7, 2026)), n, p, rank, 0.4)
	synth.Center(x, p)
	return x[:500*p], x[500*p:], p
}

// fit trains a model of spec on x by minibatch Adam and returns it.
func fit(t *testing.T, spec Spec, x []float64, epochs int, lr float64) *Model {
	t.Helper()
	m, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(11, 12)))
	tr := NewTrainer(m, NewAdam(m.NumParams(), lr), rand.New(rand.NewPCG(13, 14)))
	p := spec.Input
	n := len(x) / p
	const batch = 50
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	shuffle := rand.New(rand.NewPCG(15, 16))
	buf := make([]float64, batch*p)
	for e := 0; e < epochs; e++ {
		shuffle.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		for b := 0; b+batch <= n; b += batch {
			for r := 0; r < batch; r++ {
				copy(buf[r*p:(r+1)*p], x[perm[b+r]*p:(perm[b+r]+1)*p])
			}
			tr.Step(buf)
		}
	}
	return m
}

func mean(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

func TestDenoisingRemovesNoiseBetterThanPlain(t *testing.T) {
	train, test, p := behaviourData()
	base := Spec{Input: p, Hidden: []int{32}, Code: 8, Activation: ReLU, Output: Linear}
	plain := fit(t, base, train, 150, 3e-3)
	dn := base
	dn.Variant, dn.Noise, dn.NoiseSigma = Denoising, GaussianNoise, 0.5
	den := fit(t, dn, train, 150, 3e-3)

	noisy := make([]float64, len(test))
	rng := rand.New(rand.NewPCG(21, 22))
	for i, v := range test {
		noisy[i] = v + 0.5*rng.NormFloat64()
	}
	errToClean := func(m *Model) float64 {
		rec := make([]float64, len(noisy))
		m.Reconstruct(rec, noisy)
		var s float64
		for i, v := range rec {
			d := v - test[i]
			s += d * d
		}
		return s / float64(len(test)/p)
	}
	ep, ed := errToClean(plain), errToClean(den)
	var corrupt float64
	for i, v := range noisy {
		corrupt += (v - test[i]) * (v - test[i])
	}
	corrupt /= float64(len(test) / p)
	t.Logf("mean ||g(f(x~)) - x||^2 on held-out corrupted records: input %.3f, plain %.3f, denoising %.3f", corrupt, ep, ed)
	if !(ed < 0.8*ep) {
		t.Errorf("denoising model's error to the clean records %.3f is not below 0.8 x the plain model's %.3f", ed, ep)
	}
}

func TestSparseKLMeanActivationApproachesRho(t *testing.T) {
	train, test, p := behaviourData()
	base := Spec{Input: p, Hidden: []int{32}, Code: 8, Activation: ReLU, CodeActivation: Sigmoid, Output: Linear}
	plain := fit(t, base, train, 150, 3e-3)
	sp := base
	sp.Variant, sp.SparseRho, sp.SparseBeta = SparseKL, 0.05, 3
	sparse := fit(t, sp, train, 150, 3e-3)

	unitMeans := func(m *Model) []float64 {
		k := m.Spec().Code
		z := make([]float64, len(test)/p*k)
		m.Encode(z, test)
		means := make([]float64, k)
		for i, v := range z {
			means[i%k] += v
		}
		for j := range means {
			means[j] /= float64(len(test) / p)
		}
		return means
	}
	mp, ms := unitMeans(plain), unitMeans(sparse)
	t.Logf("mean code activation per unit, plain:  %.3f (mean %.3f)", mp, mean(mp))
	t.Logf("mean code activation per unit, sparse: %.3f (mean %.3f), rho = 0.05", ms, mean(ms))
	t.Logf("running rho_hat after training: %.3f", sparse.State().RhoHat)
	for j, v := range ms {
		if math.Abs(v-0.05) > 0.02 {
			t.Errorf("sparse unit %d mean activation %.3f, want within 0.02 of rho = 0.05", j, v)
		}
	}
	if math.Abs(mean(mp)-0.05) < 0.1 {
		t.Errorf("plain model's mean activation %.3f is already near rho: the test shows nothing", mean(mp))
	}
}

func TestSparseL1ShrinksCode(t *testing.T) {
	train, test, p := behaviourData()
	base := Spec{Input: p, Hidden: []int{32}, Code: 8, Activation: ReLU, CodeActivation: ReLU, Output: Linear}
	plain := fit(t, base, train, 150, 3e-3)
	sp := base
	sp.Variant, sp.L1 = SparseL1, 0.1
	sparse := fit(t, sp, train, 150, 3e-3)
	l1 := func(m *Model) (norm, zeros float64) {
		z := make([]float64, len(test)/p*8)
		m.Encode(z, test)
		for _, v := range z {
			norm += math.Abs(v)
			if v == 0 {
				zeros++
			}
		}
		return norm / float64(len(test)/p), zeros / float64(len(z))
	}
	np, zp := l1(plain)
	ns, zs := l1(sparse)
	t.Logf("mean ||z||_1: plain %.3f (%.0f%% zeros), sparse L1 %.3f (%.0f%% zeros); held-out error plain %.3f, sparse %.3f",
		np, 100*zp, ns, 100*zs, meanScore(plain, test), meanScore(sparse, test))
	if !(ns < 0.5*np) {
		t.Errorf("sparse model's mean ||z||_1 %.3f is not below half the plain model's %.3f", ns, np)
	}
	if !(zs > zp) {
		t.Errorf("sparse model has no more exact zeros (%.2f) than the plain one (%.2f)", zs, zp)
	}
}

func TestContractiveLowersJacobianNorm(t *testing.T) {
	train, test, p := behaviourData()
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"one sigmoid layer (closed form)", Spec{Input: p, Code: 3, CodeActivation: Sigmoid, Output: Linear}},
		{"tanh hidden layer (exact Jacobian)", Spec{Input: p, Hidden: []int{16}, Code: 3, Activation: Tanh, CodeActivation: Sigmoid, Output: Linear}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain := fit(t, tc.spec, train, 100, 3e-3)
			cs := tc.spec
			cs.Variant, cs.Contractive = Contractive, 30
			con := fit(t, cs, train, 100, 3e-3)
			jp, jc := plain.JacobianNorm(test), con.JacobianNorm(test)
			t.Logf("mean ||J_f||_F^2 on held-out records: plain %.4f, contractive %.4f; held-out error plain %.3f, contractive %.3f",
				jp, jc, meanScore(plain, test), meanScore(con, test))
			if !(jc < 0.7*jp) {
				t.Errorf("contractive Jacobian norm %.4f is not below 0.7 x the plain model's %.4f", jc, jp)
			}
		})
	}
}

func TestVariationalUsesIntrinsicDimensions(t *testing.T) {
	train, test, p := behaviourData()
	const k = 6 // twice the data's rank of 3
	spec := Spec{Input: p, Hidden: []int{32}, Code: k, Activation: Tanh, Output: Linear, Variant: Variational, Beta: 1, Warmup: 500}
	m := fit(t, spec, train, 300, 3e-3)

	kl := make([]float64, k)
	m.KL(kl, test)
	sorted := slices.Clone(kl)
	slices.Sort(sorted)
	t.Logf("held-out KL per code dimension: %.3f", kl)
	for i, v := range sorted[:k-3] {
		if v > 0.05 {
			t.Errorf("unused dimension %d: KL %.3f, want near zero (< 0.05)", i, v)
		}
	}
	for _, v := range sorted[k-3:] {
		if v < 0.5 {
			t.Errorf("a dimension the rank-3 data needs has KL %.3f, want > 0.5 (%v)", v, sorted)
		}
	}

	// Samples from the prior decode to points near the data's subspace.
	const ns = 2000
	rng := rand.New(rand.NewPCG(31, 32))
	z := make([]float64, ns*k)
	for i := range z {
		z[i] = rng.NormFloat64()
	}
	gen := make([]float64, ns*p)
	m.Decode(gen, z)
	pca, err := NewPCA(mat.NewDense(len(train)/p, p, train))
	if err != nil {
		t.Fatal(err)
	}
	offGen := pca.Error(3, mat.NewDense(ns, p, gen))
	offData := pca.Error(3, mat.NewDense(len(test)/p, p, test))
	onGen := pca.Error(0, mat.NewDense(ns, p, gen)) - offGen
	onData := pca.Error(0, mat.NewDense(len(test)/p, p, test)) - offData
	t.Logf("samples: squared distance to the rank-3 PCA subspace %.3f (held-out data %.3f); variance within it %.2f (data %.2f)",
		offGen, offData, onGen, onData)
	if !(offGen < 0.5*offData) {
		t.Errorf("decoded samples lie %.3f from the data subspace, not within half the data's own %.3f", offGen, offData)
	}
	if !(onGen > 0.5*onData && onGen < 1.5*onData) {
		t.Errorf("decoded samples' spread within the subspace %.2f is far from the data's %.2f", onGen, onData)
	}
}
