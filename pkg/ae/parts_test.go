package ae

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    Spec
		wantErr string // "" when the spec is valid
		is      error
	}{
		{"undercomplete plain", Spec{Input: 10, Code: 3}, "", nil},
		{"overcomplete plain", Spec{Input: 10, Code: 10}, "would learn the identity", ErrOvercomplete},
		{"overcomplete denoising", Spec{Input: 10, Code: 12, Variant: Denoising}, "", nil},
		{"overcomplete sparse L1", Spec{Input: 10, Code: 12, Variant: SparseL1}, "", nil},
		{"overcomplete sparse KL", Spec{Input: 10, Code: 12, CodeActivation: Sigmoid, Variant: SparseKL}, "", nil},
		{"overcomplete contractive", Spec{Input: 10, Code: 12, Variant: Contractive}, "", nil},
		{"overcomplete variational", Spec{Input: 10, Code: 12, Variant: Variational}, "", nil},
		{"no input", Spec{Code: 3}, "input width 0", nil},
		{"no code", Spec{Input: 3}, "code width 0", nil},
		{"zero hidden", Spec{Input: 10, Hidden: []int{0}, Code: 3}, "hidden layer 0 width 0", nil},
		{"cross-entropy without sigmoid", Spec{Input: 10, Code: 3, Loss: CrossEntropy}, "needs a sigmoid output", nil},
		{"sparse KL with relu code", Spec{Input: 10, Code: 3, CodeActivation: ReLU, Variant: SparseKL}, "set the code activation to sigmoid", nil},
		{"sparse KL rho 1", Spec{Input: 10, Code: 3, CodeActivation: Sigmoid, Variant: SparseKL, SparseRho: 1}, "rho 1", nil},
		{"masking probability 1", Spec{Input: 10, Code: 3, Variant: Denoising, Noise: MaskingNoise, MaskProb: 1}, "mask probability", nil},
		{"negative sigma", Spec{Input: 10, Code: 3, Variant: Denoising, NoiseSigma: -1}, "sigma", nil},
		{"NaN L1", Spec{Input: 10, Code: 3, Variant: SparseL1, L1: math.NaN()}, "L1 weight", nil},
		{"negative warm-up", Spec{Input: 10, Code: 3, Variant: Variational, Warmup: -1}, "warm-up", nil},
		{"unknown variant", Spec{Input: 10, Code: 3, Variant: 99}, "unknown variant", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.spec)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("New succeeded, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("New: %v, want error containing %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("New: %v is not %v", err, tc.is)
			}
		})
	}
}

func TestParseNames(t *testing.T) {
	for v := Plain; v <= Variational; v++ {
		if got, err := ParseVariant(v.String()); err != nil || got != v {
			t.Errorf("ParseVariant(%q) = %v, %v", v.String(), got, err)
		}
	}
	for a := Linear; a <= Tanh; a++ {
		if got, err := ParseActivation(a.String()); err != nil || got != a {
			t.Errorf("ParseActivation(%q) = %v, %v", a.String(), got, err)
		}
	}
	for l := SquaredError; l <= CrossEntropy; l++ {
		if got, err := ParseLoss(l.String()); err != nil || got != l {
			t.Errorf("ParseLoss(%q) = %v, %v", l.String(), got, err)
		}
	}
	if _, err := ParseVariant("fancy"); err == nil {
		t.Error("ParseVariant accepted an unknown name")
	}
}

func TestParameterLayout(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want int
	}{
		{"one layer untied", Spec{Input: 10, Code: 3}, 10*3 + 3 + 3*10 + 10},
		{"one layer tied", Spec{Input: 10, Code: 3, Tied: true}, 10*3 + 3 + 10},
		{"30-16-4-16-30", Spec{Input: 30, Hidden: []int{16}, Code: 4}, (30*16 + 16) + (16*4 + 4) + (4*16 + 16) + (16*30 + 30)},
		{"variational heads", Spec{Input: 10, Hidden: []int{8}, Code: 2, Variant: Variational}, (10*8 + 8) + 2*(8*2+2) + (2*8 + 8) + (8*10 + 10)},
		{"variational tied, no hidden", Spec{Input: 10, Code: 2, Variant: Variational, Tied: true}, 2*(10*2+2) + 10},
	} {
		m, err := New(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		if m.NumParams() != tc.want {
			t.Errorf("%s: %d parameters, want %d", tc.name, m.NumParams(), tc.want)
		}
		if n := tc.spec.Normalize().NumParams(); n != tc.want {
			t.Errorf("%s: Spec.NumParams %d, want %d", tc.name, n, tc.want)
		}
	}
}

