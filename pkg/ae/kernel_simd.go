//go:build goexperiment.simd && amd64

package ae

import (
	"simd/archsimd"
	"unsafe"
)

// Each kernel ends with VZEROUPPER (archsimd.ClearAVXUpperBits): without
// it, the scalar SSE code that follows (math.Exp, math.Tanh) pays for false
// dependencies on the upper register bits, which tripled the cost of tanh
// layers here.
//
// This file holds AVX2/FMA kernels written with simd/archsimd. They are
// built only with GOEXPERIMENT=simd on amd64 and used only when the CPU has
// AVX2 and FMA; the portable kernels in kernel.go remain the default build
// and the fallback. Each kernel computes the same sums as its portable twin,
// in a different order (fused multiply-adds, vector partial sums), so
// results agree to rounding, not bit for bit.

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

func load4(s []float64) f4     { return archsimd.LoadFloat64x4Slice(s) }
func splat(v float64) f4       { return archsimd.BroadcastFloat64x4(v) }
func hsum(v f4) float64        { var a [4]float64; v.Store(&a); return (a[0] + a[1]) + (a[2] + a[3]) }
func store4(v f4, s []float64) { v.StoreSlice(s) }

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
	o := 0
	for ; o+4 <= out; o += 4 {
		var b0, b1, b2, b3 float64
		if bias != nil {
			b0, b1, b2, b3 = bias[o], bias[o+1], bias[o+2], bias[o+3]
		}
		for c := c0; c < n8; c += 8 {
			a00, a01 := splat(b0), splat(b0)
			a10, a11 := splat(b1), splat(b1)
			a20, a21 := splat(b2), splat(b2)
			a30, a31 := splat(b3), splat(b3)
			sp0 := unsafe.Pointer(&src[c])
			wp0 := unsafe.Pointer(&w[o*in])
			for i := 0; i < in; i++ {
				// Addresses from the base each time: a pointer never
				// steps past the end of its allocation.
				sp := unsafe.Add(sp0, i*n*8)
				wp := unsafe.Add(wp0, i*8)
				v0 := archsimd.LoadFloat64x4((*[4]float64)(sp))
				v1 := archsimd.LoadFloat64x4((*[4]float64)(unsafe.Add(sp, 32)))
				x := splat(*(*float64)(wp))
				a00 = x.MulAdd(v0, a00)
				a01 = x.MulAdd(v1, a01)
				x = splat(*(*float64)(unsafe.Add(wp, in*8)))
				a10 = x.MulAdd(v0, a10)
				a11 = x.MulAdd(v1, a11)
				x = splat(*(*float64)(unsafe.Add(wp, in*16)))
				a20 = x.MulAdd(v0, a20)
				a21 = x.MulAdd(v1, a21)
				x = splat(*(*float64)(unsafe.Add(wp, in*24)))
				a30 = x.MulAdd(v0, a30)
				a31 = x.MulAdd(v1, a31)
			}
			store4(a00, dst[o*n+c:])
			store4(a01, dst[o*n+c+4:])
			store4(a10, dst[(o+1)*n+c:])
			store4(a11, dst[(o+1)*n+c+4:])
			store4(a20, dst[(o+2)*n+c:])
			store4(a21, dst[(o+2)*n+c+4:])
			store4(a30, dst[(o+3)*n+c:])
			store4(a31, dst[(o+3)*n+c+4:])
		}
		for r := o; r < o+4; r++ {
			affineTail(dst, w, src, bias, r, in, n, n8)
		}
	}
	for ; o < out; o++ {
		var b float64
		if bias != nil {
			b = bias[o]
		}
		wr := w[o*in : o*in+in]
		for c := c0; c < n8; c += 8 {
			a0, a1 := splat(b), splat(b)
			for i, wv := range wr {
				s := src[i*n+c : i*n+c+8]
				x := splat(wv)
				a0, a1 = x.MulAdd(load4(s), a0), x.MulAdd(load4(s[4:]), a1)
			}
			store4(a0, dst[o*n+c:])
			store4(a1, dst[o*n+c+4:])
		}
		affineTail(dst, w, src, bias, o, in, n, n8)
	}
	archsimd.ClearAVXUpperBits()
}

