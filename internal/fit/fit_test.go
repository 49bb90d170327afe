package fit

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

func TestQuantile(t *testing.T) {
	s := []float64{5, 1, 4, 2, 3}
	for _, tc := range []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {0.25, 2}, {0.9, 4.6}, {1, 5}} {
		if got := Quantile(s, tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if s[0] != 5 {
		t.Error("Quantile reordered its input")
	}
	if !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile of nothing is not NaN")
	}
}

// TestSweepDemoFindsRank: the seed's demonstration data through the linear
// sweep: training error within 1% of the PCA closed form for every k, and the
// elbow at the true rank 3.
func TestSweepDemoFindsRank(t *testing.T) {
	x, _, p := synth.Demo(rand.New(rand.NewPCG(7, 2026)))
	cfg := LinearDemoConfig()
	ks := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	sw, err := RunSweep(context.Background(), cfg, x, p, ks, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sw.Rows {
		t.Logf("k=%d train %.4f closed %.4f ratio %.4f held-out %.4f pca-held-out %.4f angle %.2f epochs %d",
			r.K, r.Train, r.Closed, r.Train/r.Closed, r.HeldOut, r.PCATest, r.AngleDeg, r.Epochs)
		if !r.Linear {
			t.Fatalf("k=%d: not recognised as linear", r.K)
		}
		if r.Train/r.Closed > 1.01 || r.Train < r.Closed*(1-1e-9) {
			t.Errorf("k=%d: training error %.5f not within 1%% above the closed form %.5f", r.K, r.Train, r.Closed)
		}
	}
	if sw.Elbow != 3 {
		t.Errorf("elbow at k=%d, want 3", sw.Elbow)
	}
	png := filepath.Join(t.TempDir(), "sweep.png")
	if err := PlotSweep(sw, "test", png); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(png); err != nil || st.Size() < 1000 {
		t.Fatalf("plot: %v, %v", st, err)
	}
}

func TestFitThresholdAndEarlyStop(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := synth.LowRank(rng, 2000, 12, 3, 0.3)
	var epochs []int
	res, err := Fit(context.Background(), Config{Auto: true, Epochs: 400, Seed: 3}, x, 12, func(pr Progress) { epochs = append(epochs, pr.Epoch) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Epochs >= 400 {
		t.Errorf("no early stop in 400 epochs")
	}
	if len(epochs) != res.Epochs || len(res.HeldOutRows) != 400 || len(res.TrainRows) != 1600 {
		t.Errorf("epochs %d (progress %d), held-out %d, train %d", res.Epochs, len(epochs), len(res.HeldOutRows), len(res.TrainRows))
	}
	above := 0
	for _, s := range res.HeldOutScores {
		if s > res.Threshold {
			above++
		}
	}
	if above > 3 { // 0.5% of 400 = 2 rows
		t.Errorf("%d of 400 held-out rows above the threshold for alert rate 0.005", above)
	}
	if res.Model.Spec().Code != 3 || res.Model.Spec().Hidden[0] != 16 { // code: the data's rank, from its spectrum
		t.Errorf("auto spec for p=12: %+v", res.Model.Spec())
	}
	// Same seed, same result.
	res2, err := Fit(context.Background(), Config{Auto: true, Epochs: 400, Seed: 3}, x, 12, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Threshold != res.Threshold {
		t.Errorf("same seed, thresholds %v and %v", res.Threshold, res2.Threshold)
	}
}

func TestFitRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := Fit(ctx, Config{Auto: true}, []float64{1, 2}, 2, nil); err == nil {
		t.Error("one row accepted")
	}
	if _, err := Fit(ctx, Config{Auto: true}, []float64{1, 2, math.NaN(), 4}, 2, nil); err == nil {
		t.Error("NaN accepted")
	}
	if _, err := Fit(ctx, Config{Auto: true, Holdout: 1.5}, []float64{1, 2, 3, 4}, 2, nil); err == nil {
		t.Error("held-out fraction 1.5 accepted")
	}
	if _, err := Fit(ctx, Config{Spec: ae.Spec{Code: 3}}, []float64{1, 2, 3, 4}, 2, nil); err == nil {
		t.Error("overcomplete plain model accepted")
	}
	if _, err := Fit(ctx, Config{Auto: true}, []float64{1e200, 2, -1e200, 4, 3, 3}, 2, nil); err == nil {
		t.Error("values whose variance overflows accepted")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Fit(cancelled, Config{Auto: true}, make([]float64, 40), 2, nil); err == nil {
		t.Error("cancelled context ignored")
	}
}

func TestEpochBudget(t *testing.T) {
	for _, tc := range []struct{ n, want int }{{171, 200}, {2880, 200}, {20000, 200}, {80000, 50}, {1000000, 20}} {
		if got := EpochBudget(tc.n); got != tc.want {
			t.Errorf("EpochBudget(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestConstantColumnNeitherInflatesNorStopsEarly: columns constant on the
// training rows (one exactly, one but for a single held-out row) that vary
// in new records: training runs past its first epochs, the held-out error
// stays finite and small, and a new record with another value on them
// scores like a record off by that many units, not by 10^8 times it.
func TestConstantColumnNeitherInflatesNorStopsEarly(t *testing.T) {
	const n, p = 2000, 8
	rng := rand.New(rand.NewPCG(5, 6))
	base := synth.LowRank(rng, n, 6, 2, 0.3)
	x := make([]float64, 0, n*p)
	for r := range n {
		x = append(x, base[r*6:(r+1)*6]...)
		x = append(x, 1, 0) // constant, and zero but once
	}
	x[7*p+7] = 50 // the one differing row: wherever the split puts it
	res, err := Fit(context.Background(), Config{Auto: true, Seed: 2}, x, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("constant %v, epochs %d (best %d), held-out error %.4f", res.Constant, res.Epochs, res.BestEpoch, res.HeldOut)
	if len(res.Constant) == 0 || res.Constant[0] != 6 {
		t.Errorf("constant features %v, want 6 first", res.Constant)
	}
	if res.BestEpoch < 10 || res.HeldOut > 1 || math.IsNaN(res.HeldOut) {
		t.Errorf("best epoch %d, held-out error %v: training ended early or the error is inflated", res.BestEpoch, res.HeldOut)
	}
	rec := append([]float64(nil), x[:p]...)
	normal := res.Score(rec)[0]
	rec[6] = 3 // two units off a constant column
	off := res.Score(rec)[0]
	t.Logf("score of a training row %.3g; with the constant column 2 units off %.3g", normal, off)
	if off > 1e6 || off <= normal {
		t.Errorf("a record 2 units off a constant column scores %.3g (normal %.3g)", off, normal)
	}
}
