package synth

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The region holds its share of normal records, at a low and a high width.
func TestRegionHoldsItsShare(t *testing.T) {
	for _, tc := range []struct {
		p, rank int
		q       float64
	}{{6, 3, 0.99}, {6, 3, 0.9}, {30, 3, 0.99}} {
		rng := rand.New(rand.NewPCG(1, 2))
		b := Basis(rng, tc.rank, tc.p)
		r := NewRegion(b, tc.rank, 0.4, tc.q)
		const n = 100000
		rec := make([]float64, tc.p)
		in := 0
		for range n {
			Sample(rng, rec, b, tc.rank, 0.4)
			if r.Contains(rec) {
				in++
			}
		}
		got := float64(in) / n
		// binomial sd at n = 1e5 is below 0.001; allow 4 of them.
		if sd := math.Sqrt(tc.q * (1 - tc.q) / n); math.Abs(got-tc.q) > 4*sd {
			t.Errorf("p %d rank %d: region of share %v holds %.4f of normal records", tc.p, tc.rank, tc.q, got)
		}
	}
}

// At 6 features a share of the injected anomalies of each broad kind falls
// among the normal records' 99.99%; Outlying draws none of them.
func TestOutlyingAnomaliesLieOutside(t *testing.T) {
	const p, rank, sd, q = 6, 3, 0.4, 0.9999
	rng := rand.New(rand.NewPCG(3, 4))
	b := Basis(rand.New(rand.NewPCG(1, 0xba5e)), rank, p)
	scales := Scales(b, rank, sd)
	r := NewRegion(b, rank, sd, q)
	rec := make([]float64, p)
	for _, kind := range Kinds {
		const n = 20000
		inside, draws := 0, 0
		for range n {
			if Outlying(rng, rec, b, rank, sd, scales, kind, nil) != 1 {
				t.Fatal("Outlying without a region drew more than once")
			}
			if r.Contains(rec) {
				inside++
			}
			draws += Outlying(rng, rec, b, rank, sd, scales, kind, r)
			if r.Contains(rec) {
				t.Fatalf("%s: Outlying returned a record inside the region (distance^2 %.2f)", kind, r.Distance2(rec))
			}
		}
		t.Logf("%s: %.2f%% of plain injections inside the 99.99%% region; %.3f draws per outlying anomaly",
			kind, 100*float64(inside)/n, float64(draws)/n)
		if kind != Spike && inside == 0 {
			t.Errorf("%s: no plain injection fell inside the region at 6 features; the test shows nothing", kind)
		}
	}
}
