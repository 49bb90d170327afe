package ae

import "math"

// The kernels below work on feature-major batches: a batch of n records of
// width w is a w x n row-major matrix, one row per feature, so that every
// inner loop runs along the batch, which is long and contiguous. Weights are
// out x in row-major. The portable versions live here; kernel_simd.go
// replaces the hot ones when built with GOEXPERIMENT=simd on amd64.

// affine sets dst (out x n) to w (out x in) times src (in x n), plus bias[o]
// on row o when bias is not nil.
func affineGeneric(dst, w, src, bias []float64, out, in, n int) {
	_ = dst[out*n-1]
	_ = src[in*n-1]
	o := 0
	for ; o+4 <= out; o += 4 {
		d0 := dst[o*n : o*n+n]
		d1 := dst[(o+1)*n : (o+1)*n+n]
		d2 := dst[(o+2)*n : (o+2)*n+n]
		d3 := dst[(o+3)*n : (o+3)*n+n]
		var b0, b1, b2, b3 float64
		if bias != nil {
			b0, b1, b2, b3 = bias[o], bias[o+1], bias[o+2], bias[o+3]
		}
		for c := range d0 {
			d0[c], d1[c], d2[c], d3[c] = b0, b1, b2, b3
		}
		w0 := w[o*in : o*in+in]
		w1 := w[(o+1)*in : (o+1)*in+in]
		w2 := w[(o+2)*in : (o+2)*in+in]
		w3 := w[(o+3)*in : (o+3)*in+in]
		for i := 0; i < in; i++ {
			a0, a1, a2, a3 := w0[i], w1[i], w2[i], w3[i]
			s := src[i*n : i*n+n]
			for c, v := range s {
				d0[c] += a0 * v
				d1[c] += a1 * v
				d2[c] += a2 * v
				d3[c] += a3 * v
			}
		}
	}
	for ; o < out; o++ {
		d := dst[o*n : o*n+n]
		var b float64
		if bias != nil {
			b = bias[o]
		}
		for c := range d {
			d[c] = b
		}
		wr := w[o*in : o*in+in]
		for i, a := range wr {
			s := src[i*n : i*n+n]
			for c, v := range s {
				d[c] += a * v
			}
		}
	}
}

// gradW adds delta (out x n) times src (in x n) transposed to gw (out x in).
func gradWGeneric(gw, delta, src []float64, out, in, n int) {
	for o := 0; o < out; o++ {
		d := delta[o*n : o*n+n]
		g := gw[o*in : o*in+in]
		i := 0
		for ; i+4 <= in; i += 4 {
			s0 := src[i*n : i*n+n]
			s1 := src[(i+1)*n : (i+1)*n+n]
			s2 := src[(i+2)*n : (i+2)*n+n]
			s3 := src[(i+3)*n : (i+3)*n+n]
			var a0, a1, a2, a3 float64
			for c, v := range d {
				a0 += v * s0[c]
				a1 += v * s1[c]
				a2 += v * s2[c]
				a3 += v * s3[c]
			}
			g[i] += a0
			g[i+1] += a1
			g[i+2] += a2
			g[i+3] += a3
		}
		for ; i < in; i++ {
			s := src[i*n : i*n+n]
			var a float64
			for c, v := range d {
				a += v * s[c]
			}
			g[i] += a
		}
	}
}

// rowSums adds the sum of each row of m (rows x n) to dst.
func rowSumsGeneric(dst, m []float64, rows, n int) {
	for r := 0; r < rows; r++ {
		var s float64
		for _, v := range m[r*n : r*n+n] {
			s += v
		}
		dst[r] += s
	}
}

// transpose writes the transpose of src (rows x cols) into dst (cols x rows).
// It works in blocks of 8 source rows so that each store fills a cache
// line, which matters for loading batches: rows = records, cols = features.
func transpose(dst, src []float64, rows, cols int) {
	_ = src[rows*cols-1]
	_ = dst[rows*cols-1]
	r := 0
	for ; r+8 <= rows; r += 8 {
		s0 := src[r*cols : (r+1)*cols]
		s1 := src[(r+1)*cols : (r+2)*cols]
		s2 := src[(r+2)*cols : (r+3)*cols]
		s3 := src[(r+3)*cols : (r+4)*cols]
		s4 := src[(r+4)*cols : (r+5)*cols]
		s5 := src[(r+5)*cols : (r+6)*cols]
		s6 := src[(r+6)*cols : (r+7)*cols]
		s7 := src[(r+7)*cols : (r+8)*cols]
		for c := range s0 {
			d := dst[c*rows+r : c*rows+r+8]
			d[0], d[1], d[2], d[3] = s0[c], s1[c], s2[c], s3[c]
			d[4], d[5], d[6], d[7] = s4[c], s5[c], s6[c], s7[c]
		}
	}
	for ; r < rows; r++ {
		row := src[r*cols : r*cols+cols]
		for c, v := range row {
			dst[c*rows+r] = v
		}
	}
}

// addTranspose adds the transpose of src (rows x cols) to dst (cols x rows).
func addTranspose(dst, src []float64, rows, cols int) {
	for r := 0; r < rows; r++ {
		row := src[r*cols : r*cols+cols]
		for c, v := range row {
			dst[c*rows+r] += v
		}
	}
}

// sqErrColumns sets dst[c] to the sum over rows of (a-b)^2 for column c of
// the rows x n matrices a and b.
func sqErrColumnsGeneric(dst, a, b []float64, rows, n int) {
	dst = dst[:n]
	for c := range dst {
		dst[c] = 0
	}
	for r := 0; r < rows; r++ {
		ar := a[r*n : r*n+n]
		br := b[r*n : r*n+n]
		for c, v := range ar {
			d := v - br[c]
			dst[c] += d * d
		}
	}
}

// sqErrGrad sets delta[i] = scale*(xhat[i]-x[i]) and returns the sum of
// (xhat[i]-x[i])^2.
func sqErrGradGeneric(delta, xhat, x []float64, scale float64) float64 {
	x = x[:len(xhat)]
	delta = delta[:len(xhat)]
	var loss float64
	for i, v := range xhat {
		d := v - x[i]
		loss += d * d
		delta[i] = scale * d
	}
	return loss
}

// adamUpdate applies one Adam update with bias-correction factors c1, c2.
func adamUpdateGeneric(params, grad, m, v []float64, b1, b2, lr, c1, c2, eps float64) {
	grad = grad[:len(params)]
	m = m[:len(params)]
	v = v[:len(params)]
	for i, g := range grad {
		mi := b1*m[i] + (1-b1)*g
		vi := b2*v[i] + (1-b2)*g*g
		m[i], v[i] = mi, vi
		params[i] -= lr * (mi * c1) / (math.Sqrt(vi*c2) + eps)
	}
}
