package checkpoint

import (
	"errors"
	"fmt"

	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Limits on what a checkpoint may describe, checked before anything is
// allocated, so that damaged or hostile bytes cannot ask for a huge model.
const (
	MaxWidth  = 1 << 16 // any layer width
	MaxLayers = 32      // hidden layers
	MaxParams = 1 << 26 // parameters (512 MiB of float64)
)

var noiseNames = map[string]ae.Noise{"gaussian": ae.GaussianNoise, "masking": ae.MaskingNoise}

// SpecToProto converts an autoencoder spec and its feature names.
func SpecToProto(s ae.Spec, features []string) *reconv1.ModelSpec {
	p := &reconv1.ModelSpec{
		Input:          uint32(s.Input),
		Code:           uint32(s.Code),
		Activation:     s.Activation.String(),
		CodeActivation: s.CodeActivation.String(),
		Output:         s.Output.String(),
		Loss:           s.Loss.String(),
		Tied:           s.Tied,
		Variant:        s.Variant.String(),
		NoiseSigma:     s.NoiseSigma,
		MaskProb:       s.MaskProb,
		L1:             s.L1,
		SparseRho:      s.SparseRho,
		SparseBeta:     s.SparseBeta,
		SparseMomentum: s.SparseMomentum,
		Contractive:    s.Contractive,
		Beta:           s.Beta,
		Warmup:         uint32(s.Warmup),
		Trim:           s.Trim,
		Features:       append([]string(nil), features...),
	}
	for _, h := range s.Hidden {
		p.Hidden = append(p.Hidden, uint32(h))
	}
	if s.Variant == ae.Denoising {
		p.Noise = "gaussian"
		if s.Noise == ae.MaskingNoise {
			p.Noise = "masking"
		}
	}
	return p
}

// SpecFromProto converts and checks a spec: names must be known, widths
// within limits, and the spec valid for ae.New.
func SpecFromProto(p *reconv1.ModelSpec) (ae.Spec, error) {
	var s ae.Spec
	if p == nil {
		return s, errors.New("checkpoint has no model spec")
	}
	if p.GetInput() == 0 || p.GetInput() > MaxWidth || p.GetCode() == 0 || p.GetCode() > MaxWidth {
		return s, fmt.Errorf("model spec widths input %d, code %d: each must be in [1, %d]", p.GetInput(), p.GetCode(), MaxWidth)
	}
	if len(p.GetHidden()) > MaxLayers {
		return s, fmt.Errorf("model spec has %d hidden layers, at most %d allowed", len(p.GetHidden()), MaxLayers)
	}
	s.Input, s.Code = int(p.GetInput()), int(p.GetCode())
	for i, h := range p.GetHidden() {
		if h == 0 || h > MaxWidth {
			return s, fmt.Errorf("model spec hidden layer %d width %d: must be in [1, %d]", i, h, MaxWidth)
		}
		s.Hidden = append(s.Hidden, int(h))
	}
	var err error
	if s.Activation, err = ae.ParseActivation(p.GetActivation()); err != nil {
		return s, err
	}
	if s.CodeActivation, err = ae.ParseActivation(p.GetCodeActivation()); err != nil {
		return s, err
	}
	if s.Output, err = ae.ParseActivation(p.GetOutput()); err != nil {
		return s, err
	}
	if s.Loss, err = ae.ParseLoss(p.GetLoss()); err != nil {
		return s, err
	}
	if s.Variant, err = ae.ParseVariant(p.GetVariant()); err != nil {
		return s, err
	}
	s.Tied = p.GetTied()
	if s.Variant == ae.Denoising {
		n, ok := noiseNames[p.GetNoise()]
		if !ok {
			return s, fmt.Errorf("unknown denoising noise %q (want gaussian or masking)", p.GetNoise())
		}
		s.Noise = n
	}
	s.NoiseSigma, s.MaskProb, s.L1 = p.GetNoiseSigma(), p.GetMaskProb(), p.GetL1()
	s.SparseRho, s.SparseBeta, s.SparseMomentum = p.GetSparseRho(), p.GetSparseBeta(), p.GetSparseMomentum()
	s.Contractive, s.Beta, s.Warmup = p.GetContractive(), p.GetBeta(), int(p.GetWarmup())
	s.Trim = p.GetTrim()
	if f := p.GetFeatures(); len(f) != 0 && len(f) != s.Input {
		return s, fmt.Errorf("model spec names %d features for input width %d", len(f), s.Input)
	}
	if n := s.Normalize().NumParams(); n > MaxParams {
		return s, fmt.Errorf("model spec needs %d parameters, at most %d allowed", n, MaxParams)
	}
	if err := s.Normalize().Validate(); err != nil {
		return s, err
	}
	return s.Normalize(), nil
}

// OptimizerToProto records an optimizer's settings and state. It returns
// nil for a nil optimizer and panics for an optimizer type it does not know.
func OptimizerToProto(o ae.Optimizer) *reconv1.Optimizer {
	switch o := o.(type) {
	case nil:
		return nil
	case *ae.Adam:
		return &reconv1.Optimizer{Kind: "adam", Lr: o.LR, Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, State: o.State()}
	case *ae.SGD:
		return &reconv1.Optimizer{Kind: "sgd", Lr: o.LR, Momentum: o.Momentum, State: o.State()}
	default:
		panic(fmt.Sprintf("checkpoint: unknown optimizer type %T", o))
	}
}

func optimizerFromProto(p *reconv1.Optimizer, n int) (ae.Optimizer, error) {
	if err := allFinite("optimizer setting", []float64{p.GetLr(), p.GetBeta1(), p.GetBeta2(), p.GetEps(), p.GetMomentum()}); err != nil {
		return nil, err
	}
	if !(p.GetLr() > 0) {
		return nil, fmt.Errorf("optimizer learning rate %v: must be positive", p.GetLr())
	}
	var o ae.Optimizer
	switch p.GetKind() {
	case "adam":
		if b1, b2 := p.GetBeta1(), p.GetBeta2(); !(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1) || !(p.GetEps() > 0) {
			return nil, fmt.Errorf("adam settings beta1 %v, beta2 %v, eps %v: want betas in [0,1) and eps > 0", b1, b2, p.GetEps())
		}
		a := ae.NewAdam(n, p.GetLr())
		a.Beta1, a.Beta2, a.Eps = p.GetBeta1(), p.GetBeta2(), p.GetEps()
		o = a
	case "sgd":
		if m := p.GetMomentum(); !(m >= 0 && m < 1) {
			return nil, fmt.Errorf("sgd momentum %v: want [0,1)", m)
		}
		o = ae.NewSGD(n, p.GetLr(), p.GetMomentum())
	default:
		return nil, fmt.Errorf("unknown optimizer kind %q (want adam or sgd)", p.GetKind())
	}
	if err := o.Restore(p.GetState()); err != nil {
		return nil, err
	}
	return o, nil
}

func stateFromProto(p *reconv1.TrainingState) ae.State {
	var s ae.State
	if p == nil {
		return s
	}
	s.Steps = p.GetSteps()
	if len(p.GetRhoHat()) > 0 {
		s.RhoHat = append([]float64(nil), p.GetRhoHat()...)
	}
	return s
}

// Build records a model, its optimizer (may be nil) and normalizer (may be
// nil) in a new checkpoint. The caller sets the version, threshold,
// quantile, round, creation time and metadata.
func Build(m *ae.Model, opt ae.Optimizer, norm *ae.Normalizer, features []string) *reconv1.Checkpoint {
	st := m.State()
	c := &reconv1.Checkpoint{
		Spec:      SpecToProto(m.Spec(), features),
		Params:    append([]float64(nil), m.Params()...),
		Optimizer: OptimizerToProto(opt),
		State:     &reconv1.TrainingState{Steps: st.Steps, RhoHat: st.RhoHat},
	}
	if norm != nil {
		c.Normalizer = &reconv1.Normalizer{Count: norm.Count(), Mean: norm.Mean(), M2: norm.M2()}
	}
	return c
}

// Loaded is a checkpoint's contents as live objects.
type Loaded struct {
	Model      *ae.Model      // parameters and training state restored
	Normalizer *ae.Normalizer // nil when the checkpoint has none
	Whitening  *ae.Whitening  // nil when the checkpoint has none (plain squared error)
	Optimizer  ae.Optimizer   // nil when the checkpoint has none
	Features   []string       // feature names; nil when unnamed
}

// Load rebuilds the model, normalizer and optimizer a checkpoint records.
func Load(c *reconv1.Checkpoint) (*Loaded, error) {
	if err := Validate(c); err != nil {
		return nil, err
	}
	spec, _ := SpecFromProto(c.GetSpec())
	m, err := ae.New(spec)
	if err != nil {
		return nil, err
	}
	m.SetParams(c.GetParams())
	if err := m.SetState(stateFromProto(c.GetState())); err != nil {
		return nil, err
	}
	l := &Loaded{Model: m, Features: append([]string(nil), c.GetSpec().GetFeatures()...)}
	if len(l.Features) == 0 {
		l.Features = nil
	}
	if n := c.GetNormalizer(); n != nil {
		if l.Normalizer, err = ae.RestoreNormalizer(n.GetCount(), n.GetMean(), n.GetM2()); err != nil {
			return nil, err
		}
	}
	if w := c.GetWhitening(); len(w) > 0 {
		if l.Whitening, err = ae.RestoreWhitening(spec.Input, w); err != nil {
			return nil, err
		}
	}
	if o := c.GetOptimizer(); o != nil {
		if l.Optimizer, err = optimizerFromProto(o, m.NumParams()); err != nil {
			return nil, err
		}
	}
	return l, nil
}
