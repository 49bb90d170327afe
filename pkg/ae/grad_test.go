package ae

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkGradient compares m's analytic gradient on x with central finite
// differences and returns the norm-wise relative error
// ||g - fd|| / max(||g||, ||fd||). Every evaluation draws its noise from a
// fresh source with the same seed, so the objective is a fixed function.
func checkGradient(t *testing.T, m *Model, x []float64) float64 {
	t.Helper()
	rng := func() *rand.Rand { return rand.New(rand.NewPCG(7, 8)) }
	grad := make([]float64, m.NumParams())
	scratch := make([]float64, m.NumParams())
	m.Gradient(grad, x, rng())
	const h = 1e-5
	params := m.Params()
	var diff, ng, nf float64
	for i := range params {
		old := params[i]
		params[i] = old + h
		fp := m.Gradient(scratch, x, rng())
		params[i] = old - h
		fm := m.Gradient(scratch, x, rng())
		params[i] = old
		fd := (fp - fm) / (2 * h)
		diff += (fd - grad[i]) * (fd - grad[i])
		ng += grad[i] * grad[i]
		nf += fd * fd
	}
	den := math.Sqrt(max(ng, nf))
	if den == 0 {
		t.Fatalf("gradient and finite differences are both zero")
	}
	return math.Sqrt(diff) / den
}

func TestGradientFiniteDifferences(t *testing.T) {
	type variantCase struct {
		name  string
		spec  Spec
		state *State // training state to set before checking (nil: fresh)
	}
	variants := []variantCase{
		{name: "plain", spec: Spec{Variant: Plain}},
		{name: "denoising-gaussian", spec: Spec{Variant: Denoising, Noise: GaussianNoise, NoiseSigma: 0.3}},
		{name: "denoising-masking", spec: Spec{Variant: Denoising, Noise: MaskingNoise, MaskProb: 0.3}},
		{name: "sparse-l1", spec: Spec{Variant: SparseL1, L1: 0.05}},
		{name: "sparse-kl", spec: Spec{Variant: SparseKL, SparseRho: 0.05, SparseBeta: 0.5}},
		{name: "sparse-kl-running", spec: Spec{Variant: SparseKL, SparseRho: 0.05, SparseBeta: 0.5, SparseMomentum: 0.7},
			state: &State{Steps: 4, RhoHat: []float64{0.2, 0.5, 0.1}}},
		{name: "contractive", spec: Spec{Variant: Contractive, Contractive: 0.3}},
		{name: "variational", spec: Spec{Variant: Variational, Beta: 1.5}},
		{name: "variational-warmup", spec: Spec{Variant: Variational, Beta: 2, Warmup: 10}, state: &State{Steps: 3}},
		// Trimmed: 2 of the 9 records leave the reconstruction term.
		{name: "plain-trim", spec: Spec{Variant: Plain, Trim: 0.25}},
		{name: "denoising-trim", spec: Spec{Variant: Denoising, Noise: GaussianNoise, NoiseSigma: 0.3, Trim: 0.25}},
		{name: "sparse-l1-trim", spec: Spec{Variant: SparseL1, L1: 0.05, Trim: 0.25}},
		{name: "variational-trim", spec: Spec{Variant: Variational, Beta: 1.5, Trim: 0.25}},
	}
	acts := []Activation{Linear, ReLU, Sigmoid, Tanh}
	hiddens := [][]int{nil, {6, 4}}
	const p, k, n = 8, 3, 9
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, n*p)
	for i := range x {
		x[i] = 0.05 + 0.9*rng.Float64() // inside (0,1) for cross-entropy
	}
	for _, v := range variants {
		for _, act := range acts {
			for _, loss := range []Loss{SquaredError, CrossEntropy} {
				for _, tied := range []bool{false, true} {
					for _, hidden := range hiddens {
						s := v.spec
						s.Input, s.Code, s.Hidden, s.Tied, s.Loss = p, k, hidden, tied, loss
						s.Activation, s.CodeActivation, s.Output = act, act, act
						if s.Variant == SparseKL {
							s.CodeActivation = Sigmoid
						}
						if loss == CrossEntropy {
							s.Output = Sigmoid
						}
						name := fmt.Sprintf("%s/%v/%v/tied=%v/hidden=%v", v.name, act, loss, tied, hidden)
						t.Run(name, func(t *testing.T) {
							m, err := New(s)
							if err != nil {
								t.Fatal(err)
							}
							m.Init(rand.New(rand.NewPCG(3, 4)))
							// Move off the kinks zero biases put dead ReLU units on.
							prng := rand.New(rand.NewPCG(9, 10))
							for i := range m.Params() {
								m.Params()[i] += 0.1 * prng.NormFloat64()
							}
							if v.state != nil {
								if err := m.SetState(*v.state); err != nil {
									t.Fatal(err)
								}
							}
							if rel := checkGradient(t, m, x); rel > 1e-6 {
								t.Errorf("relative gradient error %.3g > 1e-6", rel)
							}
						})
					}
				}
			}
		}
	}
}

