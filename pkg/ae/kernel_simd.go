//go:build goexperiment.simd && amd64

package ae

import "simd/archsimd"

// This file holds AVX2/FMA kernels written with simd/archsimd. They are
// built only with GOEXPERIMENT=simd on amd64 and used only when the CPU has
// AVX2 and FMA; the portable kernels in kernel.go remain the default build
// and the fallback. Each kernel computes the same sums as its portable twin,
// in a different order (fused multiply-adds, vector partial sums), so
// results agree to rounding, not bit for bit.
//
// No scalar floating-point code runs inside a kernel while it holds
// vectors: horizontal sums stay in registers (hsum4), ragged tails use
// masked loads and stores (LoadFloat64x4SlicePart, StoreSlicePart), and
// each kernel ends with VZEROUPPER (archsimd.ClearAVXUpperBits) before any
// scalar code. Go compiles scalar float64 arithmetic to legacy SSE
// instructions, and on an AMD Zen 3 (EPYC, family 25 model 1) one legacy
// SSE instruction in a loop while the upper halves of the YMM registers are
// dirty made that loop 46 times slower (0.28 against 12.7 GFLOP/s in the
// same run); the kernels of the first SIMD build, which reloaded spilled
// scalars and summed their tails in scalar code, ran 4 to 7 times slower
// than the portable build there. The same code cost little on a Zen 5.

// cpuLevel is the best kernel level this CPU runs: AVX2 needs FMA too,
// AVX-512 needs AVX2.
var cpuLevel = func() int32 {
	switch {
	case archsimd.X86.AVX2() && archsimd.X86.FMA() && archsimd.X86.AVX512():
		return levelAVX512
	case archsimd.X86.AVX2() && archsimd.X86.FMA():
		return levelAVX2
	}
	return levelPortable
}()

// The widest level the CPU runs is the default.
func init() { level.Store(cpuLevel) }

const simdBuild = true

type f4 = archsimd.Float64x4

func splat(v float64) f4 { return archsimd.BroadcastFloat64x4(v) }

// part loads up to 4 elements of s, zero past its end.
func part(s []float64) f4 { return archsimd.LoadFloat64x4SlicePart(s) }

// hsum4 returns the horizontal sums of a, b, c and d as one vector,
// each summed (x0+x1)+(x2+x3), without leaving the vector registers.
func hsum4(a, b, c, d f4) f4 {
	ab := a.AddPairsGrouped(b) // a0+a1, b0+b1, a2+a3, b2+b3
	cd := c.AddPairsGrouped(d)
	return ab.SetHi(cd.GetLo()).Add(cd.SetLo(ab.GetHi()))
}

// affineAVX2 computes columns [0, n8) of affine, with dst and src
// pointing at the first of them (affine_amd64.s). n8 is a positive multiple
// of 8, out and in are positive, and the caller has checked the lengths.
// It is written in assembly because the compiler's code for the same loop
// in archsimd spilled accumulators and copied a register before every
// VFMADD213PD (about 55 instructions per 8 FMAs, against 17 here), and
// the forward pass is most of a scorer's model time.
//
//go:noescape
func affineAVX2(dst, w, src, bias *float64, out, in, n, n8 int)

// addPart adds the first len(s) (at most 4) elements of v to s.
func addPart(v f4, s []float64) { part(s).Add(v).StoreSlicePart(s) }

