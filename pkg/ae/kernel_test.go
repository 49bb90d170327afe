package ae

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestKernelsMatchReference checks this build's kernels (the AVX2 ones under
// GOEXPERIMENT=simd, else the portable ones) against plain triple loops, on
// shapes that exercise every vector tail.
func TestKernelsMatchReference(t *testing.T) {
	t.Logf("kernels: %s", kernelName())
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = rng.NormFloat64()
		}
		return s
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-12*(1+math.Abs(b)) }
	for _, out := range []int{1, 3, 4, 5, 9} {
		for _, in := range []int{1, 2, 4, 7, 30} {
			for _, n := range []int{1, 3, 4, 7, 8, 9, 17, 256} {
				name := fmt.Sprintf("out=%d/in=%d/n=%d", out, in, n)
				w, src, bias := fill(out*in), fill(in*n), fill(out)
				dst := fill(out * n)
				affine(dst, w, src, bias, out, in, n)
				for o := 0; o < out; o++ {
					for c := 0; c < n; c++ {
						want := bias[o]
						for i := 0; i < in; i++ {
							want += w[o*in+i] * src[i*n+c]
						}
						if !near(dst[o*n+c], want) {
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
						want := g0[o*in+i]
						for c := 0; c < n; c++ {
							want += delta[o*n+c] * src[i*n+c]
						}
						if !near(gw[o*in+i], want) {
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
					if !near(se[c], want) {
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
