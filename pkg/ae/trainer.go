package ae

import "math/rand/v2"

// Trainer takes optimizer steps on one model: gradient of a batch, optimizer
// update, training-state advance. It owns its gradient buffer, so a step
// does not allocate. Distributed training does the same three things with
// the gradient averaged across workers in between.
type Trainer struct {
	Model *Model     // the model trained
	Opt   Optimizer  // applies the gradient
	Rng   *rand.Rand // noise for the denoising and variational variants
	grad  []float64
}

// NewTrainer returns a trainer for m using opt, drawing noise from rng.
func NewTrainer(m *Model, opt Optimizer, rng *rand.Rand) *Trainer {
	return &Trainer{Model: m, Opt: opt, Rng: rng, grad: make([]float64, m.NumParams())}
}

// Step takes one optimizer step on the batch x (whole records, row-major)
// and returns the batch objective before the step.
func (t *Trainer) Step(x []float64) float64 {
	loss := t.Model.Gradient(t.grad, x, t.Rng)
	t.Opt.Step(t.Model.params, t.grad)
	if t.Model.spec.Variant == SparseKL {
		t.Model.Advance(t.Model.CodeMeans())
	} else {
		t.Model.Advance(nil)
	}
	return loss
}
