//go:build !(goexperiment.simd && amd64)

package ae

// kernelName names the kernel set this build uses.
func kernelName() string { return "portable" }

func affine(dst, w, src, bias []float64, out, in, n int) {
	affineGeneric(dst, w, src, bias, out, in, n)
}
func gradW(gw, delta, src []float64, out, in, n int) { gradWGeneric(gw, delta, src, out, in, n) }
func sqErrColumns(dst, a, b []float64, rows, n int)  { sqErrColumnsGeneric(dst, a, b, rows, n) }
func reluInPlace(dst, src []float64)                 { reluGeneric(dst, src) }
func reluMask(delta, out []float64)                  { reluMaskGeneric(delta, out) }
