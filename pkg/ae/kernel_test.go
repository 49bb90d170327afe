package ae

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestKernelsMatchReference checks each kernel set this build and CPU have
// (KernelSets: the portable one, and the AVX2 and AVX-512 ones under
// GOEXPERIMENT=simd where the CPU has them) against plain loops, on shapes
// that exercise every vector tail and on random ones of widths 1 to 300.
func TestKernelsMatchReference(t *testing.T) {
	defer func() {
		if err := UseKernels(KernelSets()[len(KernelSets())-1]); err != nil {
			t.Error(err)
		}
	}()
	var shapes [][3]int
	for _, out := range []int{1, 3, 4, 5, 9} {
		for _, in := range []int{1, 2, 4, 7, 30} {
			for _, n := range []int{1, 3, 4, 7, 8, 9, 17, 256} {
				shapes = append(shapes, [3]int{out, in, n})
			}
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 12 {
		shapes = append(shapes, [3]int{1 + r.IntN(300), 1 + r.IntN(300), 1 + r.IntN(40)})
	}
	for _, set := range KernelSets() {
		if err := UseKernels(set); err != nil {
			t.Fatal(err)
		}
		t.Run(set, func(t *testing.T) {
			t.Logf("kernels: %s", Kernels())
			checkKernels(t, shapes)
		})
	}
	if err := UseKernels("avx1024"); !errors.Is(err, ErrUnknownKernels) {
		t.Errorf("UseKernels of an unknown set: %v", err)
	}
}

// checkKernels compares the kernels in use with plain loops on shapes
// (out, in, n); sums agree to rounding, relative to the sum of the terms'
// magnitudes.
func checkKernels(t *testing.T, shapes [][3]int) {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = rng.NormFloat64()
		}
		return s
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*(1+math.Abs(b)) }
	within := func(a, b, mag float64, terms int) bool { return math.Abs(a-b) <= 1e-15*float64(terms+4)*(1+mag) }
	for _, sh := range shapes {
		out, in, n := sh[0], sh[1], sh[2]
		{
			{
				name := fmt.Sprintf("out=%d/in=%d/n=%d", out, in, n)
				w, src, bias := fill(out*in), fill(in*n), fill(out)
				// backpropagation calls affine with no bias: half the shapes
				withBias := (out+in+n)%2 == 0
				dst := fill(out * n)
				if withBias {
					affine(dst, w, src, bias, out, in, n)
				} else {
					affine(dst, w, src, nil, out, in, n)
				}
				for o := 0; o < out; o++ {
					for c := 0; c < n; c++ {
						var want, mag float64
						if withBias {
							want, mag = bias[o], math.Abs(bias[o])
						}
						for i := 0; i < in; i++ {
							want += w[o*in+i] * src[i*n+c]
							mag += math.Abs(w[o*in+i] * src[i*n+c])
						}
						if !within(dst[o*n+c], want, mag, in) {
							t.Fatalf("%s: affine[%d,%d] = %v, want %v", name, o, c, dst[o*n+c], want)
						}
					}
				}
				delta := fill(out * n)
				gw := fill(out * in)
				g0 := append([]float64(nil), gw...)
				gradW(gw, delta, src, out, in, n)
				for o := 0; o < out; o++ {
					for i := 0; i < in; i++ {
						want, mag := g0[o*in+i], math.Abs(g0[o*in+i])
						for c := 0; c < n; c++ {
							want += delta[o*n+c] * src[i*n+c]
							mag += math.Abs(delta[o*n+c] * src[i*n+c])
						}
						if !within(gw[o*in+i], want, mag, n) {
							t.Fatalf("%s: gradW[%d,%d] = %v, want %v", name, o, i, gw[o*in+i], want)
						}
					}
				}
				a, b := fill(out*n), fill(out*n)
				se := fill(n)
				sqErrColumns(se, a, b, out, n)
				for c := 0; c < n; c++ {
					var want float64
					for r := 0; r < out; r++ {
						d := a[r*n+c] - b[r*n+c]
						want += d * d
					}
					if !within(se[c], want, want, out) {
						t.Fatalf("%s: sqErrColumns[%d] = %v, want %v", name, c, se[c], want)
					}
				}
			}
		}
	}
	for _, n := range []int{1, 3, 4, 5, 8, 11, 17, 256} {
		m := fill(3 * n)
		rs := []float64{1, 2, 3}
		rowSums(rs, m, 3, n)
		for r := 0; r < 3; r++ {
			want := float64(r + 1)
			for _, v := range m[r*n : r*n+n] {
				want += v
			}
			if !near(rs[r], want) {
				t.Fatalf("n=%d: rowSums[%d] = %v, want %v", n, r, rs[r], want)
			}
		}
		xh, x := fill(n), fill(n)
		delta := make([]float64, n)
		loss := sqErrGrad(delta, xh, x, 0.5)
		var want float64
		for i := range x {
			d := xh[i] - x[i]
			want += d * d
			if !near(delta[i], 0.5*d) {
				t.Fatalf("n=%d: sqErrGrad delta[%d] = %v, want %v", n, i, delta[i], 0.5*d)
			}
		}
		if !near(loss, want) {
			t.Fatalf("n=%d: sqErrGrad loss %v, want %v", n, loss, want)
		}
		p1, g, m1, v1 := fill(n), fill(n), fill(n), fill(n)
		for i := range v1 {
			v1[i] = math.Abs(v1[i])
		}
		p2, m2, v2 := append([]float64(nil), p1...), append([]float64(nil), m1...), append([]float64(nil), v1...)
		adamUpdate(p1, g, m1, v1, 0.9, 0.999, 0.01, 1.5, 1.2, 1e-8)
		adamUpdateGeneric(p2, g, m2, v2, 0.9, 0.999, 0.01, 1.5, 1.2, 1e-8)
		for i := range p1 {
			if !near(p1[i], p2[i]) || !near(m1[i], m2[i]) || !near(v1[i], v2[i]) {
				t.Fatalf("n=%d: adamUpdate[%d] = (%v %v %v), want (%v %v %v)", n, i, p1[i], m1[i], v1[i], p2[i], m2[i], v2[i])
			}
		}
	}
	for _, n := range []int{1, 4, 5, 11} {
		src, delta := fill(n), fill(n)
		r := make([]float64, n)
		reluInPlace(r, src)
		d := append([]float64(nil), delta...)
		reluMask(d, r)
		for i, v := range src {
			if r[i] != max(v, 0) {
				t.Fatalf("relu(%v) = %v", v, r[i])
			}
			want := delta[i]
			if v <= 0 {
				want = 0
			}
			if d[i] != want {
				t.Fatalf("relu mask at %d: %v, want %v", i, d[i], want)
			}
		}
	}
}

