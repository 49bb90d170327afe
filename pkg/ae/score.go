package ae

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// chunk is the number of records scored per forward pass: large enough to
// amortize per-pass work, small enough that the pass stays in cache.
const chunk = 256

// each runs fn over x in chunks of at most chunk records, after a clean
// forward pass of each chunk (no corruption; the variational mean code).
func (m *Model) each(x []float64, op string, fn func(ws *workspace, first, n int)) {
	total := m.rows(x, op)
	p := m.spec.Input
	for first := 0; first < total; first += chunk {
		n := min(chunk, total-first)
		ws := m.prepare(n)
		m.load(ws, x[first*p:], n)
		m.forward(ws, n, false, nil)
		fn(ws, first, n)
	}
}

func (m *Model) checkDst(dst []float64, x []float64, width int, op string) {
	if want := m.rows(x, op) * width; len(dst) != want {
		panic(fmt.Sprintf("ae: %s: destination length %d, want %d", op, len(dst), want))
	}
}

// Reconstruct writes the reconstruction g(f(x)) of each record of x into dst
// (row-major, same shape as x). The variational model decodes the mean code.
func (m *Model) Reconstruct(dst, x []float64) {
	m.checkDst(dst, x, m.spec.Input, "Reconstruct")
	p := m.spec.Input
	m.each(x, "Reconstruct", func(ws *workspace, first, n int) {
		transpose(dst[first*p:(first+n)*p], ws.dec[len(ws.dec)-1][:p*n], p, n)
	})
}

// Score writes into dst the anomaly score of each record of x: its squared
// reconstruction error ||x - x_hat||^2 (for the variational model, of
// decoding the mean code). len(dst) must be the number of records.
func (m *Model) Score(dst, x []float64) {
	m.checkDst(dst, x, 1, "Score")
	p := m.spec.Input
	m.each(x, "Score", func(ws *workspace, first, n int) {
		sqErrColumns(dst[first:first+n], ws.xT[:p*n], ws.dec[len(ws.dec)-1][:p*n], p, n)
	})
}

// ScoreFeatures writes each record's per-feature squared errors
// (x_l - x_hat_l)^2 into features (row-major, same shape as x) and, when
// scores is not nil, their sums into scores. The features explain a score.
func (m *Model) ScoreFeatures(scores, features, x []float64) {
	m.checkDst(features, x, m.spec.Input, "ScoreFeatures")
	if scores != nil {
		m.checkDst(scores, x, 1, "ScoreFeatures")
	}
	p := m.spec.Input
	m.each(x, "ScoreFeatures", func(ws *workspace, first, n int) {
		xt, xh := ws.xT[:p*n], ws.dec[len(ws.dec)-1][:p*n]
		for r := 0; r < n; r++ {
			row := features[(first+r)*p : (first+r+1)*p]
			var s float64
			for l := range row {
				d := xt[l*n+r] - xh[l*n+r]
				row[l] = d * d
				s += d * d
			}
			if scores != nil {
				scores[first+r] = s
			}
		}
	})
}

// Encode writes the code of each record of x into dst (row-major, n x Code):
// the code layer's activation, or the mean mu(x) for the variational model.
func (m *Model) Encode(dst, x []float64) {
	k := m.spec.Code
	m.checkDst(dst, x, k, "Encode")
	m.each(x, "Encode", func(ws *workspace, first, n int) {
		transpose(dst[first*k:(first+n)*k], ws.enc[len(ws.enc)-1][:k*n], k, n)
	})
}