// affineTail computes columns from..n-1 of row o of affine's result.
func affineTail(dst, w, src, bias []float64, o, in, n, from int) {
	for c := from; c < n; c++ {
		var s float64
		if bias != nil {
			s = bias[o]
		}
		for i := 0; i < in; i++ {
			s += w[o*in+i] * src[i*n+c]
		}
		dst[o*n+c] = s
	}
}

func gradW(gw, delta, src []float64, out, in, n int) {
	if level.Load() < levelAVX2 || n < 4 {
		gradWGeneric(gw, delta, src, out, in, n)
		return
	}
	n4 := n &^ 3
	o := 0
	for ; o+2 <= out; o += 2 {
		d0 := delta[o*n : o*n+n]
		d1 := delta[(o+1)*n : (o+1)*n+n]
		i := 0
		for ; i+4 <= in; i += 4 {
			s0 := src[i*n : i*n+n]
			s1 := src[(i+1)*n : (i+1)*n+n]
			s2 := src[(i+2)*n : (i+2)*n+n]
			s3 := src[(i+3)*n : (i+3)*n+n]
			var a00, a01, a02, a03, a10, a11, a12, a13 f4
			for c := 0; c < n4; c += 4 {
				x0, x1 := load4(d0[c:]), load4(d1[c:])
				v := load4(s0[c:])
				a00, a10 = x0.MulAdd(v, a00), x1.MulAdd(v, a10)
				v = load4(s1[c:])
				a01, a11 = x0.MulAdd(v, a01), x1.MulAdd(v, a11)
				v = load4(s2[c:])
				a02, a12 = x0.MulAdd(v, a02), x1.MulAdd(v, a12)
				v = load4(s3[c:])
				a03, a13 = x0.MulAdd(v, a03), x1.MulAdd(v, a13)
			}
			r0 := [4]float64{hsum(a00), hsum(a01), hsum(a02), hsum(a03)}
			r1 := [4]float64{hsum(a10), hsum(a11), hsum(a12), hsum(a13)}
			for c := n4; c < n; c++ {
				for q, s := range [4][]float64{s0, s1, s2, s3} {
					r0[q] += d0[c] * s[c]
					r1[q] += d1[c] * s[c]
				}
			}
			for q := 0; q < 4; q++ {
				gw[o*in+i+q] += r0[q]
				gw[(o+1)*in+i+q] += r1[q]
			}
		}
		for ; i < in; i++ {
			gw[o*in+i] += dot(d0, src[i*n:i*n+n], n4)
			gw[(o+1)*in+i] += dot(d1, src[i*n:i*n+n], n4)
		}
	}
	for ; o < out; o++ {
		d := delta[o*n : o*n+n]
		for i := 0; i < in; i++ {
			gw[o*in+i] += dot(d, src[i*n:i*n+n], n4)
		}
	}
	archsimd.ClearAVXUpperBits()
}

// dot returns the dot product of a and b (same length), vectorized up to n4.
func dot(a, b []float64, n4 int) float64 {
	var acc f4
	for c := 0; c < n4; c += 4 {
		acc = load4(a[c:]).MulAdd(load4(b[c:]), acc)
	}
	s := hsum(acc)
	for c := n4; c < len(a); c++ {
		s += a[c] * b[c]
	}
	return s
}

