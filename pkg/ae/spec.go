package ae

import (
	"errors"
	"fmt"
	"math"
)

// Activation is an elementwise nonlinearity applied after a layer's affine map.
type Activation int

// The activations a layer may use.
const (
	Linear  Activation = iota // identity
	ReLU                      // max(0, a)
	Sigmoid                   // 1 / (1 + exp(-a))
	Tanh                      // tanh(a)
)

var activationNames = [...]string{"linear", "relu", "sigmoid", "tanh"}

// String returns the activation's lower-case name.
func (a Activation) String() string {
	if a < 0 || int(a) >= len(activationNames) {
		return fmt.Sprintf("Activation(%d)", int(a))
	}
	return activationNames[a]
}

// ParseActivation returns the activation with the given name.
func ParseActivation(s string) (Activation, error) {
	for i, n := range activationNames {
		if n == s {
			return Activation(i), nil
		}
	}
	return 0, fmt.Errorf("ae: unknown activation %q (want linear, relu, sigmoid or tanh)", s)
}

// Loss is the reconstruction loss of one record, summed over its features.
type Loss int

// The reconstruction losses.
const (
	// SquaredError is ||x - x_hat||^2, for real-valued inputs.
	SquaredError Loss = iota
	// CrossEntropy is the binary cross-entropy -sum x log x_hat + (1-x) log(1-x_hat),
	// for inputs in [0,1]. It requires a sigmoid output and is computed from the
	// output layer's pre-activation, so it is finite for every input.
	CrossEntropy
)

var lossNames = [...]string{"mse", "bce"}

// String returns the loss's short name ("mse" or "bce").
func (l Loss) String() string {
	if l < 0 || int(l) >= len(lossNames) {
		return fmt.Sprintf("Loss(%d)", int(l))
	}
	return lossNames[l]
}

// ParseLoss returns the loss with the given short name.
func ParseLoss(s string) (Loss, error) {
	for i, n := range lossNames {
		if n == s {
			return Loss(i), nil
		}
	}
	return 0, fmt.Errorf("ae: unknown loss %q (want mse or bce)", s)
}

// Variant selects the regularizer that shapes what the autoencoder learns.
type Variant int

// The autoencoder variants. Exactly one applies to a model.
const (
	Plain       Variant = iota // reconstruction loss only
	Denoising                  // reconstruct x from a corrupted copy (Gaussian noise or masking)
	SparseL1                   // plus L1 * mean_i ||z_i||_1
	SparseKL                   // plus SparseBeta/(1-SparseMomentum) * sum_j KL(rho || rho_hat_j), rho_hat blending a running estimate
	Contractive                // plus Contractive * mean_i ||J_f(x_i)||_F^2
	Variational                // negative ELBO: reconstruction plus beta * KL(q(z|x) || N(0, I))
)

var variantNames = [...]string{"plain", "denoising", "sparse-l1", "sparse-kl", "contractive", "variational"}

// String returns the variant's name as used on command lines.
func (v Variant) String() string {
	if v < 0 || int(v) >= len(variantNames) {
		return fmt.Sprintf("Variant(%d)", int(v))
	}
	return variantNames[v]
}

// ParseVariant returns the variant with the given name.
func ParseVariant(s string) (Variant, error) {
	for i, n := range variantNames {
		if n == s {
			return Variant(i), nil
		}
	}
	return 0, fmt.Errorf("ae: unknown variant %q (want plain, denoising, sparse-l1, sparse-kl, contractive or variational)", s)
}

// Noise is the corruption a denoising autoencoder trains against.
type Noise int

// The corruptions.
const (
	GaussianNoise Noise = iota // x + NoiseSigma * eps, eps ~ N(0, 1)
	MaskingNoise               // each entry zeroed with probability MaskProb
)