func affine(dst, w, src, bias []float64, out, in, n int) {
	lv := level.Load()
	if lv < levelAVX2 || n < 8 {
		affineGeneric(dst, w, src, bias, out, in, n)
		return
	}
	_ = dst[out*n-1]
	_ = src[in*n-1]
	_ = w[out*in-1]
	n8 := n &^ 7
	c0 := 0
	if lv >= levelAVX512 {
		c0 = n &^ 15
		affine512(dst, w, src, bias, out, in, n, c0)
	}
	if c0 < n8 {
		var b *float64
		if bias != nil {
			_ = bias[out-1]
			b = &bias[0]
		}
		affineAVX2(&dst[c0], &w[0], &src[c0], b, out, in, n, n8-c0)
	}
	if n8 < n {
		for o := 0; o < out; o++ {
			affineTail(dst, w, src, bias, o, in, n, n8)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// affineTail computes columns from..n-1 (fewer than 8) of row o of
// affine's result, four at a time, the last four or fewer with masked loads
// and stores.
func affineTail(dst, w, src, bias []float64, o, in, n, from int) {
	for c := from; c < n; c += 4 {
		var a f4
		if bias != nil {
			a = splat(bias[o])
		}
		for i := 0; i < in; i++ {
			a = splat(w[o*in+i]).MulAdd(part(src[i*n+c:i*n+n]), a)
		}
		a.StoreSlicePart(dst[o*n+c : o*n+n])
	}
}

// gradW adds delta (out x n) times src (in x n) transposed to gw (out x
// in): two rows of delta against four of src at a time. An odd last row
// of delta, and the rows of src past the last, are stood in for by the last
// one: computed, and not kept.
func gradW(gw, delta, src []float64, out, in, n int) {
	if level.Load() < levelAVX2 || n < 4 {
		gradWGeneric(gw, delta, src, out, in, n)
		return
	}
	row := func(m []float64, r, last int) []float64 { r = min(r, last); return m[r*n : r*n+n] }
	for o := 0; o < out; o += 2 {
		d0, d1 := row(delta, o, out-1), row(delta, o+1, out-1)
		for i := 0; i < in; i += 4 {
			s0, s1, s2, s3 := row(src, i, in-1), row(src, i+1, in-1), row(src, i+2, in-1), row(src, i+3, in-1)
			var a00, a01, a02, a03, a10, a11, a12, a13 f4
			for c := 0; c < n; c += 4 {
				x0, x1 := part(d0[c:]), part(d1[c:])
				v := part(s0[c:])
				a00, a10 = x0.MulAdd(v, a00), x1.MulAdd(v, a10)
				v = part(s1[c:])
				a01, a11 = x0.MulAdd(v, a01), x1.MulAdd(v, a11)
				v = part(s2[c:])
				a02, a12 = x0.MulAdd(v, a02), x1.MulAdd(v, a12)
				v = part(s3[c:])
				a03, a13 = x0.MulAdd(v, a03), x1.MulAdd(v, a13)
			}
			addPart(hsum4(a00, a01, a02, a03), gw[o*in+i:o*in+in])
			if o+1 < out {
				addPart(hsum4(a10, a11, a12, a13), gw[(o+1)*in+i:(o+1)*in+in])
			}
		}
	}
	archsimd.ClearAVXUpperBits()
}

func sqErrColumns(dst, a, b []float64, rows, n int) {
	if level.Load() < levelAVX2 || n < 4 {
		sqErrColumnsGeneric(dst, a, b, rows, n)
		return
	}
	for c := 0; c < n; c += 8 {
		h := min(c+4, n)
		var s0, s1 f4
		for r := 0; r < rows; r++ {
			ar, br := a[r*n:r*n+n], b[r*n:r*n+n]
			d0 := part(ar[c:]).Sub(part(br[c:]))
			d1 := part(ar[h:]).Sub(part(br[h:]))
			s0, s1 = d0.MulAdd(d0, s0), d1.MulAdd(d1, s1)
		}
		s0.StoreSlicePart(dst[c:n])
		s1.StoreSlicePart(dst[h:n])
	}
	archsimd.ClearAVXUpperBits()
}

func reluInPlace(dst, src []float64) {
	if level.Load() < levelAVX2 {
		reluGeneric(dst, src)
		return
	}
	dst = dst[:len(src)]
	var zero f4
	for i := 0; i < len(src); i += 4 {
		part(src[i:]).Max(zero).StoreSlicePart(dst[i:])
	}
	archsimd.ClearAVXUpperBits()
}

func reluMask(delta, out []float64) {
	if level.Load() < levelAVX2 {
		reluMaskGeneric(delta, out)
		return
	}
	out = out[:len(delta)]
	var zero f4
	for i := 0; i < len(delta); i += 4 {
		part(delta[i:]).Masked(part(out[i:]).Greater(zero)).StoreSlicePart(delta[i:])
	}
	archsimd.ClearAVXUpperBits()
}

// affine512 computes columns [0, n16) of affine with 8-wide vectors, four
// output rows by sixteen columns at a time, as affine does with 4-wide ones.
func affine512(dst, w, src, bias []float64, out, in, n, n16 int) {
	type f8 = archsimd.Float64x8
	sp8 := archsimd.BroadcastFloat64x8
	ld := archsimd.LoadFloat64x8Slice
	for c := 0; c < n16; c += 16 {
		for o := 0; o < out; o += 4 {
			o1, o2, o3 := min(o+1, out-1), min(o+2, out-1), min(o+3, out-1)
			var a00, a01, a10, a11, a20, a21, a30, a31 f8
			if bias != nil {
				a00, a10, a20, a30 = sp8(bias[o]), sp8(bias[o1]), sp8(bias[o2]), sp8(bias[o3])
				a01, a11, a21, a31 = a00, a10, a20, a30
			}
			w0, w1, w2, w3 := w[o*in:o*in+in], w[o1*in:o1*in+in], w[o2*in:o2*in+in], w[o3*in:o3*in+in]
			w1, w2, w3 = w1[:len(w0)], w2[:len(w0)], w3[:len(w0)]
			off := c
			for i := range w0 {
				s := src[off : off+16]
				off += n
				v0, v1 := ld(s), ld(s[8:])
				x := sp8(w0[i])
				a00, a01 = x.MulAdd(v0, a00), x.MulAdd(v1, a01)
				x = sp8(w1[i])
				a10, a11 = x.MulAdd(v0, a10), x.MulAdd(v1, a11)
				x = sp8(w2[i])
				a20, a21 = x.MulAdd(v0, a20), x.MulAdd(v1, a21)
				x = sp8(w3[i])
				a30, a31 = x.MulAdd(v0, a30), x.MulAdd(v1, a31)
			}
			a00.StoreSlice(dst[o*n+c:])
			a01.StoreSlice(dst[o*n+c+8:])
			if o+1 < out {
				a10.StoreSlice(dst[o1*n+c:])
				a11.StoreSlice(dst[o1*n+c+8:])
			}
			if o+2 < out {
				a20.StoreSlice(dst[o2*n+c:])
				a21.StoreSlice(dst[o2*n+c+8:])
			}
			if o+3 < out {
				a30.StoreSlice(dst[o3*n+c:])
				a31.StoreSlice(dst[o3*n+c+8:])
			}
		}
	}
}

// rowSums adds the sum of each row of m (rows x n) to dst, four rows at a
// time; rows past the last are stood in for by the last, and not kept.
func rowSums(dst, m []float64, rows, n int) {
	if level.Load() < levelAVX2 || n < 8 {
		rowSumsGeneric(dst, m, rows, n)
		return
	}
	row := func(r int) []float64 { r = min(r, rows-1); return m[r*n : r*n+n] }
	for r := 0; r < rows; r += 4 {
		m0, m1, m2, m3 := row(r), row(r+1), row(r+2), row(r+3)
		var a0, a1, a2, a3 f4
		for c := 0; c < n; c += 4 {
			a0, a1, a2, a3 = a0.Add(part(m0[c:])), a1.Add(part(m1[c:])), a2.Add(part(m2[c:])), a3.Add(part(m3[c:]))
		}
		addPart(hsum4(a0, a1, a2, a3), dst[r:rows])
	}
	archsimd.ClearAVXUpperBits()
}

func sqErrGrad(delta, xhat, x []float64, scale float64) float64 {
	n := len(xhat)
	if level.Load() < levelAVX2 || n < 4 {
		return sqErrGradGeneric(delta, xhat, x, scale)
	}
	x, delta = x[:n], delta[:n]
	sc := splat(scale)
	var acc f4
	for i := 0; i < n; i += 4 {
		d := part(xhat[i:]).Sub(part(x[i:]))
		acc = d.MulAdd(d, acc)
		d.Mul(sc).StoreSlicePart(delta[i:])
	}
	var t [4]float64
	acc.Store(&t)
	archsimd.ClearAVXUpperBits()
	return (t[0] + t[1]) + (t[2] + t[3])
}

func adamUpdate(params, grad, m, v []float64, b1, b2, lr, c1, c2, eps float64) {
	n := len(params)
	if level.Load() < levelAVX2 || n < 4 {
		adamUpdateGeneric(params, grad, m, v, b1, b2, lr, c1, c2, eps)
		return
	}
	grad, m, v = grad[:n], m[:n], v[:n]
	vb1, vb1c, vb2, vb2c := splat(b1), splat(1-b1), splat(b2), splat(1-b2)
	vlr, vc1, vc2, veps := splat(lr), splat(c1), splat(c2), splat(eps)
	for i := 0; i < n; i += 4 {
		g := part(grad[i:])
		mi := vb1.Mul(part(m[i:])).Add(vb1c.Mul(g))
		vi := vb2.Mul(part(v[i:])).Add(vb2c.Mul(g.Mul(g)))
		mi.StoreSlicePart(m[i:])
		vi.StoreSlicePart(v[i:])
		step := vlr.Mul(mi.Mul(vc1)).Div(vi.Mul(vc2).Sqrt().Add(veps))
		part(params[i:]).Sub(step).StoreSlicePart(params[i:])
	}
	archsimd.ClearAVXUpperBits()
}
