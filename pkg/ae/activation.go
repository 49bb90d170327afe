package ae

import "math"

// apply sets dst[i] = f(src[i]). dst and src may be the same slice.
func (a Activation) apply(dst, src []float64) {
	dst = dst[:len(src)]
	switch a {
	case Linear:
		copy(dst, src)
	case ReLU:
		reluInPlace(dst, src)
	case Sigmoid:
		for i, v := range src {
			dst[i] = sigmoid(v)
		}
	case Tanh:
		for i, v := range src {
			dst[i] = math.Tanh(v)
		}
	}
}

// mulDeriv multiplies delta[i] by f'(a_i), where out[i] = f(a_i) is the
// activation's output: every derivative here is a function of the output.
func (a Activation) mulDeriv(delta, out []float64) {
	out = out[:len(delta)]
	switch a {
	case Linear:
	case ReLU:
		reluMask(delta, out)
	case Sigmoid:
		for i, y := range out {
			delta[i] *= y * (1 - y)
		}
	case Tanh:
		for i, y := range out {
			delta[i] *= 1 - y*y
		}
	}
}

// deriv returns f'(a) given y = f(a).
func (a Activation) deriv(y float64) float64 {
	switch a {
	case ReLU:
		if y > 0 {
			return 1
		}
		return 0
	case Sigmoid:
		return y * (1 - y)
	case Tanh:
		return 1 - y*y
	}
	return 1
}

// deriv2 returns f”(a) given y = f(a). ReLU's second derivative is zero
// wherever it exists.
func (a Activation) deriv2(y float64) float64 {
	switch a {
	case Sigmoid:
		return y * (1 - y) * (1 - 2*y)
	case Tanh:
		return -2 * y * (1 - y*y)
	}
	return 0
}

func sigmoid(v float64) float64 {
	if v >= 0 {
		return 1 / (1 + math.Exp(-v))
	}
	e := math.Exp(v)
	return e / (1 + e)
}

// softplus returns log(1 + exp(v)) without overflow.
func softplus(v float64) float64 {
	if v > 0 {
		return v + math.Log1p(math.Exp(-v))
	}
	return math.Log1p(math.Exp(v))
}

func reluGeneric(dst, src []float64) {
	for i, v := range src {
		if v < 0 {
			v = 0
		}
		dst[i] = v
	}
}

func reluMaskGeneric(delta, out []float64) {
	for i, y := range out {
		if y <= 0 {
			delta[i] = 0
		}
	}
}