// Spec describes an autoencoder: its shape, activations, loss and variant.
// The encoder maps Input through the Hidden widths to Code; the decoder
// mirrors it back (Code, Hidden reversed, Input). The zero value of each
// variant-specific field selects that variant's default (see Normalize).
type Spec struct {
	Input  int   // p, the record width
	Hidden []int // encoder hidden widths, outermost first; the decoder mirrors them
	Code   int   // k, the bottleneck width

	Activation     Activation // of every hidden layer
	CodeActivation Activation // of the code layer (ignored by the variational variant, whose heads are linear)
	Output         Activation // of the output layer
	Loss           Loss       // reconstruction loss
	Tied           bool       // decoder weights are the transposes of the encoder weights

	// Trim is the share of each batch left out of the reconstruction
	// term of the gradient: the floor(Trim * n) records of a batch of n
	// with the largest reconstruction loss (a trimmed mean; 0: none, at
	// most MaxTrim). Anomalies in the training data reconstruct worst, so
	// trimming keeps the model from learning them; the variants'
	// penalties still average over the whole batch.
	Trim float64

	Variant Variant // the regularizer; the fields below configure it

	Noise      Noise   // Denoising: the corruption
	NoiseSigma float64 // Denoising, Gaussian: noise standard deviation (default 0.1)
	MaskProb   float64 // Denoising, masking: probability of zeroing an entry (default 0.2)

	L1 float64 // SparseL1: weight of the mean L1 norm of the code (default 1e-3)

	SparseRho      float64 // SparseKL: target mean activation rho (default 0.05)
	SparseBeta     float64 // SparseKL: weight of the KL penalty (default 3)
	SparseMomentum float64 // SparseKL: weight of the running estimate in rho_hat, in (0,1) (default, and the zero value: 0.9)

	Contractive float64 // Contractive: weight of the squared Frobenius norm of the encoder Jacobian (default 0.1)

	Beta   float64 // Variational: weight of the KL term (default 1)
	Warmup int     // Variational: steps over which the KL weight rises linearly from 0 to Beta (default 0: no warm-up)
}

// MaxTrim is the largest Spec.Trim: a trimmed batch keeps at least half
// its records.
const MaxTrim = 0.5

// ErrOvercomplete is returned by New for a model whose code is at least as
// wide as its input and which has no regularizer to stop it learning the
// identity.
var ErrOvercomplete = errors.New("ae: overcomplete model (code width >= input width) with no regularizer would learn the identity map; use a smaller code or a denoising, sparse, contractive or variational variant")

// Normalize returns a copy of s with the variant's unset hyperparameters set
// to their defaults.
func (s Spec) Normalize() Spec {
	s.Hidden = append([]int(nil), s.Hidden...)
	switch s.Variant {
	case Denoising:
		if s.Noise == GaussianNoise && s.NoiseSigma == 0 {
			s.NoiseSigma = 0.1
		}
		if s.Noise == MaskingNoise && s.MaskProb == 0 {
			s.MaskProb = 0.2
		}
	case SparseL1:
		if s.L1 == 0 {
			s.L1 = 1e-3
		}
	case SparseKL:
		if s.SparseRho == 0 {
			s.SparseRho = 0.05
		}
		if s.SparseBeta == 0 {
			s.SparseBeta = 3
		}
		if s.SparseMomentum == 0 {
			s.SparseMomentum = 0.9
		}
	case Contractive:
		if s.Contractive == 0 {
			s.Contractive = 0.1
		}
	case Variational:
		if s.Beta == 0 {
			s.Beta = 1
		}
	}
	return s
}

