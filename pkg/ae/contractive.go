package ae

// contractive returns the contractive penalty Contractive * mean_i
// ||J_f(x_i)||_F^2 of the n records whose forward pass is in ws. When grad is
// not nil it also adds the penalty's direct gradient on the encoder weights
// to grad and sets ws.inject to its gradient on each encoder pre-activation,
// which the caller's backward pass adds in. A one-layer sigmoid encoder uses
// the O(kp) closed form; deeper encoders propagate the exact Jacobian.
func (m *Model) contractive(ws *workspace, grad []float64, n int, exact bool) float64 {
	lambda := m.spec.Contractive
	if len(m.enc) == 1 && m.enc[0].act == Sigmoid && !exact {
		return lambda * m.contractiveSigmoid(ws, grad, n, lambda/float64(n))
	}
	return lambda * m.jacobian(ws, grad, n, lambda/float64(n))
}

// contractiveSigmoid is the closed form for z = sigmoid(W x + b):
// ||J||^2 = sum_j z_j^2 (1-z_j)^2 ||W_j||^2. scale multiplies the gradient.
func (m *Model) contractiveSigmoid(ws *workspace, grad []float64, n int, scale float64) float64 {
	l := m.enc[0]
	w := m.params[l.wOff : l.wOff+l.in*l.out]
	z := ws.enc[0]
	var pen float64
	for j := 0; j < l.out; j++ {
		wj := w[j*l.in : j*l.in+l.in]
		var s float64
		for _, v := range wj {
			s += v * v
		}
		var sumH2 float64
		inj := ws.inject[0][j*n : j*n+n]
		for c, y := range z[j*n : j*n+n] {
			h := y * (1 - y)
			h2 := h * h
			sumH2 += h2
			inj[c] = scale * 2 * s * h2 * (1 - 2*y)
		}
		pen += sumH2 * s
		if grad != nil {
			g := grad[l.wOff+j*l.in : l.wOff+j*l.in+l.in]
			for i, v := range wj {
				g[i] += scale * 2 * sumH2 * v
			}
		}
	}
	return pen / float64(n)
}

// jacobian returns mean_i ||J_f(x_i)||_F^2 by propagating each record's
// Jacobian J_{l+1} = D_l W_l J_l (D_l the diagonal of activation
// derivatives) and, when grad is not nil, backpropagates through that chain
// with the gradient scaled by scale.
func (m *Model) jacobian(ws *workspace, grad []float64, n int, scale float64) float64 {
	p := m.spec.Input
	js := &ws.jac
	if js.j == nil {
		maxW := p
		js.j = make([][]float64, len(m.enc)+1)
		js.mm = make([][]float64, len(m.enc))
		js.j[0] = make([]float64, p*p)
		for i, l := range m.enc {
			js.j[i+1] = make([]float64, l.out*p)
			js.mm[i] = make([]float64, l.out*p)
			maxW = max(maxW, l.out)
		}
		js.g = make([]float64, maxW*p)
		js.g2 = make([]float64, maxW*p)
		for i := 0; i < p; i++ {
			js.j[0][i*p+i] = 1
		}
	}
	var total float64
	for c := 0; c < n; c++ {
		for li, l := range m.enc {
			w := m.params[l.wOff : l.wOff+l.in*l.out]
			jin, mm, jout := js.j[li], js.mm[li], js.j[li+1]
			act := ws.enc[li]
			for j := 0; j < l.out; j++ {
				d := l.act.deriv(act[j*n+c])
				mr := mm[j*p : j*p+p]
				for q := range mr {
					mr[q] = 0
				}
				for i, wv := range w[j*l.in : j*l.in+l.in] {
					if wv == 0 {
						continue
					}
					for q, v := range jin[i*p : i*p+p] {
						mr[q] += wv * v
					}
				}
				jr := jout[j*p : j*p+p]
				for q, v := range mr {
					jr[q] = d * v
				}
			}
		}
		L := len(m.enc)
		k := m.enc[L-1].out
		jl := js.j[L][:k*p]
		var pen float64
		for _, v := range jl {
			pen += v * v
		}
		total += pen
		if grad == nil {
			continue
		}
		g := js.g[:k*p]
		for i, v := range jl {
			g[i] = 2 * scale * v
		}
		for li := L - 1; li >= 0; li-- {
			l := m.enc[li]
			w := m.params[l.wOff : l.wOff+l.in*l.out]
			gw := grad[l.wOff : l.wOff+l.in*l.out]
			mm, jin := js.mm[li], js.j[li]
			act := ws.enc[li]
			for j := 0; j < l.out; j++ {
				y := act[j*n+c]
				d := l.act.deriv(y)
				gr := g[j*p : j*p+p]
				var dD float64
				for q, v := range gr {
					dD += v * mm[j*p+q]
					gr[q] = d * v // now dM
				}
				ws.inject[li][j*n+c] = dD * l.act.deriv2(y)
				gwr := gw[j*l.in : j*l.in+l.in]
				for i := range gwr {
					var s float64
					for q, v := range jin[i*p : i*p+p] {
						s += gr[q] * v
					}
					gwr[i] += s
				}
			}
			if li == 0 {
				break
			}
			g2 := js.g2[:l.in*p]
			for i := range g2 {
				g2[i] = 0
			}
			for j := 0; j < l.out; j++ {
				gr := g[j*p : j*p+p]
				for i, wv := range w[j*l.in : j*l.in+l.in] {
					row := g2[i*p : i*p+p]
					for q, v := range gr {
						row[q] += wv * v
					}
				}
			}
			js.g, js.g2 = js.g2, js.g
			g = js.g[:l.in*p]
		}
	}
	return total / float64(n)
}
