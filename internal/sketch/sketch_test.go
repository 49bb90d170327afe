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
