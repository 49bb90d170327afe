package ae

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// workspace holds the scratch buffers of forward and backward passes, all
// feature-major (width x n). It grows to the largest batch seen.
type workspace struct {
	n       int         // records the buffers hold
	xT      []float64   // clean input, p x n
	xin     []float64   // encoder input (corrupted copy for Denoising), p x n
	enc     [][]float64 // activations of each encoder layer (Variational: last is mu)
	lv, eps []float64   // Variational: log-variance and the standard normal draw, k x n
	z       []float64   // Variational: sampled code, k x n
	dec     [][]float64 // activations of each decoder layer; the last is x_hat
	logits  []float64   // output pre-activation (CrossEntropy), p x n
	d1, d2  []float64   // backward ping-pong, maxWidth x n
	dmu     []float64   // Variational: gradient on mu, k x n
	dlv     []float64   // Variational: gradient on the log-variance, k x n
	tmp     []float64   // maxWidth x n
	inject  [][]float64 // Contractive: gradient on encoder pre-activations from the penalty
	errs    []float64   // per-record errors, n
	order   []int       // Trim: record indices by loss, n
	rhoHat  []float64   // code means used by the last Gradient (k)

	tiedT [][]float64 // per encoder layer: W^T (used as the tied decoder weight)
	wT    [][]float64 // per layer slot: W^T for backpropagating through an untied layer
	gTied [][]float64 // per encoder layer: gradient of the tied decoder weight

	jac jacobianScratch
}

type jacobianScratch struct {
	j, mm [][]float64 // per encoder layer: J_l (w_l x p) and M_l = W_l J_l (w_{l+1} x p)
	g, g2 []float64   // maxWidth x p
}

func grow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

// prepare sizes the workspace for n records.
func (m *Model) prepare(n int) *workspace {
	ws := &m.ws
	if ws.tiedT == nil {
		ws.tiedT = make([][]float64, len(m.enc))
		ws.gTied = make([][]float64, len(m.enc))
		ws.wT = make([][]float64, len(m.enc)+len(m.dec)+1)
		for i, l := range m.enc {
			if m.spec.Tied {
				ws.tiedT[i] = make([]float64, l.in*l.out)
				ws.gTied[i] = make([]float64, l.in*l.out)
			}
			ws.wT[i] = make([]float64, l.in*l.out)
		}
		for i, l := range m.dec {
			ws.wT[len(m.enc)+i] = make([]float64, l.in*l.out)
		}
		ws.wT[len(m.enc)+len(m.dec)] = make([]float64, m.lv.in*m.lv.out)
		ws.enc = make([][]float64, len(m.enc))
		ws.dec = make([][]float64, len(m.dec))
		ws.inject = make([][]float64, len(m.enc))
		ws.rhoHat = make([]float64, m.spec.Code)
	}
	if n <= ws.n {
		return ws
	}
	p, k := m.spec.Input, m.spec.Code
	maxW := p
	for _, h := range m.spec.Hidden {
		maxW = max(maxW, h)
	}
	maxW = max(maxW, k)
	ws.n = n
	ws.xT = grow(ws.xT, p*n)
	ws.xin = grow(ws.xin, p*n)
	for i, l := range m.enc {
		ws.enc[i] = grow(ws.enc[i], l.out*n)
		if m.spec.Variant == Contractive {
			ws.inject[i] = grow(ws.inject[i], l.out*n)
		}
	}
	for i, l := range m.dec {
		ws.dec[i] = grow(ws.dec[i], l.out*n)
	}
	if m.spec.Variant == Variational {
		ws.lv = grow(ws.lv, k*n)
		ws.eps = grow(ws.eps, k*n)
		ws.z = grow(ws.z, k*n)
		ws.dmu = grow(ws.dmu, k*n)
		ws.dlv = grow(ws.dlv, k*n)
		ws.tmp = grow(ws.tmp, maxW*n)
	}
	if m.spec.Loss == CrossEntropy {
		ws.logits = grow(ws.logits, p*n)
	}
	ws.d1 = grow(ws.d1, maxW*n)
	ws.d2 = grow(ws.d2, maxW*n)
	ws.errs = grow(ws.errs, n)
	return ws
}

// load transposes the n records of x (row-major, n x p) into ws.xT.
func (m *Model) load(ws *workspace, x []float64, n int) {
	transpose(ws.xT[:m.spec.Input*n], x[:n*m.spec.Input], n, m.spec.Input)
}

