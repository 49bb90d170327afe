package sketch

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/DataDog/sketches-go/ddsketch"
)

// TestMergedQuantileWithinAccuracy: scores split over four sketches,
// encoded, decoded and merged give every quantile within the stated
// relative accuracy of the exact quantile of all the scores.
func TestMergedQuantileWithinAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all []float64
	parts := []*ddsketch.DDSketch{New(), New(), New(), New()}
	for i := 0; i < 40000; i++ {
		v := math.Exp(rng.NormFloat64()) // skewed, like reconstruction errors
		all = append(all, v)
		parts[i%4].Add(v)
	}
	merged := New()
	for _, p := range parts {
		d, err := Decode(Encode(p))
		if err != nil {
			t.Fatal(err)
		}
		if err := merged.MergeWith(d); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.995, 0.999} {
		got, err := merged.GetValueAtQuantile(q)
		if err != nil {
			t.Fatal(err)
		}
		exact := all[int(q*float64(len(all)-1))]
		if rel := math.Abs(got-exact) / exact; rel > RelativeAccuracy {
			t.Errorf("q=%v: sketch %v, exact %v, relative error %.4f > %v", q, got, exact, rel, RelativeAccuracy)
		}
	}
}

func FuzzDecode(f *testing.F) {
	s := New()
	s.Add(1)
	s.Add(2.5)
	f.Add(Encode(s))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		if err != nil {
			return
		}
		d.GetValueAtQuantile(0.99)
		m := New()
		m.MergeWith(d)
	})
}

// TestRobustIgnoresContamination: on log-normal scores the robust threshold
// is exp(mu + k sigma) to within 10% (each quartile is within 1%, and the
// exponent k/1.349 amplifies their ratio's error about threefold), and 2% of
// huge scores (anomalies in the training stream) move it by under 10%, while the 0.995 quantile jumps into the anomalies.
func TestRobustIgnoresContamination(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const mu, sigma, k = 0.7, 0.3, 4.0
	clean, dirty := New(), New()
	for i := 0; i < 20000; i++ {
		v := math.Exp(mu + sigma*rng.NormFloat64())
		clean.Add(v)
		if rng.Float64() < 0.02 {
			v = 50 + 100*rng.Float64()
		}
		dirty.Add(v)
	}
	want := math.Exp(mu + k*sigma)
	c, err := Robust(clean, k)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Robust(dirty, k)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(c/want-1) > 0.10 {
		t.Errorf("clean robust threshold %.3f, want %.3f", c, want)
	}
	if math.Abs(d/c-1) > 0.10 {
		t.Errorf("2%% anomalies moved the robust threshold from %.3f to %.3f", c, d)
	}
	if q, _ := dirty.GetValueAtQuantile(0.995); q < 50 {
		t.Errorf("the 0.995 quantile of the contaminated scores is %.3f; the test's premise (it lands among the anomalies) fails", q)
	}
	if _, err := Robust(New(), k); err == nil {
		t.Error("robust threshold of an empty sketch: no error")
	}
}