// TestGradientAveraging is the contract distributed training rests on: the
// sample-weighted average of the gradients of disjoint batches is the
// gradient of their union.
func TestGradientAveraging(t *testing.T) {
	m, err := New(Spec{Input: 6, Hidden: []int{5}, Code: 2, Activation: Tanh, Variant: SparseL1, L1: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(1, 1)))
	rng := rand.New(rand.NewPCG(2, 2))
	x := make([]float64, 30*6)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	whole := make([]float64, m.NumParams())
	lw := m.Gradient(whole, x, nil)
	avg := make([]float64, m.NumParams())
	part := make([]float64, m.NumParams())
	var la float64
	for _, b := range [][2]int{{0, 7}, {7, 19}, {19, 30}} {
		w := float64(b[1]-b[0]) / 30
		la += w * m.Gradient(part, x[b[0]*6:b[1]*6], nil)
		for i, g := range part {
			avg[i] += w * g
		}
	}
	if math.Abs(la-lw) > 1e-12*math.Abs(lw) {
		t.Errorf("weighted loss %v, union loss %v", la, lw)
	}
	for i := range whole {
		if math.Abs(avg[i]-whole[i]) > 1e-12*(1+math.Abs(whole[i])) {
			t.Fatalf("parameter %d: averaged gradient %v, union gradient %v", i, avg[i], whole[i])
		}
	}
}

func TestScoreFeaturesExplainScore(t *testing.T) {
	m, err := New(Spec{Input: 5, Hidden: []int{4}, Code: 2, Activation: ReLU})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(1, 1)))
	rng := rand.New(rand.NewPCG(2, 2))
	const n = 600 // more than one scoring chunk
	x := make([]float64, n*5)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	scores := make([]float64, n)
	m.Score(scores, x)
	s2 := make([]float64, n)
	feat := make([]float64, n*5)
	m.ScoreFeatures(s2, feat, x)
	rec := make([]float64, n*5)
	m.Reconstruct(rec, x)
	for r := 0; r < n; r++ {
		var sum float64
		for l := 0; l < 5; l++ {
			d := x[r*5+l] - rec[r*5+l]
			if math.Abs(feat[r*5+l]-d*d) > 1e-12 {
				t.Fatalf("record %d feature %d: contribution %v, (x - x_hat)^2 = %v", r, l, feat[r*5+l], d*d)
			}
			sum += feat[r*5+l]
		}
		if math.Abs(sum-scores[r]) > 1e-12*(1+sum) || math.Abs(s2[r]-scores[r]) > 1e-12*(1+sum) {
			t.Fatalf("record %d: score %v, ScoreFeatures score %v, sum of contributions %v", r, scores[r], s2[r], sum)
		}
	}
	// One record at a time gives the same scores as the batch.
	one := make([]float64, 1)
	for _, r := range []int{0, 257, 599} {
		m.Score(one, x[r*5:(r+1)*5])
		if math.Abs(one[0]-scores[r]) > 1e-12*(1+scores[r]) {
			t.Errorf("record %d: alone %v, in a batch %v", r, one[0], scores[r])
		}
	}
}

func TestNonFiniteInputGivesNonFiniteScore(t *testing.T) {
	m, _ := New(Spec{Input: 3, Code: 1, Activation: ReLU, CodeActivation: ReLU})
	m.Init(rand.New(rand.NewPCG(1, 1)))
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		x := make([]float64, 3*20)
		x[3*9+1] = bad
		s := make([]float64, 20)
		m.Score(s, x)
		if !math.IsNaN(s[9]) && !math.IsInf(s[9], 0) {
			t.Errorf("record holding %v scored %v, want a non-finite score", bad, s[9])
		}
	}
}