// Decode writes the decoding g(z) of each code of z (row-major, n x Code)
// into dst (n x Input).
func (m *Model) Decode(dst, z []float64) {
	k, p := m.spec.Code, m.spec.Input
	if len(z)%k != 0 {
		panic(fmt.Sprintf("ae: Decode: code length %d is not a multiple of the code width %d", len(z), k))
	}
	total := len(z) / k
	if len(dst) != total*p {
		panic(fmt.Sprintf("ae: Decode: destination length %d, want %d", len(dst), total*p))
	}
	for first := 0; first < total; first += chunk {
		n := min(chunk, total-first)
		ws := m.prepare(n)
		if m.spec.Tied {
			for i, l := range m.enc {
				transpose(ws.tiedT[i], m.params[l.wOff:l.wOff+l.in*l.out], l.out, l.in)
			}
		}
		in := ws.d1[:k*n]
		transpose(in, z[first*k:(first+n)*k], n, k)
		for i, l := range m.dec {
			out := ws.dec[i][:l.out*n]
			affine(out, m.weight(l, ws.tiedT), in, m.params[l.bOff:l.bOff+l.out], l.out, l.in, n)
			l.act.apply(out, out)
			in = out
		}
		transpose(dst[first*p:(first+n)*p], in, p, n)
	}
}

// KL writes into dst (length Code) the mean over the records of x of each
// code dimension's KL divergence from the prior,
// 0.5 (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2). Dimensions the model does not
// use have KL near zero. It panics unless the model is variational.
func (m *Model) KL(dst, x []float64) {
	if m.spec.Variant != Variational {
		panic("ae: KL: model is not variational")
	}
	k := m.spec.Code
	if len(dst) != k {
		panic(fmt.Sprintf("ae: KL: destination length %d, want %d", len(dst), k))
	}
	for j := range dst {
		dst[j] = 0
	}
	total := m.rows(x, "KL")
	m.each(x, "KL", func(ws *workspace, first, n int) {
		mu, lv := ws.enc[len(ws.enc)-1], ws.lv
		for j := 0; j < k; j++ {
			for c := 0; c < n; c++ {
				u, l := mu[j*n+c], lv[j*n+c]
				dst[j] += 0.5 * (u*u + math.Exp(l) - 1 - l)
			}
		}
	})
	for j := range dst {
		dst[j] /= float64(total)
	}
}

// NegELBO writes into dst a one-sample estimate of each record's negative
// ELBO: the reconstruction loss of decoding z = mu + sigma*eps (eps from rng)
// plus Beta times the KL divergence of q(z|x) from the prior. It panics
// unless the model is variational.
func (m *Model) NegELBO(dst, x []float64, rng *rand.Rand) {
	if m.spec.Variant != Variational {
		panic("ae: NegELBO: model is not variational")
	}
	m.checkDst(dst, x, 1, "NegELBO")
	total := m.rows(x, "NegELBO")
	p, k := m.spec.Input, m.spec.Code
	for first := 0; first < total; first += chunk {
		n := min(chunk, total-first)
		ws := m.prepare(n)
		m.load(ws, x[first*p:], n)
		m.forward(ws, n, true, rng)
		out := dst[first : first+n]
		xt, xh := ws.xT[:p*n], ws.dec[len(ws.dec)-1][:p*n]
		if m.spec.Loss == CrossEntropy {
			for c := range out {
				out[c] = 0
			}
			lg := ws.logits[:p*n]
			for i, a := range lg {
				out[i%n] += softplus(a) - xt[i]*a
			}
		} else {
			sqErrColumns(out, xt, xh, p, n)
		}
		mu, lv := ws.enc[len(ws.enc)-1], ws.lv
		for j := 0; j < k; j++ {
			for c := 0; c < n; c++ {
				u, l := mu[j*n+c], lv[j*n+c]
				out[c] += m.spec.Beta * 0.5 * (u*u + math.Exp(l) - 1 - l)
			}
		}
	}
}

// JacobianNorm returns the mean over the records of x of the squared
// Frobenius norm of the encoder's Jacobian ||dz/dx||_F^2 (for the
// variational model, of the mean code): how strongly the code reacts to
// small changes of the input.
func (m *Model) JacobianNorm(x []float64) float64 {
	total := m.rows(x, "JacobianNorm")
	var sum float64
	m.each(x, "JacobianNorm", func(ws *workspace, first, n int) {
		sum += float64(n) * m.jacobian(ws, nil, n, 0)
	})
	return sum / float64(total)
}
