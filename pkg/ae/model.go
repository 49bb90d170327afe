package ae

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// layer is one affine map plus activation, viewing into the model's flat
// parameter vector.
type layer struct {
	in, out int
	act     Activation
	wOff    int // offset of W (out x in, row-major) in params; -1 when tied
	bOff    int // offset of b (out)
	tiedTo  int // index of the encoder layer whose W^T this decoder layer uses, or -1
}

// Model is an autoencoder with its parameters in one flat vector.
//
// Parameter layout (all row-major, in this order): for each encoder layer,
// outermost first, its weight W (out x in) then its bias b (out); for the
// variational variant the last encoder layer is the mean head and is
// followed by the log-variance head's W and b; then for each decoder layer,
// innermost first, its W (out x in, absent when weights are tied, the layer
// then using the transpose of its mirror encoder layer's W) and its b.
//
// A Model keeps scratch buffers between calls so that steady-state training
// and scoring do not allocate; it is therefore not safe for concurrent use.
// Use Clone for one copy per goroutine.
type Model struct {
	spec   Spec
	params []float64
	enc    []layer // input -> code (for Variational: the last is the mean head)
	lv     layer   // Variational: log-variance head
	dec    []layer // code -> output

	steps  int64     // optimizer steps taken (drives the KL warm-up)
	rhoRun []float64 // SparseKL: running estimate of the mean code activation; nil until the first Advance

	ws workspace
}

// New builds a model from spec, normalized (see Spec.Normalize) and
// validated. Its parameters are zero; call Init before training.
func New(spec Spec) (*Model, error) {
	spec = spec.Normalize()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	m := &Model{spec: spec}
	w := spec.widths()
	h := len(spec.Hidden)
	off := 0
	add := func(in, out int, act Activation, tied int) layer {
		l := layer{in: in, out: out, act: act, wOff: -1, tiedTo: tied}
		if tied < 0 {
			l.wOff = off
			off += in * out
		}
		l.bOff = off
		off += out
		return l
	}
	for i := 0; i <= h; i++ {
		act := spec.Activation
		if i == h {
			act = spec.CodeActivation
			if spec.Variant == Variational {
				act = Linear
			}
		}
		m.enc = append(m.enc, add(w[i], w[i+1], act, -1))
	}
	if spec.Variant == Variational {
		m.lv = add(w[h], w[h+1], Linear, -1)
	}
	for i := 0; i <= h; i++ {
		src := h - i // mirrored encoder layer
		act := spec.Activation
		if i == h {
			act = spec.Output
		}
		tied := -1
		if spec.Tied {
			tied = src
		}
		m.dec = append(m.dec, add(w[src+1], w[src], act, tied))
	}
	m.params = make([]float64, off)
	return m, nil
}

// Spec returns the model's normalized spec.
func (m *Model) Spec() Spec {
	s := m.spec
	s.Hidden = append([]int(nil), s.Hidden...)
	return s
}

// Params returns the model's parameter vector. It is the model's own
// storage: writing to it changes the model.
func (m *Model) Params() []float64 { return m.params }

// NumParams returns the length of the parameter vector.
func (m *Model) NumParams() int { return len(m.params) }

// SetParams copies p into the model's parameters. It panics if the length
// differs from NumParams.
func (m *Model) SetParams(p []float64) {
	if len(p) != len(m.params) {
		panic(fmt.Sprintf("ae: SetParams: got %d parameters, model has %d", len(p), len(m.params)))
	}
	copy(m.params, p)
}

// Init draws fresh parameters from rng: weights uniform on the Glorot range
// (He range for ReLU layers), biases zero. It also resets the training state.
func (m *Model) Init(rng *rand.Rand) {
	for i := range m.params {
		m.params[i] = 0
	}
	initW := func(l layer) {
		if l.wOff < 0 {
			return
		}
		limit := math.Sqrt(6 / float64(l.in+l.out))
		if l.act == ReLU {
			limit = math.Sqrt(6 / float64(l.in))
		}
		w := m.params[l.wOff : l.wOff+l.in*l.out]
		for i := range w {
			w[i] = (2*rng.Float64() - 1) * limit
		}
	}
	for _, l := range m.enc {
		initW(l)
	}
	if m.spec.Variant == Variational {
		initW(m.lv)
	}
	for _, l := range m.dec {
		initW(l)
	}
	m.steps = 0
	m.rhoRun = nil
}