func TestOptimizersStepAndRestore(t *testing.T) {
	// Minimize f(w) = sum (w_i - i)^2 from zero; a restored optimizer
	// continues exactly where the saved one would have.
	target := []float64{0, 1, 2, 3}
	grad := func(w, g []float64) {
		for i := range w {
			g[i] = 2 * (w[i] - target[i])
		}
	}
	for _, tc := range []struct {
		name string
		mk   func() Optimizer
	}{
		{"sgd", func() Optimizer { return NewSGD(4, 0.05, 0.9) }},
		{"adam", func() Optimizer { return NewAdam(4, 0.1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.mk()
			w := make([]float64, 4)
			g := make([]float64, 4)
			for i := 0; i < 50; i++ {
				grad(w, g)
				o.Step(w, g)
			}
			saved, wSaved := o.State(), append([]float64(nil), w...)
			for i := 0; i < 500; i++ {
				grad(w, g)
				o.Step(w, g)
			}
			for i, v := range w {
				if math.Abs(v-target[i]) > 1e-3 {
					t.Fatalf("did not converge: w = %v", w)
				}
			}
			o2 := tc.mk()
			if err := o2.Restore(saved); err != nil {
				t.Fatal(err)
			}
			w2 := wSaved
			for i := 0; i < 500; i++ {
				grad(w2, g)
				o2.Step(w2, g)
			}
			for i := range w {
				if w[i] != w2[i] {
					t.Fatalf("restored optimizer diverged: %v vs %v", w2, w)
				}
			}
			bad := append(saved[:len(saved):len(saved)], 1)
			if err := o2.Restore(bad); !errors.Is(err, ErrBadState) {
				t.Errorf("Restore of a state one too long: %v, want ErrBadState", err)
			}
			nan := append([]float64(nil), saved...)
			nan[len(nan)-1] = math.NaN()
			if err := o2.Restore(nan); !errors.Is(err, ErrBadState) {
				t.Errorf("Restore of a state holding NaN: %v, want ErrBadState", err)
			}
		})
	}
}

func TestNormalizerMergeEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const p = 4
	whole := NewNormalizer(p)
	shards := []*Normalizer{NewNormalizer(p), NewNormalizer(p), NewNormalizer(p)}
	rec := make([]float64, p)
	for i := 0; i < 3000; i++ {
		for j := range rec {
			rec[j] = 1e6 + float64(j)*rng.NormFloat64() // large offset: a naive sum-of-squares loses this
		}
		if err := whole.Observe(rec); err != nil {
			t.Fatal(err)
		}
		if err := shards[(i*7)%3].Observe(rec); err != nil {
			t.Fatal(err)
		}
	}
	merged := NewNormalizer(p)
	for _, s := range shards {
		merged.Merge(s)
	}
	if merged.Count() != whole.Count() {
		t.Fatalf("count %d, want %d", merged.Count(), whole.Count())
	}
	mw, mm := whole.Mean(), merged.Mean()
	vw, vm := whole.Var(), merged.Var()
	for j := 0; j < p; j++ {
		if math.Abs(mw[j]-mm[j]) > 1e-9 || math.Abs(vw[j]-vm[j]) > 1e-9*(1+vw[j]) {
			t.Errorf("feature %d: merged mean %v var %v, whole mean %v var %v", j, mm[j], vm[j], mw[j], vw[j])
		}
		if want := float64(j * j); math.Abs(vw[j]-want) > 0.1*(1+want) {
			t.Errorf("feature %d: variance %v, want about %v", j, vw[j], want)
		}
	}
	// Transform standardizes; a constant feature (j = 0) is centered, not blown up.
	x := []float64{1e6, 1e6 + 2, 1e6, 1e6 - 3}
	y := make([]float64, p)
	whole.Transform(y, x)
	if math.Abs(y[0]) > 1e-3 || math.Abs(y[1]-2) > 0.1 {
		t.Errorf("Transform(%v) = %v", x, y)
	}
	back := make([]float64, p)
	whole.Inverse(back, y)
	for j := range x {
		if math.Abs(back[j]-x[j]) > 1e-6 {
			t.Errorf("Inverse(Transform(x)) = %v, want %v", back, x)
		}
	}
	if err := whole.Observe([]float64{1, math.NaN(), 2, 3}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("Observe(NaN) = %v, want ErrNonFinite", err)
	}
	if whole.Count() != 3000 {
		t.Errorf("a refused record changed the count to %d", whole.Count())
	}
	r, err := RestoreNormalizer(whole.Count(), whole.Mean(), whole.M2())
	if err != nil {
		t.Fatal(err)
	}
	y2 := make([]float64, p)
	r.Transform(y2, x)
	for j := range y {
		if y[j] != y2[j] {
			t.Errorf("restored normalizer transforms to %v, original to %v", y2, y)
		}
	}
	if _, err := RestoreNormalizer(1, []float64{0}, []float64{-1}); err == nil {
		t.Error("RestoreNormalizer accepted a negative deviation sum")
	}
}

func TestCloneAndStateAreIndependent(t *testing.T) {
	m, _ := New(Spec{Input: 4, Code: 2, CodeActivation: Sigmoid, Variant: SparseKL})
	m.Init(rand.New(rand.NewPCG(1, 1)))
	x := make([]float64, 40)
	for i := range x {
		x[i] = float64(i%7) / 7
	}
	tr := NewTrainer(m, NewAdam(m.NumParams(), 0.01), nil)
	tr.Step(x)
	c := m.Clone()
	st := m.State()
	if st.Steps != 1 || len(st.RhoHat) != 2 {
		t.Fatalf("state after one step: %+v", st)
	}
	tr.Step(x)
	if c.Params()[0] == m.Params()[0] || c.State().Steps != 1 {
		t.Error("clone follows the original")
	}
	if err := c.SetState(State{Steps: 1, RhoHat: []float64{0.5}}); err == nil {
		t.Error("SetState accepted a running estimate of the wrong width")
	}
	if err := c.SetState(State{Steps: 1, RhoHat: []float64{0.5, 1.5}}); err == nil {
		t.Error("SetState accepted a running estimate outside (0,1)")
	}
}