// TestContractiveClosedFormMatchesJacobian checks the one-layer sigmoid
// closed form against the general Jacobian propagation, value and gradient.
func TestContractiveClosedFormMatchesJacobian(t *testing.T) {
	const p, k, n = 7, 3, 11
	m, err := New(Spec{Input: p, Code: k, CodeActivation: Sigmoid, Variant: Contractive, Contractive: 0.7})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(5, 6)))
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, n*p)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	ws := m.prepare(n)
	m.load(ws, x, n)
	m.forward(ws, n, false, nil)
	g1 := make([]float64, m.NumParams())
	g2 := make([]float64, m.NumParams())
	v1 := m.contractive(ws, g1, n, false)
	inj1 := append([]float64(nil), ws.inject[0][:k*n]...)
	v2 := m.contractive(ws, g2, n, true)
	if math.Abs(v1-v2) > 1e-12*math.Abs(v2) {
		t.Errorf("penalty: closed form %v, Jacobian %v", v1, v2)
	}
	for i := range g1 {
		if math.Abs(g1[i]-g2[i]) > 1e-12 {
			t.Errorf("direct weight gradient %d: closed form %v, Jacobian %v", i, g1[i], g2[i])
		}
	}
	for i, v := range ws.inject[0][:k*n] {
		if math.Abs(v-inj1[i]) > 1e-12 {
			t.Errorf("pre-activation gradient %d: closed form %v, Jacobian %v", i, inj1[i], v)
		}
	}
	if j := m.JacobianNorm(x); math.Abs(0.7*j-v2) > 1e-12 {
		t.Errorf("JacobianNorm %v, penalty/lambda %v", j, v2/0.7)
	}
}

// TestTrimLeavesOutTheWorstRecords checks that a trimmed gradient is the
// untrimmed gradient of the batch without its floor(Trim * n) records of
// largest reconstruction loss, and its objective their mean loss.
func TestTrimLeavesOutTheWorstRecords(t *testing.T) {
	const p, k, n = 6, 2, 10
	for _, loss := range []Loss{SquaredError, CrossEntropy} {
		for _, trim := range []float64{0.1, 0.25, 0.5} {
			t.Run(fmt.Sprintf("%v/trim=%v", loss, trim), func(t *testing.T) {
				s := Spec{Input: p, Code: k, Hidden: []int{4}, Activation: Tanh, CodeActivation: Tanh, Output: Linear, Loss: loss}
				if loss == CrossEntropy {
					s.Output = Sigmoid
				}
				plain, err := New(s)
				if err != nil {
					t.Fatal(err)
				}
				plain.Init(rand.New(rand.NewPCG(3, 4)))
				s.Trim = trim
				trimmed, err := New(s)
				if err != nil {
					t.Fatal(err)
				}
				trimmed.SetParams(plain.Params())
				rng := rand.New(rand.NewPCG(1, 2))
				x := make([]float64, n*p)
				for i := range x {
					x[i] = 0.05 + 0.9*rng.Float64()
				}
				// Three records unlike the rest, so the ranking is clear.
				for _, r := range []int{2, 5, 7} {
					for l := 0; l < p; l++ {
						if loss == SquaredError {
							x[r*p+l] = 8 + float64(r+l)
						} else {
							x[r*p+l] = 0.99 - 0.98*float64((r+l)%2)
						}
					}
				}
				// Each record's loss, from the untrimmed model one record
				// at a time; the worst floor(trim * n) leave the batch.
				g1 := make([]float64, plain.NumParams())
				lossOf := make([]float64, n)
				order := make([]int, n)
				for r := range n {
					lossOf[r] = plain.Gradient(g1, x[r*p:(r+1)*p], nil)
					order[r] = r
				}
				slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lossOf[b], lossOf[a]) })
				drop := int(trim * float64(n))
				out := map[int]bool{}
				for _, r := range order[:drop] {
					out[r] = true
				}
				var kept []float64
				for r := range n {
					if !out[r] {
						kept = append(kept, x[r*p:(r+1)*p]...)
					}
				}
				want := make([]float64, plain.NumParams())
				wantLoss := plain.Gradient(want, kept, nil)
				got := make([]float64, trimmed.NumParams())
				gotLoss := trimmed.Gradient(got, x, nil)
				if math.Abs(gotLoss-wantLoss) > 1e-12*math.Abs(wantLoss) {
					t.Errorf("objective %v, want %v (the kept records' mean)", gotLoss, wantLoss)
				}
				for i := range got {
					if math.Abs(got[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
						t.Fatalf("parameter %d: gradient %v, want %v", i, got[i], want[i])
					}
				}
			})
		}
	}
}
