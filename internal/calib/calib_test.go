package calib

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

// share returns the share of s above t.
func share(s []float64, t float64) float64 {
	n := 0
	for _, v := range s {
		if v > t {
			n++
		}
	}
	return float64(n) / float64(len(s))
}

func chi2(rng *rand.Rand, n, df int, scale, shift float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		var s float64
		for range df {
			z := rng.NormFloat64()
			s += z * z
		}
		out[i] = s*scale + shift
	}
	return out
}

func logNormal(rng *rand.Rand, n int, sigma float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Exp(sigma * rng.NormFloat64())
	}
	return out
}

// pareto returns scores exp(beta E), E exponential: a Pareto tail with
// index 1/beta.
func pareto(rng *rand.Rand, n int, beta float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Exp(beta * rng.ExpFloat64())
	}
	return out
}

// nearAnomalies are log-uniform between 3 and 100 times the 99.5% quantile
// of pareto(1.1) scores (200^1.1).
func nearAnomalies(rng *rand.Rand, n int) []float64 {
	q := math.Pow(200, 1.1)
	out := make([]float64, n)
	for i := range out {
		out[i] = q * math.Exp(math.Log(3)+rng.Float64()*math.Log(100.0/3))
	}
	return out
}

// TestAlertThresholdHoldsTheRate: on clean, heavy-tailed, contaminated and
// degenerate score distributions the threshold lets about the configured
// share of fresh normal scores through, and catches well-separated
// anomalies that are more common than the rate.
func TestAlertThresholdHoldsTheRate(t *testing.T) {
	const rate = 0.005
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name      string
		held      func() []float64 // held-out scores
		normal    func() []float64 // fresh normal scores
		anomalies []float64        // fresh anomalies' scores (nil: none)
		minRecall float64
	}{
		{name: "chi-square, clean",
			held: func() []float64 { return chi2(rng, 4000, 30, 1, 0) }, normal: func() []float64 { return chi2(rng, 100000, 30, 1, 0) }},
		{name: "log-normal sigma 1.5 (heavy tail), clean",
			held: func() []float64 { return logNormal(rng, 4000, 1.5) }, normal: func() []float64 { return logNormal(rng, 100000, 1.5) }},
		// Far: beyond the fence, about 200 here (5 spreads above Q90).
		{name: "chi-square with 3% far anomalies",
			held:      func() []float64 { return append(chi2(rng, 3880, 30, 1, 0), chi2(rng, 120, 30, 5, 200)...) },
			normal:    func() []float64 { return chi2(rng, 100000, 30, 1, 0) },
			anomalies: chi2(rng, 10000, 30, 5, 200), minRecall: 0.99},
		{name: "log-normal with 2% far anomalies",
			held: func() []float64 {
				return append(logNormal(rng, 3920, 1), chi2(rng, 80, 4, 1000, 3000)...)
			},
			normal:    func() []float64 { return logNormal(rng, 100000, 1) },
			anomalies: chi2(rng, 10000, 4, 1000, 3000), minRecall: 0.99},
		// Near: 1% of anomalies between 3 and 100 times the normal
		// scores' 99.5% quantile, far below the fence of a Pareto body
		// (real data's shape): the 99.5% quantile of all would lie among
		// them.
		{name: "Pareto body with 1% near anomalies",
			held:      func() []float64 { return append(pareto(rng, 3960, 1.1), nearAnomalies(rng, 40)...) },
			normal:    func() []float64 { return pareto(rng, 200000, 1.1) },
			anomalies: nearAnomalies(rng, 10000), minRecall: 0.9},
		{name: "30% exact reconstructions",
			held: func() []float64 {
				s := chi2(rng, 4000, 6, 1, 0)
				for i := range 1200 {
					s[i] = 0
				}
				return s
			},
			normal: func() []float64 {
				s := chi2(rng, 100000, 6, 1, 0)
				for i := range 30000 {
					s[i] = 0
				}
				return s
			}},
		{name: "60% exact reconstructions (no fence)",
			held: func() []float64 {
				s := chi2(rng, 4000, 6, 1, 0)
				for i := range 2400 {
					s[i] = 0
				}
				return s
			},
			normal: func() []float64 {
				s := chi2(rng, 100000, 6, 1, 0)
				for i := range 60000 {
					s[i] = 0
				}
				return s
			}},
	}
	for _, tc := range cases {
		th := AlertThreshold(tc.held(), rate)
		far := share(tc.normal(), th)
		t.Logf("%s: threshold %.4g, false-alarm rate %.4f", tc.name, th, far)
		if far < rate/3 || far > rate*3 {
			t.Errorf("%s: false-alarm rate %.4f for rate %v", tc.name, far, rate)
		}
		if tc.anomalies != nil {
			if r := share(tc.anomalies, th); r < tc.minRecall {
				t.Errorf("%s: recall %.3f, want at least %v", tc.name, r, tc.minRecall)
			}
		}
	}
	if !math.IsNaN(AlertThreshold(nil, rate)) {
		t.Error("threshold of no scores is not NaN")
	}
}