// TestChooseKernels: every set is timed, the fastest is put in use, and an
// unusable batch leaves the kernels as they were.
func TestChooseKernels(t *testing.T) {
	sets := KernelSets()
	defer func() {
		if err := UseKernels(sets[len(sets)-1]); err != nil {
			t.Error(err)
		}
	}()
	spec := Spec{Input: 30, Hidden: []int{16}, Code: 4, Activation: ReLU, Output: Linear}
	for _, task := range []Task{TaskTrain, TaskScore} {
		set, timings, err := ChooseKernels(spec, 256, task)
		if err != nil {
			t.Fatal(err)
		}
		if len(timings) != len(sets) {
			t.Fatalf("task %d: %d timings for sets %v", task, len(timings), sets)
		}
		best := timings[0]
		for i, tm := range timings {
			if tm.Set != sets[i] || (len(sets) > 1 && tm.Time <= 0) {
				t.Fatalf("task %d: timing %d is %+v, sets %v", task, i, tm, sets)
			}
			if tm.Time < best.Time {
				best = tm
			}
		}
		if set != best.Set || !strings.HasPrefix(Kernels(), set) {
			t.Fatalf("task %d: chose %q from %+v; in use: %s", task, set, timings, Kernels())
		}
		t.Logf("task %d: %+v -> %s", task, timings, set)
	}
	if len(sets) > 1 {
		if err := UseKernels(sets[0]); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ChooseKernels(spec, 0, TaskScore); err == nil || !strings.HasPrefix(Kernels(), sets[0]) {
			t.Fatalf("batch 0: err %v, kernels %s (want %s kept)", err, Kernels(), sets[0])
		}
	}
}
