//go:build !(goexperiment.simd && amd64)

package ae

// The portable build has one kernel level.
const (
	cpuLevel  = levelPortable
	simdBuild = false
)

func affine(dst, w, src, bias []float64, out, in, n int) {
	affineGeneric(dst, w, src, bias, out, in, n)
}
func gradW(gw, delta, src []float64, out, in, n int) { gradWGeneric(gw, delta, src, out, in, n) }
func sqErrColumns(dst, a, b []float64, rows, n int)  { sqErrColumnsGeneric(dst, a, b, rows, n) }
func reluInPlace(dst, src []float64)                 { reluGeneric(dst, src) }
func reluMask(delta, out []float64)                  { reluMaskGeneric(delta, out) }

func rowSums(dst, m []float64, rows, n int) { rowSumsGeneric(dst, m, rows, n) }
func sqErrGrad(delta, xhat, x []float64, scale float64) float64 {
	return sqErrGradGeneric(delta, xhat, x, scale)
}
func adamUpdate(params, grad, m, v []float64, b1, b2, lr, c1, c2, eps float64) {
	adamUpdateGeneric(params, grad, m, v, b1, b2, lr, c1, c2, eps)
}