// forward runs the encoder and decoder over the n records in ws.xT.
// When train is set, the denoising corruption and the variational sample
// are drawn from rng; otherwise the clean input and the mean code are used.
func (m *Model) forward(ws *workspace, n int, train bool, rng *rand.Rand) {
	p := m.spec.Input
	in := ws.xT[:p*n]
	if train && m.spec.Variant == Denoising {
		xin := ws.xin[:p*n]
		switch m.spec.Noise {
		case GaussianNoise:
			s := m.spec.NoiseSigma
			for i, v := range in {
				xin[i] = v + s*rng.NormFloat64()
			}
		case MaskingNoise:
			q := m.spec.MaskProb
			for i, v := range in {
				if rng.Float64() < q {
					v = 0
				}
				xin[i] = v
			}
		}
		in = xin
	}
	if m.spec.Tied {
		for i, l := range m.enc {
			transpose(ws.tiedT[i], m.params[l.wOff:l.wOff+l.in*l.out], l.out, l.in)
		}
	}
	for i, l := range m.enc {
		out := ws.enc[i][:l.out*n]
		affine(out, m.weight(l, nil), in, m.params[l.bOff:l.bOff+l.out], l.out, l.in, n)
		l.act.apply(out, out)
		in = out
	}
	if m.spec.Variant == Variational {
		h := m.spec.Input
		src := ws.xT[:p*n]
		if len(m.enc) > 1 {
			h = m.enc[len(m.enc)-2].out
			src = ws.enc[len(m.enc)-2][:h*n]
		}
		k := m.spec.Code
		lv := ws.lv[:k*n]
		affine(lv, m.params[m.lv.wOff:m.lv.wOff+k*h], src, m.params[m.lv.bOff:m.lv.bOff+k], k, h, n)
		if train {
			z, eps := ws.z[:k*n], ws.eps[:k*n]
			for i, mu := range in {
				e := rng.NormFloat64()
				eps[i] = e
				z[i] = mu + math.Exp(0.5*lv[i])*e
			}
			in = z
		}
	}
	for i, l := range m.dec {
		out := ws.dec[i][:l.out*n]
		last := i == len(m.dec)-1
		if last && m.spec.Loss == CrossEntropy {
			lg := ws.logits[:l.out*n]
			affine(lg, m.weight(l, ws.tiedT), in, m.params[l.bOff:l.bOff+l.out], l.out, l.in, n)
			l.act.apply(out, lg)
		} else {
			affine(out, m.weight(l, ws.tiedT), in, m.params[l.bOff:l.bOff+l.out], l.out, l.in, n)
			l.act.apply(out, out)
		}
		in = out
	}
}