func TestCodeWidthFindsTheRank(t *testing.T) {
	for _, rank := range []int{2, 3, 5, 8} {
		rng := rand.New(rand.NewPCG(uint64(rank), 9))
		const n, p = 5000, 30
		x := synth.LowRank(rng, n, p, rank, 0.4)
		m := NewMoments(p)
		for r := range n {
			m.Add(x[r*p : (r+1)*p])
		}
		if got := CodeWidth(m.Spectrum()); got != rank {
			t.Errorf("rank %d: code width %d (spectrum %.3g)", rank, got, m.Spectrum())
		}
	}
	// The seed's reference set: n 500, p 10, rank 3, noise 0.4.
	rng := rand.New(rand.NewPCG(1, 2))
	x := synth.LowRank(rng, 500, 10, 3, 0.4)
	m := NewMoments(10)
	for r := range 500 {
		m.Add(x[r*10 : (r+1)*10])
	}
	if got := CodeWidth(m.Spectrum()); got != 3 {
		t.Errorf("seed's rank-3 set: code width %d", got)
	}
	if CodeWidth(nil) != 0 || CodeWidth([]float64{0, 0}) != 0 || CodeWidth([]float64{2}) != 1 {
		t.Error("degenerate spectra")
	}
}

// TestMomentsMerge: moments of two shards merge into those of the union.
func TestMomentsMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := synth.LowRank(rng, 300, 6, 2, 0.3)
	all, a, b := NewMoments(6), NewMoments(6), NewMoments(6)
	for r := range 300 {
		all.Add(x[r*6 : (r+1)*6])
		if r < 100 {
			a.Add(x[r*6 : (r+1)*6])
		} else {
			b.Add(x[r*6 : (r+1)*6])
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	sa, sall := a.Spectrum(), all.Spectrum()
	for i := range sa {
		if math.Abs(sa[i]-sall[i]) > 1e-9*(1+sall[i]) {
			t.Fatalf("merged spectrum %v, union's %v", sa, sall)
		}
	}
	if err := a.Merge(NewMoments(5)); err == nil {
		t.Error("merging moments of another width succeeded")
	}
}

func lowRankModel(t *testing.T, p int) (*ae.Model, []float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	x := synth.LowRank(rng, 3000, p, 3, 0.3)
	m, err := ae.New(ae.Spec{Input: p, Hidden: []int{8}, Code: 3, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Tanh})
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rng)
	tr := ae.NewTrainer(m, ae.NewAdam(m.NumParams(), 3e-3), rng)
	for e := 0; e < 20; e++ {
		for b := 0; b+64 <= 2000; b += 64 {
			tr.Step(x[b*p : (b+64)*p])
		}
	}
	return m, x[2000*p:]
}

