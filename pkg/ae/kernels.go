package ae

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kernel levels, in the order the CPU must offer more to run them.
const (
	levelPortable int32 = iota // plain Go loops
	levelAVX2                  // AVX2 and FMA (GOEXPERIMENT=simd on amd64)
	levelAVX512                // AVX-512 for the widest loops, AVX2 for the rest
)

var levelNames = [...]string{"portable", "avx2-fma", "avx512"}

// level is the kernel level in use, at most cpuLevel (UseKernels; the
// SIMD build starts it at cpuLevel); each kernel reads it once per call.
var level atomic.Int32

// ErrUnknownKernels is returned by UseKernels for a set this build or CPU
// does not have.
var ErrUnknownKernels = errors.New("ae: kernel set not available")

// KernelSets returns the kernel sets this build can run on this CPU, the
// portable one first: "portable" alone in the default build; under
// GOEXPERIMENT=simd on amd64 also "avx2-fma" where the CPU has AVX2 and FMA,
// and "avx512" where it has AVX-512 too.
func KernelSets() []string { return slices.Clone(levelNames[:cpuLevel+1]) }

// UseKernels makes every model of the process use the named kernel set
// (one of KernelSets) from the next kernel call on. Every set computes the
// same sums to rounding, so a switch while models are in use is safe. The
// default is the last of KernelSets.
func UseKernels(set string) error {
	choosing.Lock()
	defer choosing.Unlock()
	for i, name := range levelNames[:cpuLevel+1] {
		if name == set {
			level.Store(int32(i))
			return nil
		}
	}
	return fmt.Errorf("%w: %q (this build and CPU have %s)", ErrUnknownKernels, set, strings.Join(KernelSets(), ", "))
}

// KernelSet returns the name of the kernel set in use, one of KernelSets.
func KernelSet() string { return levelNames[level.Load()] }

// Kernels names the kernel set in use, and the build: "portable",
// "avx2-fma (GOEXPERIMENT=simd)", "portable (GOEXPERIMENT=simd, of
// portable, avx2-fma, avx512)" and so on.
func Kernels() string {
	lv := level.Load()
	name := levelNames[lv]
	switch {
	case !simdBuild:
		return name
	case cpuLevel == levelPortable:
		return name + " (GOEXPERIMENT=simd, no AVX2/FMA on this CPU)"
	case lv == cpuLevel:
		return name + " (GOEXPERIMENT=simd)"
	}
	return name + " (GOEXPERIMENT=simd, of " + strings.Join(KernelSets(), ", ") + ")"
}

// Task is what ChooseKernels times a kernel set at.
type Task int

// The tasks ChooseKernels times a kernel set at.
const (
	TaskTrain Task = iota // Gradient on batches of the training batch size
	TaskScore             // Score on batches of records
)

// String returns "training" or "scoring".
func (t Task) String() string {
	if t == TaskScore {
		return "scoring"
	}
	return "training"
}

// KernelTiming is the median time of one kernel set at a task.
type KernelTiming struct {
	Set  string        // the kernel set
	Time time.Duration // median time of one batch
}

// ChooseKernels times each of KernelSets at the task on a model of spec
// (records of batch rows, random weights and inputs; after a warm-up run
// of each set, up to 7 timed samples of at least 2 ms per set, taken in
// turn, none begun after 250 ms) and switches to the fastest median. It
// returns that set and every set's median, the sets in KernelSets order;
// with one set it returns at once. It takes some tens of milliseconds on
// small models. Calls are serialized within the process. The kernels in
// use are left unchanged on error.
func ChooseKernels(spec Spec, batch int, task Task) (string, []KernelTiming, error) {
	sets := KernelSets()
	if len(sets) == 1 {
		return sets[0], []KernelTiming{{Set: sets[0]}}, nil
	}
	if batch < 1 {
		return "", nil, fmt.Errorf("ae: ChooseKernels: batch %d", batch)
	}
	m, err := New(spec)
	if err != nil {
		return "", nil, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m.Init(rng)
	x := make([]float64, batch*spec.Input)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	grad := make([]float64, m.NumParams())
	scores := make([]float64, batch)
	run := func() {
		if task == TaskTrain {
			clear(grad)
			m.Gradient(grad, x, rng)
			return
		}
		m.Score(scores, x)
	}
	// One choice at a time in a process: the level is the process's, and
	// two choices timing at once would time each other's sets.
	choosing.Lock()
	defer choosing.Unlock()
	prev := level.Load()
	defer func() { level.Store(prev) }() // until a choice is made
	// Round-robin: sample s of every set, then sample s+1, so that a burst
	// of other work on the machine slows every set alike. A model whose
	// calls are slow gets fewer samples: at least one per set, and none
	// begun after kernelBudget.
	start := time.Now()
	samples := make([][]time.Duration, len(sets))
	for i := range sets {
		level.Store(int32(i))
		run() // warm-up
	}
	for s := 0; s < kernelSamples && (s == 0 || time.Since(start) < kernelBudget); s++ {
		for i := range sets {
			level.Store(int32(i))
			samples[i] = append(samples[i], timeRun(run))
		}
	}
	timings := make([]KernelTiming, len(sets))
	best := 0
	for i, set := range sets {
		slices.Sort(samples[i])
		timings[i] = KernelTiming{Set: set, Time: samples[i][len(samples[i])/2]}
		if timings[i].Time < timings[best].Time {
			best = i
		}
	}
	prev = int32(best)
	return sets[best], timings, nil
}

// choosing serializes ChooseKernels and UseKernels.
var choosing sync.Mutex

// kernelSamples is how many timed samples ChooseKernels takes per set at
// most, and kernelBudget the time after which it begins no more.
const (
	kernelSamples = 7
	kernelBudget  = 250 * time.Millisecond
)

// timeRun returns the mean time of fn over as many calls as take at least
// 2 ms.
func timeRun(fn func()) time.Duration {
	n, start := 0, time.Now()
	var el time.Duration
	for el < 2*time.Millisecond {
		fn()
		n++
		el = time.Since(start)
	}
	return el / time.Duration(n)
}