// Gradient writes into grad the gradient, with respect to the parameters,
// of the batch objective at the model's current parameters, and returns the
// objective. x holds the batch's records row-major (len(x) = n * Input).
// The objective is the mean over the batch of the reconstruction loss plus
// the variant's penalty, so the sample-count-weighted average of gradients of
// disjoint batches equals the gradient of their union (for the variants
// without a batch-level statistic: all but SparseKL; and untrimmed: with
// Spec.Trim the objective is the mean over the batch's kept records).
//
// rng supplies the denoising corruption and the variational draw; the same
// seed gives the same result. It may be nil for the other variants.
// Gradient reads but does not change the training state: call Advance after
// the optimizer step. It panics if len(grad) != NumParams() or x is not whole
// records; non-finite inputs give a non-finite result.
func (m *Model) Gradient(grad, x []float64, rng *rand.Rand) float64 {
	if len(grad) != len(m.params) {
		panic(fmt.Sprintf("ae: Gradient: gradient length %d, model has %d parameters", len(grad), len(m.params)))
	}
	n := m.rows(x, "Gradient")
	if n == 0 {
		panic("ae: Gradient: empty batch")
	}
	if rng == nil && (m.spec.Variant == Denoising || m.spec.Variant == Variational) {
		panic("ae: Gradient: the " + m.spec.Variant.String() + " variant needs a random source")
	}
	ws := m.prepare(n)
	m.load(ws, x, n)
	m.forward(ws, n, true, rng)
	for i := range grad {
		grad[i] = 0
	}
	for _, g := range ws.gTied {
		for i := range g {
			g[i] = 0
		}
	}

	p, k := m.spec.Input, m.spec.Code
	inv := 1 / float64(n)
	x0 := ws.xT[:p*n]
	xhat := ws.dec[len(ws.dec)-1][:p*n]
	delta := ws.d1[:p*n]
	var loss float64
	switch m.spec.Loss {
	case SquaredError:
		loss = sqErrGrad(delta, xhat, x0, 2*inv)
	case CrossEntropy:
		lg := ws.logits[:p*n]
		for i, a := range lg {
			loss += softplus(a) - x0[i]*a
			delta[i] = inv * (xhat[i] - x0[i])
		}
	}
	if drop := int(m.spec.Trim * float64(n)); drop > 0 {
		loss = m.trim(ws, delta, n, drop)
	}
	if m.spec.Loss == SquaredError {
		m.dec[len(m.dec)-1].act.mulDeriv(delta, xhat)
	}
	loss *= inv

	// Decoder, outermost first. delta is the gradient on the layer's pre-activation.
	codeIn := ws.enc[len(ws.enc)-1] // input of the decoder
	if m.spec.Variant == Variational {
		codeIn = ws.z
	}
	for i := len(m.dec) - 1; i >= 0; i-- {
		l := m.dec[i]
		src := codeIn
		if i > 0 {
			src = ws.dec[i-1]
		}
		src = src[:l.in*n]
		gw := ws.gTied[max(l.tiedTo, 0)]
		if l.tiedTo < 0 {
			gw = grad[l.wOff : l.wOff+l.in*l.out]
		}
		gradW(gw, delta, src, l.out, l.in, n)
		rowSums(grad[l.bOff:l.bOff+l.out], delta, l.out, n)
		// Gradient on the layer's input: W^T delta.
		next := ws.d2[:l.in*n]
		var wT []float64
		if l.tiedTo >= 0 {
			e := m.enc[l.tiedTo]
			wT = m.params[e.wOff : e.wOff+e.in*e.out] // (W^T)^T
		} else {
			wT = ws.wT[len(m.enc)+i]
			transpose(wT, m.params[l.wOff:l.wOff+l.in*l.out], l.out, l.in)
		}
		affine(next, wT, delta, nil, l.in, l.out, n)
		if i > 0 {
			m.dec[i-1].act.mulDeriv(next, src)
		}
		delta, ws.d1, ws.d2 = next, ws.d2, ws.d1
	}
	// delta is now dLoss/dcode (the code's activation output, or the VAE sample z).
	dz := delta[:k*n]
	code := ws.enc[len(ws.enc)-1][:k*n]
	last := m.enc[len(m.enc)-1]
	switch m.spec.Variant {
	case SparseL1:
		c := m.spec.L1
		var pen float64
		for i, z := range code {
			pen += math.Abs(z)
			if z > 0 {
				dz[i] += c * inv
			} else if z < 0 {
				dz[i] -= c * inv
			}
		}
		loss += c * inv * pen
	case SparseKL:
		rho, beta, mom := m.spec.SparseRho, m.spec.SparseBeta, m.spec.SparseMomentum
		if m.rhoRun == nil {
			mom = 0
		}
		var pen float64
		for j := 0; j < k; j++ {
			row := code[j*n : j*n+n]
			var s float64
			for _, z := range row {
				s += z
			}
			// Clamped away from 0 and 1, where the KL is infinite: a
			// saturated code unit gets a large, finite push back.
			rt := min(max((1-mom)*s*inv+mom*m.runAt(j), 1e-9), 1-1e-9)
			ws.rhoHat[j] = rt
			pen += rho*math.Log(rho/rt) + (1-rho)*math.Log((1-rho)/(1-rt))
			// The penalty is weighted beta/(1-mom) so that its gradient
			// keeps the weight beta whatever the momentum.
			g := beta * inv * (-rho/rt + (1-rho)/(1-rt))
			d := dz[j*n : j*n+n]
			for c := range d {
				d[c] += g
			}
		}
		loss += beta / (1 - mom) * pen
	case Variational:
		b := m.klWeight()
		mu, lv, eps := code, ws.lv[:k*n], ws.eps[:k*n]
		dmu := ws.dmu[:k*n]
		dlv := ws.dlv[:k*n]
		var kl float64
		for i, u := range mu {
			s2 := math.Exp(lv[i])
			kl += 0.5 * (u*u + s2 - 1 - lv[i])
			dmu[i] = dz[i] + b*inv*u
			dlv[i] = dz[i]*eps[i]*0.5*math.Sqrt(s2) + b*inv*0.5*(s2-1)
		}
		loss += b * inv * kl
		// Log-variance head: gradient into its parameters and its input.
		h := m.lv.in
		var src []float64
		if len(m.enc) > 1 {
			src = ws.enc[len(m.enc)-2][:h*n]
		} else {
			src = ws.xT[:h*n]
		}
		gradW(grad[m.lv.wOff:m.lv.wOff+k*h], dlv, src, k, h, n)
		rowSums(grad[m.lv.bOff:m.lv.bOff+k], dlv, k, n)
		dz = dmu
	}
	if m.spec.Variant == Contractive {
		loss += m.contractive(ws, grad, n, false)
	}

	// Encoder, innermost first. delta lives in ws.d1 (or ws.dmu); ws.d2 is free.
	delta = dz
	last.act.mulDeriv(delta, code)
	if m.spec.Variant == Contractive {
		addTo(delta, ws.inject[len(m.enc)-1][:k*n])
	}
	for i := len(m.enc) - 1; i >= 0; i-- {
		l := m.enc[i]
		src := ws.xT[:p*n]
		if m.spec.Variant == Denoising {
			src = ws.xin[:p*n]
		}
		if i > 0 {
			src = ws.enc[i-1][:l.in*n]
		}
		gradW(grad[l.wOff:l.wOff+l.in*l.out], delta, src, l.out, l.in, n)
		rowSums(grad[l.bOff:l.bOff+l.out], delta, l.out, n)
		if i == 0 {
			break
		}
		next := ws.d2[:l.in*n]
		wT := ws.wT[i]
		transpose(wT, m.params[l.wOff:l.wOff+l.in*l.out], l.out, l.in)
		affine(next, wT, delta, nil, l.in, l.out, n)
		if m.spec.Variant == Variational && i == len(m.enc)-1 {
			// The log-variance head reads the same input: add its share.
			lvT := ws.wT[len(m.enc)+len(m.dec)]
			transpose(lvT, m.params[m.lv.wOff:m.lv.wOff+k*l.in], k, l.in)
			tmp := ws.tmp[:l.in*n]
			affine(tmp, lvT, ws.dlv[:k*n], nil, l.in, k, n)
			addTo(next, tmp)
		}
		m.enc[i-1].act.mulDeriv(next, src)
		if m.spec.Variant == Contractive {
			addTo(next, ws.inject[i-1][:l.in*n])
		}
		delta, ws.d1, ws.d2 = next, ws.d2, ws.d1
	}
	if m.spec.Tied {
		for i, l := range m.enc {
			addTranspose(grad[l.wOff:l.wOff+l.in*l.out], ws.gTied[i], l.in, l.out)
		}
	}
	return loss
}