func sqErrColumns(dst, a, b []float64, rows, n int) {
	if level.Load() < levelAVX2 || n < 8 {
		sqErrColumnsGeneric(dst, a, b, rows, n)
		return
	}
	n8 := n &^ 7
	for c := 0; c < n8; c += 8 {
		var s0, s1 f4
		for r := 0; r < rows; r++ {
			ar, br := a[r*n+c:r*n+c+8], b[r*n+c:r*n+c+8]
			d0 := load4(ar).Sub(load4(br))
			d1 := load4(ar[4:]).Sub(load4(br[4:]))
			s0, s1 = d0.MulAdd(d0, s0), d1.MulAdd(d1, s1)
		}
		store4(s0, dst[c:])
		store4(s1, dst[c+4:])
	}
	for c := n8; c < n; c++ {
		var s float64
		for r := 0; r < rows; r++ {
			d := a[r*n+c] - b[r*n+c]
			s += d * d
		}
		dst[c] = s
	}
	archsimd.ClearAVXUpperBits()
}

func reluInPlace(dst, src []float64) {
	if level.Load() < levelAVX2 {
		reluGeneric(dst, src)
		return
	}
	n4 := len(src) &^ 3
	var zero f4
	for i := 0; i < n4; i += 4 {
		store4(load4(src[i:]).Max(zero), dst[i:])
	}
	reluGeneric(dst[n4:], src[n4:])
	archsimd.ClearAVXUpperBits()
}

func reluMask(delta, out []float64) {
	if level.Load() < levelAVX2 {
		reluMaskGeneric(delta, out)
		return
	}
	n4 := len(delta) &^ 3
	var zero f4
	for i := 0; i < n4; i += 4 {
		store4(load4(delta[i:]).Masked(load4(out[i:]).Greater(zero)), delta[i:])
	}
	reluMaskGeneric(delta[n4:], out[n4:len(delta)])
	archsimd.ClearAVXUpperBits()
}

// affine512 computes columns [0, n16) of affine with 8-wide vectors, four
// output rows by sixteen columns at a time.
func affine512(dst, w, src, bias []float64, out, in, n, n16 int) {
	type f8 = archsimd.Float64x8
	sp8 := func(v float64) f8 { return archsimd.BroadcastFloat64x8(v) }
	ld := func(p unsafe.Pointer) f8 { return archsimd.LoadFloat64x8((*[8]float64)(p)) }
	st := func(v f8, s []float64) { v.StoreSlice(s) }
	o := 0
	for ; o+4 <= out; o += 4 {
		var b0, b1, b2, b3 float64
		if bias != nil {
			b0, b1, b2, b3 = bias[o], bias[o+1], bias[o+2], bias[o+3]
		}
		for c := 0; c < n16; c += 16 {
			a00, a01 := sp8(b0), sp8(b0)
			a10, a11 := sp8(b1), sp8(b1)
			a20, a21 := sp8(b2), sp8(b2)
			a30, a31 := sp8(b3), sp8(b3)
			sp0 := unsafe.Pointer(&src[c])
			wp0 := unsafe.Pointer(&w[o*in])
			for i := 0; i < in; i++ {
				// Addresses from the base each time: a pointer never
				// steps past the end of its allocation.
				sp := unsafe.Add(sp0, i*n*8)
				wp := unsafe.Add(wp0, i*8)
				v0 := ld(sp)
				v1 := ld(unsafe.Add(sp, 64))
				x := sp8(*(*float64)(wp))
				a00 = x.MulAdd(v0, a00)
				a01 = x.MulAdd(v1, a01)
				x = sp8(*(*float64)(unsafe.Add(wp, in*8)))
				a10 = x.MulAdd(v0, a10)
				a11 = x.MulAdd(v1, a11)
				x = sp8(*(*float64)(unsafe.Add(wp, in*16)))
				a20 = x.MulAdd(v0, a20)
				a21 = x.MulAdd(v1, a21)
				x = sp8(*(*float64)(unsafe.Add(wp, in*24)))
				a30 = x.MulAdd(v0, a30)
				a31 = x.MulAdd(v1, a31)
			}
			st(a00, dst[o*n+c:])
			st(a01, dst[o*n+c+8:])
			st(a10, dst[(o+1)*n+c:])
			st(a11, dst[(o+1)*n+c+8:])
			st(a20, dst[(o+2)*n+c:])
			st(a21, dst[(o+2)*n+c+8:])
			st(a30, dst[(o+3)*n+c:])
			st(a31, dst[(o+3)*n+c+8:])
		}
	}
	for ; o < out; o++ {
		var b float64
		if bias != nil {
			b = bias[o]
		}
		for c := 0; c < n16; c += 16 {
			a0, a1 := sp8(b), sp8(b)
			sp0 := unsafe.Pointer(&src[c])
			wp0 := unsafe.Pointer(&w[o*in])
			for i := 0; i < in; i++ {
				// Addresses from the base each time: a pointer never
				// steps past the end of its allocation.
				sp := unsafe.Add(sp0, i*n*8)
				wp := unsafe.Add(wp0, i*8)
				x := sp8(*(*float64)(wp))
				a0 = x.MulAdd(ld(sp), a0)
				a1 = x.MulAdd(ld(unsafe.Add(sp, 64)), a1)
			}
			st(a0, dst[o*n+c:])
			st(a1, dst[o*n+c+8:])
		}
	}
}