// TestCalibratorGatesAndBoundsTheFirstThreshold drives the calibrator with
// the round and record counts passed in: no threshold below MinRows, none
// while the held-out error still falls, one at the record bound whatever
// the error does, and recalibration every Every records after that.
func TestCalibratorGatesAndBoundsTheFirstThreshold(t *testing.T) {
	const p = 10
	m, held := lowRankModel(t, p)
	c, err := New(Config{MinRows: 200, MaxRecords: 10000, SettleRounds: 100, Every: 100}, p)
	if err != nil {
		t.Fatal(err)
	}
	c.Observe(held[:150*p], 1500)
	if c.Due(1000) {
		t.Fatal("due with 150 held-out records, MinRows 200")
	}
	c.Observe(held[150*p:300*p], 1500) // 300 rows, 3000 records
	if !c.Due(1) {
		t.Fatal("not due at the first check")
	}
	if _, ok, err := c.Calibrate(m, 1); ok || err != nil {
		t.Fatalf("first check set a threshold (ok %v, err %v): it has nothing to compare with", ok, err)
	}
	if c.Due(50) {
		t.Fatal("due 49 rounds after a check, SettleRounds 100")
	}
	// A model whose held-out error is much lower than at the first check:
	// still learning, so no threshold.
	c.lastMedian *= 2 // as if the error had halved since the last check
	if !c.Due(101) {
		t.Fatal("not due SettleRounds after a check")
	}
	if _, ok, _ := c.Calibrate(m, 101); ok {
		t.Fatal("threshold set while the held-out error halved between checks")
	}
	// The same model again: the error no longer falls; settled.
	u, ok, err := c.Calibrate(m, 201)
	if !ok || err != nil || !u.First || u.Forced || !(u.Threshold > 0) || u.Whitening == nil || u.Version != 1 {
		t.Fatalf("settled calibration: %+v ok %v err %v", u, ok, err)
	}
	if c.Due(202) {
		t.Fatal("due right after a calibration")
	}
	c.Observe(held[300*p:400*p], 1000)
	if !c.Due(203) {
		t.Fatal("not due after Every new held-out records")
	}

	// The bound: a calibrator that never settles sets its first threshold
	// at MaxRecords.
	c2, _ := New(Config{MinRows: 200, MaxRecords: 10000, SettleRounds: 100}, p)
	c2.Observe(held[:300*p], 9000)
	if _, _, err := c2.Calibrate(m, 1); err != nil {
		t.Fatal(err)
	}
	c2.lastMedian *= 2
	if _, ok, _ := c2.Calibrate(m, 101); ok {
		t.Fatal("threshold before the record bound while not settled")
	}
	c2.Observe(held[300*p:310*p], 1000) // 10,000 records
	if !c2.Due(102) {
		t.Fatal("not due at the record bound")
	}
	c2.lastMedian *= 2
	u, ok, err = c2.Calibrate(m, 102)
	if !ok || err != nil || !u.First || !u.Forced {
		t.Fatalf("at the record bound: %+v ok %v err %v", u, ok, err)
	}
	if pr := c2.Progress(); pr.Records != 10000 || pr.Rows != 310 || pr.Threshold != u.Threshold || pr.Settled {
		t.Errorf("progress %+v", pr)
	}

	// Rounds of 74 records: the bound fires in the round the next one
	// would pass it, so the first threshold comes within MaxRecords.
	c3, _ := New(Config{MinRows: 1000, MaxRecords: 10000}, p)
	c3.Observe(held[:300*p], 0)
	for r := uint64(1); r < 1000; r++ {
		c3.Observe(nil, 74)
		if !c3.Due(r) {
			continue
		}
		n := c3.Progress().Records
		if n > 10000 || n < 10000-2*74 {
			t.Fatalf("bound fired at %d records, want within one round below 10000", n)
		}
		if u, ok, err := c3.Calibrate(m, r); !ok || err != nil || !u.Forced {
			t.Fatalf("at the record bound: %+v ok %v err %v", u, ok, err)
		}
		break
	}
	if c3.Progress().Threshold == 0 {
		t.Fatal("no threshold in 1000 rounds of 74 records")
	}
}

// TestRecordBoundHoldsForUnevenRounds: rounds whose record counts vary
// (two trainers, one sometimes late; batches cut short by a slow stream;
// rounds of a record or two between bursts) still bring the first
// threshold within MaxRecords, in every one of many streams of random
// round sizes.
func TestRecordBoundHoldsForUnevenRounds(t *testing.T) {
	const p = 10
	m, held := lowRankModel(t, p)
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		c, _ := New(Config{MinRows: 1000, MaxRecords: 10000}, p)
		c.Observe(held[:300*p], 0)
		for r := uint64(1); ; r++ {
			// Rounds of 1 to 2 batches of 20 to 40 records, or (half
			// the trials, after a backlog of 64-record rounds) of 0 to 3
			// records with a 40-record burst one round in 50.
			n := 20 + rng.IntN(21)
			if rng.IntN(2) == 0 {
				n += 20 + rng.IntN(21)
			}
			if trial%2 == 1 {
				switch {
				case r <= 5:
					n = 64
				case rng.IntN(50) == 0:
					n = 40
				default:
					n = rng.IntN(4)
				}
			}
			c.Observe(nil, n)
			if !c.Due(r) {
				continue
			}
			if got := c.Progress().Records; got > 10000 || got < 10000-200 {
				t.Fatalf("trial %d: bound fired at %d records, want within 200 below 10000", trial, got)
			}
			if u, ok, err := c.Calibrate(m, r); !ok || err != nil || !u.Forced {
				t.Fatalf("trial %d: at the record bound: %+v ok %v err %v", trial, u, ok, err)
			}
			break
		}
	}
}

