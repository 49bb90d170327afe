package ae

import (
	"math/rand/v2"
	"testing"
)

// The peer benchmark's model: 30-16-4-16-30, ReLU everywhere but a linear
// output, batch 256, Adam (../shared/bench/peer_torch.py).
func benchModel(b *testing.B) (*Model, []float64) {
	m, err := New(Spec{Input: 30, Hidden: []int{16}, Code: 4, Activation: ReLU, CodeActivation: ReLU, Output: Linear})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m.Init(rng)
	x := make([]float64, 64*256*30) // 64 batches, cycled
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return m, x
}

// BenchmarkTrain measures training throughput: one op is one batch of 256
// (gradient, Adam step, state advance); samples/s is the figure to compare.
// It runs once per kernel set of KernelSets, then as the trainer does: with
// the set ChooseKernels picks ("chosen").
func BenchmarkTrain(b *testing.B) {
	eachKernelSet(b, TaskTrain, func(b *testing.B) {
		m, x := benchModel(b)
		tr := NewTrainer(m, NewAdam(m.NumParams(), 1e-3), nil)
		const batch = 256 * 30
		nb := len(x) / batch
		tr.Step(x[:batch])
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			j := i % nb
			tr.Step(x[j*batch : (j+1)*batch])
		}
		b.ReportMetric(float64(b.N)*256/b.Elapsed().Seconds(), "samples/s")
	})
}

// eachKernelSet runs fn as a sub-benchmark per kernel set, then one named
// "chosen" with the set ChooseKernels picks for the task on benchModel's
// spec, and logs which that is.
func eachKernelSet(b *testing.B, task Task, fn func(b *testing.B)) {
	sets := KernelSets()
	defer func() {
		if err := UseKernels(sets[len(sets)-1]); err != nil {
			b.Error(err)
		}
	}()
	for _, set := range sets {
		if err := UseKernels(set); err != nil {
			b.Fatal(err)
		}
		b.Run(set, fn)
	}
	m, _ := benchModel(b)
	set, timings, err := ChooseKernels(m.Spec(), 256, task)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("chosen", func(b *testing.B) {
		b.Logf("kernels: %s, chosen from %v", set, timings)
		fn(b)
	})
}

// BenchmarkScore measures batch scoring throughput: one op scores 256
// records (forward pass and per-record squared error), per kernel set and
// with the one ChooseKernels picks, as BenchmarkTrain.
func BenchmarkScore(b *testing.B) {
	eachKernelSet(b, TaskScore, func(b *testing.B) {
		m, x := benchModel(b)
		const batch = 256 * 30
		nb := len(x) / batch
		dst := make([]float64, 256)
		m.Score(dst, x[:batch])
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			j := i % nb
			m.Score(dst, x[j*batch:(j+1)*batch])
		}
		b.ReportMetric(float64(b.N)*256/b.Elapsed().Seconds(), "rows/s")
	})
}

// BenchmarkScoreOne measures one-record-at-a-time scoring, the latency a
// record sees when a scorer cannot batch.
func BenchmarkScoreOne(b *testing.B) {
	m, x := benchModel(b)
	dst := make([]float64, 1)
	m.Score(dst, x[:30])
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		j := i % (len(x) / 30)
		m.Score(dst, x[j*30:(j+1)*30])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkWhiteningScore measures the whitened residual score the scorer
// applies to every record after the forward pass (30 features, batches of
// 256); rows/s is the figure.
func BenchmarkWhiteningScore(b *testing.B) {
	const p, n = 30, 256
	rng := rand.New(rand.NewPCG(1, 2))
	res := make([]float64, 4*n*p)
	for i := range res {
		res[i] = rng.NormFloat64() * float64(1+i%p)
	}
	w, err := whiteningOf(res, p, nil)
	if err != nil {
		b.Fatal(err)
	}
	z, rec := res[:n*p], res[n*p:2*n*p]
	scores, explain := make([]float64, n), make([]float64, n*p)
	b.ReportAllocs()
	for b.Loop() {
		w.Score(scores, explain, z, rec)
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "rows/s")
}