// Clone returns an independent copy of the model: parameters and training
// state, with scratch buffers of its own.
func (m *Model) Clone() *Model {
	c := *m
	c.spec = m.Spec()
	c.params = append([]float64(nil), m.params...)
	c.enc = append([]layer(nil), m.enc...)
	c.dec = append([]layer(nil), m.dec...)
	if m.rhoRun != nil {
		c.rhoRun = append([]float64(nil), m.rhoRun...)
	}
	c.ws = workspace{}
	return &c
}

// State is the part of a model's training state that lives outside its
// parameters and optimizer: what a checkpoint must carry besides them.
type State struct {
	// Steps is the number of optimizer steps taken; it drives the KL warm-up.
	Steps int64
	// RhoHat is the running estimate of each code unit's mean activation
	// (SparseKL only; nil before the first step).
	RhoHat []float64
}

// State returns a copy of the model's training state.
func (m *Model) State() State {
	s := State{Steps: m.steps}
	if m.rhoRun != nil {
		s.RhoHat = append([]float64(nil), m.rhoRun...)
	}
	return s
}

// SetState restores a training state saved by State.
func (m *Model) SetState(s State) error {
	if s.Steps < 0 {
		return fmt.Errorf("ae: state has negative step count %d", s.Steps)
	}
	if s.RhoHat != nil {
		if len(s.RhoHat) != m.spec.Code {
			return fmt.Errorf("ae: state has %d running code means, model has code width %d", len(s.RhoHat), m.spec.Code)
		}
		for _, v := range s.RhoHat {
			if !(v > 0 && v < 1) {
				return fmt.Errorf("ae: state has running code mean %v outside (0,1)", v)
			}
		}
	}
	m.steps = s.Steps
	m.rhoRun = nil
	if s.RhoHat != nil {
		m.rhoRun = append([]float64(nil), s.RhoHat...)
	}
	return nil
}

// Advance records that one optimizer step has been taken. For SparseKL,
// rhoHat (the code means of that step's batch as returned by CodeMeans, or
// the sample-weighted average of several workers' CodeMeans) becomes the new
// running estimate; other variants ignore it and accept nil.
func (m *Model) Advance(rhoHat []float64) {
	m.steps++
	if m.spec.Variant != SparseKL || rhoHat == nil {
		return
	}
	if len(rhoHat) != m.spec.Code {
		panic(fmt.Sprintf("ae: Advance: got %d code means, code width is %d", len(rhoHat), m.spec.Code))
	}
	if m.rhoRun == nil {
		m.rhoRun = make([]float64, m.spec.Code)
	}
	copy(m.rhoRun, rhoHat)
}

// CodeMeans returns the estimate rho_hat of each code unit's mean activation
// used by the last Gradient call (SparseKL: the running estimate blended
// with that batch's means). The slice is the model's scratch: copy it to keep it.
func (m *Model) CodeMeans() []float64 { return m.ws.rhoHat }

// klWeight returns the current weight of the VAE's KL term.
func (m *Model) klWeight() float64 {
	b := m.spec.Beta
	if w := m.spec.Warmup; w > 0 && m.steps < int64(w) {
		b *= float64(m.steps) / float64(w)
	}
	return b
}

// rows returns the number of records in x, panicking when x is not whole
// records.
func (m *Model) rows(x []float64, op string) int {
	p := m.spec.Input
	if len(x)%p != 0 {
		panic(fmt.Sprintf("ae: %s: input length %d is not a multiple of the input width %d", op, len(x), p))
	}
	return len(x) / p
}

// weight returns the weight matrix layer l of the decoder (or encoder)
// multiplies by: a view into params, or for a tied decoder layer the
// transposed copy in the workspace.
func (m *Model) weight(l layer, tiedT [][]float64) []float64 {
	if l.tiedTo >= 0 {
		return tiedT[l.tiedTo]
	}
	return m.params[l.wOff : l.wOff+l.in*l.out]
}