// Validate reports whether the spec describes a model that can be built.
// It expects a normalized spec (see Normalize).
func (s Spec) Validate() error {
	if s.Input < 1 {
		return fmt.Errorf("ae: input width %d: must be at least 1", s.Input)
	}
	if s.Code < 1 {
		return fmt.Errorf("ae: code width %d: must be at least 1", s.Code)
	}
	for i, h := range s.Hidden {
		if h < 1 {
			return fmt.Errorf("ae: hidden layer %d width %d: must be at least 1", i, h)
		}
	}
	for _, a := range []Activation{s.Activation, s.CodeActivation, s.Output} {
		if a < Linear || a > Tanh {
			return fmt.Errorf("ae: unknown activation %d", int(a))
		}
	}
	switch s.Loss {
	case SquaredError:
	case CrossEntropy:
		if s.Output != Sigmoid {
			return fmt.Errorf("ae: cross-entropy loss needs a sigmoid output, not %v", s.Output)
		}
	default:
		return fmt.Errorf("ae: unknown loss %d", int(s.Loss))
	}
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	if !(s.Trim >= 0 && s.Trim <= MaxTrim) {
		return fmt.Errorf("ae: trim %v: must be in [0, %v]", s.Trim, MaxTrim)
	}
	switch s.Variant {
	case Plain:
	case Denoising:
		switch s.Noise {
		case GaussianNoise:
			if bad(s.NoiseSigma) || s.NoiseSigma == 0 {
				return fmt.Errorf("ae: denoising noise sigma %v: must be positive", s.NoiseSigma)
			}
		case MaskingNoise:
			if !(s.MaskProb > 0 && s.MaskProb < 1) {
				return fmt.Errorf("ae: denoising mask probability %v: must be in (0,1)", s.MaskProb)
			}
		default:
			return fmt.Errorf("ae: unknown noise kind %d", int(s.Noise))
		}
	case SparseL1:
		if bad(s.L1) || s.L1 == 0 {
			return fmt.Errorf("ae: sparse L1 weight %v: must be positive", s.L1)
		}
	case SparseKL:
		if s.CodeActivation != Sigmoid {
			return fmt.Errorf("ae: sparse KL needs code activations in (0,1): set the code activation to sigmoid, not %v", s.CodeActivation)
		}
		if !(s.SparseRho > 0 && s.SparseRho < 1) {
			return fmt.Errorf("ae: sparse KL target rho %v: must be in (0,1)", s.SparseRho)
		}
		if bad(s.SparseBeta) || s.SparseBeta == 0 {
			return fmt.Errorf("ae: sparse KL weight %v: must be positive", s.SparseBeta)
		}
		if !(s.SparseMomentum >= 0 && s.SparseMomentum < 1) {
			return fmt.Errorf("ae: sparse KL momentum %v: must be in [0,1)", s.SparseMomentum)
		}
	case Contractive:
		if bad(s.Contractive) || s.Contractive == 0 {
			return fmt.Errorf("ae: contractive weight %v: must be positive", s.Contractive)
		}
	case Variational:
		if bad(s.Beta) || s.Beta == 0 {
			return fmt.Errorf("ae: variational beta %v: must be positive", s.Beta)
		}
		if s.Warmup < 0 {
			return fmt.Errorf("ae: variational warm-up %d steps: must not be negative", s.Warmup)
		}
	default:
		return fmt.Errorf("ae: unknown variant %d", int(s.Variant))
	}
	if s.Code >= s.Input && s.Variant == Plain {
		return fmt.Errorf("%w (code %d, input %d)", ErrOvercomplete, s.Code, s.Input)
	}
	return nil
}

// widths returns the encoder's layer widths from input to code.
func (s Spec) widths() []int {
	w := make([]int, 0, len(s.Hidden)+2)
	w = append(w, s.Input)
	w = append(w, s.Hidden...)
	return append(w, s.Code)
}

// NumParams returns the length of the parameter vector of a model built
// from s (after Normalize), without building it. It does not validate s
// beyond treating negative widths as zero.
func (s Spec) NumParams() int {
	w := s.widths()
	for i := range w {
		w[i] = max(w[i], 0)
	}
	n := 0
	h := len(w) - 2 // index of the last hidden width
	for i := 0; i+1 < len(w); i++ {
		n += w[i]*w[i+1] + w[i+1] // encoder layer i
		if s.Tied {
			n += w[i] // decoder bias only
		} else {
			n += w[i+1]*w[i] + w[i] // mirror decoder layer
		}
	}
	if s.Variant == Variational {
		n += w[h]*w[h+1] + w[h+1] // log-variance head
	}
	return n
}
