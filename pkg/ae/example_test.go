package ae_test

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

func ExampleNew() {
	m, err := ae.New(ae.Spec{Input: 30, Hidden: []int{16}, Code: 4, Activation: ae.ReLU, CodeActivation: ae.ReLU})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.NumParams(), "parameters")

	_, err = ae.New(ae.Spec{Input: 10, Code: 12})
	fmt.Println(errors.Is(err, ae.ErrOvercomplete))
	// Output:
	// 1154 parameters
	// true
}

// A model trained on records near a low-rank subspace scores a record off
// that subspace far above the records it learned from, and the per-feature
// errors point at the feature that was changed.
func ExampleModel_ScoreFeatures() {
	rng := rand.New(rand.NewPCG(1, 2))
	x, n, p := synth.Demo(rng)
	m, _ := ae.New(ae.Spec{Input: p, Code: 3})
	m.Init(rng)
	tr := ae.NewTrainer(m, ae.NewAdam(m.NumParams(), 0.02), nil)
	for i := 0; i < 2000; i++ {
		tr.Step(x)
	}

	rec := append([]float64(nil), x[:p]...) // a normal record
	spike := append([]float64(nil), rec...)
	spike[7] += 6 // the same record with feature 7 spiked
	scores := make([]float64, 2)
	features := make([]float64, 2*p)
	m.ScoreFeatures(scores, features, append(rec, spike...))
	top := 0
	for l := range p {
		if features[p+l] > features[p+top] {
			top = l
		}
	}
	fmt.Printf("records: %d; normal scores below 3: %v; spiked scores above 20: %v; top feature: %d\n",
		n, scores[0] < 3, scores[1] > 20, top)
	// Output:
	// records: 500; normal scores below 3: true; spiked scores above 20: true; top feature: 7
}

func ExamplePCA() {
	x, n, p := synth.Demo(rand.New(rand.NewPCG(7, 2026)))
	pca, err := ae.NewPCA(mat.NewDense(n, p, x))
	if err != nil {
		panic(err)
	}
	for k := 0; k <= 4; k++ {
		fmt.Printf("k=%d: minimum mean error %.4f\n", k, pca.TailError(k))
	}
	// Output:
	// k=0: minimum mean error 20.3051
	// k=1: minimum mean error 11.4733
	// k=2: minimum mean error 5.4747
	// k=3: minimum mean error 1.1501
	// k=4: minimum mean error 0.9524
}

func ExampleNormalizer_Merge() {
	a, b := ae.NewNormalizer(1), ae.NewNormalizer(1)
	for _, v := range []float64{1, 2, 3} {
		_ = a.Observe([]float64{v}) // finite: never refused
	}
	for _, v := range []float64{4, 5} {
		_ = b.Observe([]float64{v})
	}
	a.Merge(b) // as if a had seen 1, 2, 3, 4, 5
	fmt.Println(a.Count(), a.Mean(), a.Var())
	// Output:
	// 5 [3] [2]
}

func ExampleAdam() {
	// Minimize (w - 3)^2.
	w := []float64{0}
	g := []float64{0}
	opt := ae.NewAdam(1, 0.1)
	for i := 0; i < 500; i++ {
		g[0] = 2 * (w[0] - 3)
		opt.Step(w, g)
	}
	fmt.Printf("%.3f after %d steps\n", w[0], opt.Steps())
	// Output:
	// 3.000 after 500 steps
}