func (m *Model) runAt(j int) float64 {
	if m.rhoRun == nil {
		return 0
	}
	return m.rhoRun[j]
}

func addTo(dst, src []float64) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] += v
	}
}

// trim leaves the drop records of the batch with the largest
// reconstruction loss out of the output gradient delta (p x n, on the
// output activation) and scales the rest by n/(n-drop), so that the
// reconstruction term is the mean over the kept records. It returns the
// kept records' loss sum times n/(n-drop): the trimmed mean, once the
// caller divides by n. Ties are broken by record order.
func (m *Model) trim(ws *workspace, delta []float64, n, drop int) float64 {
	p := m.spec.Input
	x0, xhat := ws.xT[:p*n], ws.dec[len(ws.dec)-1][:p*n]
	rl := ws.errs[:n]
	clear(rl)
	switch m.spec.Loss {
	case SquaredError:
		for l := 0; l < p; l++ {
			for r := 0; r < n; r++ {
				d := xhat[l*n+r] - x0[l*n+r]
				rl[r] += d * d
			}
		}
	case CrossEntropy:
		lg := ws.logits[:p*n]
		for l := 0; l < p; l++ {
			for r := 0; r < n; r++ {
				a := lg[l*n+r]
				rl[r] += softplus(a) - x0[l*n+r]*a
			}
		}
	}
	if cap(ws.order) < n {
		ws.order = make([]int, n)
	}
	order := ws.order[:n]
	for r := range order {
		order[r] = r
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rl[b], rl[a]) })
	for _, r := range order[:drop] {
		for l := 0; l < p; l++ {
			delta[l*n+r] = 0
		}
		rl[r] = 0
	}
	scale := float64(n) / float64(n-drop)
	for i := range delta[:p*n] {
		delta[i] *= scale
	}
	var kept float64
	for _, v := range rl {
		kept += v
	}
	return kept * scale
}
