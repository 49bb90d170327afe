package ae

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestWhiteningScores: the score's terms sum to it; an identity model
// plus independent residuals of unequal spread gives each feature's residual
// in units of its own spread; bad precision matrices are refused.
func TestWhiteningScores(t *testing.T) {
	const p, n = 4, 20000
	rng := rand.New(rand.NewPCG(1, 2))
	sd := []float64{0.1, 1, 3, 10}
	res := make([]float64, n*p)
	for i := range res {
		res[i] = sd[i%p] * rng.NormFloat64()
	}
	w, err := whiteningOf(res, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	z := make([]float64, p)
	rec := make([]float64, p)
	z[0] = 0.3 // a 3-sd residual on the quietest feature
	var score [1]float64
	explain := make([]float64, p)
	w.Score(score[:], explain, z, rec)
	contrib, pr := make([]float64, p), make([]float64, p)
	if s := w.score(z, pr, contrib); math.Abs(s-score[0]) > 1e-9*score[0] {
		t.Errorf("score %v, %v", s, score[0])
	}
	var sum float64
	for _, c := range contrib {
		sum += c
	}
	if math.Abs(sum-score[0]) > 1e-9*score[0] {
		t.Errorf("terms sum to %v, score %v", sum, score[0])
	}
	terms := make([]float64, p)
	if s := w.Terms(terms, z); math.Abs(s-score[0]) > 1e-9*score[0] || !slices.Equal(terms, contrib) {
		t.Errorf("Terms: score %v, terms %v; want %v, %v", s, terms, score[0], contrib)
	}
	if math.Abs(explain[0]-0.09) > 1e-12 || explain[1] != 0 {
		t.Errorf("explanation %v: want the squared residuals", explain)
	}
	// Ridge: 1% of the mean variance (about 27.5) adds 0.275 to 0.01.
	want := 0.09 / (0.01 + WhiteningRidge*(0.01+1+9+100)/4)
	if math.Abs(score[0]-want) > 0.05*want {
		t.Errorf("score of a 3-sd residual on the quiet feature %.3f, want about %.3f", score[0], want)
	}
	// The same residual on the loudest feature scores far less.
	z[0], z[3] = 0, 0.3
	w.Score(score[:], nil, z, rec)
	if score[0] > 0.01 {
		t.Errorf("a 0.03-sd residual on the loud feature scores %.4f", score[0])
	}
	for _, bad := range [][]float64{{1, 2, 3}, {1, 0, 0, math.NaN()}, {1, 2, 3, 1}, {0, 0, 0, 1}} {
		if _, err := RestoreWhitening(2, bad); err == nil {
			t.Errorf("RestoreWhitening(2, %v) accepted", bad)
		}
	}
	w2, err := RestoreWhitening(p, w.Precision())
	if err != nil || w2.Width() != p {
		t.Fatalf("restore: %v", err)
	}

}

// TestFitWhiteningTrimsAnomalies: 5% of held-out records with huge
// residuals inflate the untrimmed estimate; the trimmed one matches the
// estimate from the normal records alone.
func TestFitWhiteningTrimsAnomalies(t *testing.T) {
	const p = 3
	m, err := New(Spec{Input: p, Code: 1, Output: Linear, Activation: Linear, CodeActivation: Linear})
	if err != nil {
		t.Fatal(err)
	}
	m.SetParams(make([]float64, m.NumParams())) // reconstructs 0: residual = record
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 4000
	z := make([]float64, n*p)
	for i := range z {
		z[i] = rng.NormFloat64()
		if i/p < n/25 { // 4% anomalies, far out on feature 0
			if i%p == 0 {
				z[i] = 30 + rng.NormFloat64()
			}
		}
	}
	clean, _ := FitWhitening(m, z[(n/25)*p:], 0, 0)
	raw, _ := FitWhitening(m, z, 0, 0)
	trimmed, err := FitWhitening(m, z, 0.05, 2)
	if err != nil {
		t.Fatal(err)
	}
	c, r, tr := clean.Precision()[0], raw.Precision()[0], trimmed.Precision()[0]
	t.Logf("precision of feature 0: clean %.3f, untrimmed %.4f, trimmed %.3f", c, r, tr)
	if r > 0.1*c {
		t.Errorf("untrimmed precision %.4f not deflated by the anomalies (clean %.3f): the test is too weak", r, c)
	}
	if math.Abs(tr-c) > 0.3*c {
		t.Errorf("trimmed precision %.3f, clean %.3f", tr, c)
	}
}

// TestConstantFeatureIsCentredNotScaled: a feature constant on the observed
// records is centered with scale 1 and listed by Constant.
func TestConstantFeatureIsCentredNotScaled(t *testing.T) {
	z := NewNormalizer(3)
	for i := range 100 {
		if err := z.Observe([]float64{float64(i), 5, 1e9}); err != nil {
			t.Fatal(err)
		}
	}
	if got := z.Constant(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("constant features %v, want [1 2]", got)
	}
	out := make([]float64, 3)
	z.Transform(out, []float64{50, 7, 1e9 + 4})
	if out[1] != 2 || out[2] != 4 {
		t.Errorf("constant features standardized to %v, want centered only (2, 4)", out[1:])
	}
}

// TestWhiteningScoreBatches: Score, which works in feature-major chunks
// through the affine kernel, gives each record the score and explanation
// of scoring it alone (Terms) on batches of several sizes, across chunk
// boundaries and ragged widths, in whichever kernel set is in use.
func TestWhiteningScoreBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range []int{1, 3, 7, 30} {
		res := make([]float64, 500*p)
		for i := range res {
			res[i] = rng.NormFloat64() * float64(1+i%p)
		}
		w, err := whiteningOf(res, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{1, 5, chunk, chunk + 3, 3*chunk - 1, 2} {
			z, rec := make([]float64, n*p), make([]float64, n*p)
			for i := range z {
				z[i], rec[i] = rng.NormFloat64()*3, rng.NormFloat64()
			}
			scores, explain := make([]float64, n), make([]float64, n*p)
			w.Score(scores, explain, z, rec)
			r, terms := make([]float64, p), make([]float64, p)
			for i := 0; i < n; i++ {
				for l := range r {
					r[l] = z[i*p+l] - rec[i*p+l]
					if explain[i*p+l] != r[l]*r[l] {
						t.Fatalf("p=%d n=%d: record %d feature %d explained by %v, want %v", p, n, i, l, explain[i*p+l], r[l]*r[l])
					}
				}
				if want := w.Terms(terms, r); math.Abs(scores[i]-want) > 1e-12*(1+math.Abs(want)) {
					t.Fatalf("p=%d n=%d: record %d scores %v in a batch, %v alone", p, n, i, scores[i], want)
				}
			}
		}
	}
}
