package ae

import (
	"errors"
	"fmt"
	"math"
)

// Optimizer updates a flat parameter vector from a gradient of the same
// length. Its state is one flat vector too, so that it can be checkpointed.
type Optimizer interface {
	// Step moves params against grad. It panics if the lengths differ from
	// each other or from the length the optimizer was built for.
	Step(params, grad []float64)
	// State returns a copy of the optimizer's state.
	State() []float64
	// Restore replaces the optimizer's state with one returned by State.
	Restore(state []float64) error
}

// ErrBadState is returned when an optimizer state does not fit the optimizer.
var ErrBadState = errors.New("ae: optimizer state does not fit this optimizer")

// SGD is stochastic gradient descent with (heavy-ball) momentum:
// v = Momentum*v + grad; params -= LR*v.
type SGD struct {
	LR       float64 // learning rate
	Momentum float64 // velocity decay in [0, 1); 0 is plain SGD
	v        []float64
}

// NewSGD returns an SGD optimizer for n parameters.
func NewSGD(n int, lr, momentum float64) *SGD {
	return &SGD{LR: lr, Momentum: momentum, v: make([]float64, n)}
}

// Step implements Optimizer.
func (o *SGD) Step(params, grad []float64) {
	checkLens("SGD", len(o.v), params, grad)
	v := o.v[:len(params)]
	grad = grad[:len(params)]
	for i, g := range grad {
		v[i] = o.Momentum*v[i] + g
		params[i] -= o.LR * v[i]
	}
}

// State implements Optimizer: the velocity.
func (o *SGD) State() []float64 { return append([]float64(nil), o.v...) }

// Restore implements Optimizer.
func (o *SGD) Restore(s []float64) error {
	if len(s) != len(o.v) {
		return fmt.Errorf("%w: SGD state has %d values, want %d", ErrBadState, len(s), len(o.v))
	}
	if err := finite(s); err != nil {
		return err
	}
	copy(o.v, s)
	return nil
}

// Adam is the Adam optimizer (Kingma & Ba 2015) with bias correction.
type Adam struct {
	LR    float64 // learning rate
	Beta1 float64 // decay of the first-moment estimate
	Beta2 float64 // decay of the second-moment estimate
	Eps   float64 // added to the root of the second moment
	t     int64
	m, v  []float64
}

// NewAdam returns an Adam optimizer for n parameters with learning rate lr
// and the usual defaults beta1 = 0.9, beta2 = 0.999, eps = 1e-8.
func NewAdam(n int, lr float64) *Adam {
	return &Adam{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, m: make([]float64, n), v: make([]float64, n)}
}

// Steps returns the number of steps taken.
func (o *Adam) Steps() int64 { return o.t }

// Step implements Optimizer.
func (o *Adam) Step(params, grad []float64) {
	checkLens("Adam", len(o.m), params, grad)
	o.t++
	b1, b2 := o.Beta1, o.Beta2
	c1 := 1 / (1 - math.Pow(b1, float64(o.t)))
	c2 := 1 / (1 - math.Pow(b2, float64(o.t)))
	adamUpdate(params, grad, o.m, o.v, b1, b2, o.LR, c1, c2, o.Eps)
}

// State implements Optimizer: the step count, then the first moments, then
// the second moments (length 1 + 2n).
func (o *Adam) State() []float64 {
	s := make([]float64, 0, 1+2*len(o.m))
	s = append(s, float64(o.t))
	s = append(s, o.m...)
	return append(s, o.v...)
}

// Restore implements Optimizer.
func (o *Adam) Restore(s []float64) error {
	n := len(o.m)
	if len(s) != 1+2*n {
		return fmt.Errorf("%w: Adam state has %d values, want %d", ErrBadState, len(s), 1+2*n)
	}
	if err := finite(s); err != nil {
		return err
	}
	t := s[0]
	if t < 0 || t != math.Trunc(t) || t > 1<<53 {
		return fmt.Errorf("%w: Adam step count %v", ErrBadState, t)
	}
	for _, v := range s[1+n:] {
		if v < 0 {
			return fmt.Errorf("%w: negative Adam second moment %v", ErrBadState, v)
		}
	}
	o.t = int64(t)
	copy(o.m, s[1:1+n])
	copy(o.v, s[1+n:])
	return nil
}

func checkLens(name string, n int, params, grad []float64) {
	if len(params) != n || len(grad) != n {
		panic(fmt.Sprintf("ae: %s.Step: %d parameters and %d gradient values, optimizer built for %d", name, len(params), len(grad), n))
	}
}

func finite(s []float64) error {
	for i, v := range s {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: value %d is %v", ErrBadState, i, v)
		}
	}
	return nil
}