// TestSlowStreamGetsAThreshold: at 10 records/s the first threshold comes
// within 20 minutes of simulated time (the record bound is 10,000; rounds
// run at compute speed, a few per second here).
func TestSlowStreamGetsAThreshold(t *testing.T) {
	const p, rate, holdout = 10, 10, 0.1
	m, held := lowRankModel(t, p)
	c, err := New(Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var round uint64
	rows := 0
	for sec := 1; sec <= 20*60; sec++ {
		// One second: rate records, about holdout of them held out; 5 rounds.
		var h []float64
		for range rate {
			if rng.Float64() < holdout {
				h = append(h, held[(rows%1000)*p:(rows%1000+1)*p]...)
				rows++
			}
		}
		c.Observe(h, rate)
		for range 5 {
			round++
			if c.Due(round) {
				if u, ok, err := c.Calibrate(m, round); err != nil {
					t.Fatal(err)
				} else if ok {
					t.Logf("first threshold %.4g after %d s (%d records, %d held out; settled %v)", u.Threshold, sec, c.Progress().Records, u.Rows, !u.Forced)
					if n, bound := c.Progress().Records, c.Config().MaxRecords; n > bound {
						t.Errorf("first threshold after %d records, past the bound of %d", n, bound)
					}
					return
				}
			}
		}
	}
	t.Fatalf("no threshold after 20 minutes at %d records/s: %+v", rate, c.Progress())
}

func TestDrifted(t *testing.T) {
	const p = 3
	c, _ := New(Config{MinRows: 100}, p)
	rng := rand.New(rand.NewPCG(1, 1))
	var rows []float64
	for range 500 {
		// Feature 0 fits; feature 1 spreads 5 times wider; feature 2 moved by 4 sd.
		rows = append(rows, rng.NormFloat64(), 5*rng.NormFloat64(), 4+rng.NormFloat64())
	}
	if got := c.Drifted(); got != nil {
		t.Fatalf("drift judged on an empty window: %v", got)
	}
	c.Observe(rows, 5000)
	if got := c.Drifted(); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("drifted features %v, want [1 2]", got)
	}
}

// TestAlertThresholdExtrapolatesASmallWindow: 1000 chi-square scores hold
// 0.5 above the 0.9995 quantile; the extrapolated tail still lets about
// 0.05% of fresh scores through, where the order statistic lets through
// several times more.
func TestAlertThresholdExtrapolatesASmallWindow(t *testing.T) {
	const rate = 0.0005
	rng := rand.New(rand.NewPCG(11, 12))
	fresh := chi2(rng, 400000, 30, 1, 0)
	var far, farQ float64
	const trials = 20
	for range trials {
		held := chi2(rng, 1000, 30, 1, 0)
		far += share(fresh, AlertThreshold(held, rate)) / trials
		farQ += share(fresh, quantile(held, 1-rate)) / trials
	}
	t.Logf("mean false-alarm rate over %d windows of 1000: extrapolated %.5f, order statistic %.5f (rate %v)", trials, far, farQ, rate)
	if far > 3*rate || far < rate/3 {
		t.Errorf("extrapolated threshold lets %.5f through, rate %v", far, rate)
	}
}

// TestReplayedRecordsAreKeptOnce: a small file replayed in passes fills the
// window with its distinct held-out records only, and the record bound
// still brings a first threshold from them.
func TestReplayedRecordsAreKeptOnce(t *testing.T) {
	const p = 10
	m, held := lowRankModel(t, p)
	c, _ := New(Config{MaxRecords: 10000}, p)
	for r := range uint64(50) { // 50 passes over 15 held-out records (of 150), a round each
		c.Observe(held[:15*p], 150)
		if c.Due(r) {
			t.Fatalf("due before the record bound with 15 rows, after %d records", c.Progress().Records)
		}
	}
	if pr := c.Progress(); pr.Rows != 15 || pr.HeldOut != 750 || pr.Records != 7500 {
		t.Fatalf("progress %+v: want 15 distinct rows of 750 held out", pr)
	}
	c.Observe(held[:15*p], 2350) // 9850: the next round of 150 reaches the bound
	if !c.Due(2) {
		t.Fatal("not due at the record bound")
	}
	if u, ok, err := c.Calibrate(m, 2); !ok || err != nil || !u.Forced || u.Rows != 15 {
		t.Fatalf("at the bound: %+v ok %v err %v", u, ok, err)
	}
}

// TestWindowIsCappedForWideRecords: the window holds at most 2^21 values
// (at least 1000 records) whether it was left to its default or asked for
// explicitly, as the coordinator's --calibration-window flag always does.
func TestWindowIsCappedForWideRecords(t *testing.T) {
	for _, c := range []struct {
		window, p, want int
	}{
		{0, 10, 16384}, {16384, 10, 16384}, {0, 500, 4194}, {16384, 500, 4194}, {16384, 2500, 1000}, {300, 2500, 300},
	} {
		cal, err := New(Config{Window: c.window, MinRows: min(c.want, 500)}, c.p)
		if err != nil {
			t.Fatal(err)
		}
		if got := cal.Config().Window; got != c.want {
			t.Errorf("window %d for width %d: %d, want %d", c.window, c.p, got, c.want)
		}
	}
}