func rowSums(dst, m []float64, rows, n int) {
	if level.Load() < levelAVX2 || n < 8 {
		rowSumsGeneric(dst, m, rows, n)
		return
	}
	n8 := n &^ 7
	for r := 0; r < rows; r++ {
		row := m[r*n : r*n+n]
		var a0, a1 f4
		for c := 0; c < n8; c += 8 {
			a0 = a0.Add(load4(row[c:]))
			a1 = a1.Add(load4(row[c+4:]))
		}
		s := hsum(a0.Add(a1))
		for _, v := range row[n8:] {
			s += v
		}
		dst[r] += s
	}
	archsimd.ClearAVXUpperBits()
}

func sqErrGrad(delta, xhat, x []float64, scale float64) float64 {
	n := len(xhat)
	if level.Load() < levelAVX2 || n < 4 {
		return sqErrGradGeneric(delta, xhat, x, scale)
	}
	x = x[:n]
	delta = delta[:n]
	n4 := n &^ 3
	sc := splat(scale)
	var acc f4
	for i := 0; i < n4; i += 4 {
		d := load4(xhat[i:]).Sub(load4(x[i:]))
		acc = d.MulAdd(d, acc)
		store4(d.Mul(sc), delta[i:])
	}
	loss := hsum(acc) + sqErrGradGeneric(delta[n4:], xhat[n4:], x[n4:], scale)
	archsimd.ClearAVXUpperBits()
	return loss
}

func adamUpdate(params, grad, m, v []float64, b1, b2, lr, c1, c2, eps float64) {
	n := len(params)
	if level.Load() < levelAVX2 || n < 4 {
		adamUpdateGeneric(params, grad, m, v, b1, b2, lr, c1, c2, eps)
		return
	}
	grad, m, v = grad[:n], m[:n], v[:n]
	n4 := n &^ 3
	vb1, vb1c, vb2, vb2c := splat(b1), splat(1-b1), splat(b2), splat(1-b2)
	vlr, vc1, vc2, veps := splat(lr), splat(c1), splat(c2), splat(eps)
	for i := 0; i < n4; i += 4 {
		g := load4(grad[i:])
		mi := vb1.Mul(load4(m[i:])).Add(vb1c.Mul(g))
		vi := vb2.Mul(load4(v[i:])).Add(vb2c.Mul(g.Mul(g)))
		store4(mi, m[i:])
		store4(vi, v[i:])
		step := vlr.Mul(mi.Mul(vc1)).Div(vi.Mul(vc2).Sqrt().Add(veps))
		store4(load4(params[i:]).Sub(step), params[i:])
	}
	adamUpdateGeneric(params[n4:], grad[n4:], m[n4:], v[n4:], b1, b2, lr, c1, c2, eps)
	archsimd.ClearAVXUpperBits()
}
