// Package kernels picks, whenever a process's model spec changes, the fastest
// of the autoencoder's kernel sets (ae.KernelSets) at what the process does
// with it, by timing them (ae.ChooseKernels), and reports the choice in one
// log line and a gauge.
//
// The widest SIMD the CPU has is not always the fastest at a shape (the
// portable loops win at small widths, and the fastest set differs between
// CPUs): timing the candidates on the model's own shapes makes no build
// slower than the portable one, whatever the CPU.
package kernels

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recon-ad/recon/pkg/ae"
)

// Chooser chooses kernels whenever the spec differs from the one it last
// chose for. Its methods are safe for concurrent use. The kernel set is
// the process's: with several choosers in one process (workers of one
// benchtrain, say) the last choice holds for all.
type Chooser struct {
	log   *slog.Logger
	task  ae.Task
	gauge *prometheus.GaugeVec // 1 for the set in use, 0 for the others

	mu   sync.Mutex
	spec string // the spec last chosen for, printed ("": none yet)
}

// NewChooser returns a Chooser for the task that logs to log (nil: no
// lines) and sets gauge (labelled "set"; nil: none). The gauge starts with
// every set at 0 but the one in use.
func NewChooser(log *slog.Logger, task ae.Task, gauge *prometheus.GaugeVec) *Chooser {
	c := &Chooser{log: log, task: task, gauge: gauge}
	c.report()
	return c
}

// NewGauge returns the gauge a Chooser sets, named name.
func NewGauge(name string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name,
		Help: "1 for the autoencoder kernel set in use (timed on the model's shapes at start and when they change), 0 for the others this build and CPU have."}, []string{"set"})
}

// Choose times the kernel sets on models of spec with batches of batch
// records, unless it last chose for the same spec, and switches to the
// fastest. It returns the set in use.
func (c *Chooser) Choose(spec ae.Spec, batch int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := fmt.Sprintf("%+v", spec)
	if key == c.spec {
		c.report() // another chooser of the process may have switched since
		return ae.KernelSet()
	}
	set, timings, err := ae.ChooseKernels(spec, batch, c.task)
	if err != nil {
		if c.log != nil {
			c.log.Warn("timing the kernel sets failed; keeping those in use", "kernels", ae.KernelSet(), "err", err)
		}
		return ae.KernelSet()
	}
	c.spec = key
	c.report()
	if c.log != nil && len(timings) > 1 {
		var b strings.Builder
		for i, t := range timings {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(t.Set + "=" + t.Time.String())
		}
		c.log.Info("kernels chosen by timing each set on the model's shapes", "kernels", set, "task", c.task.String(), "batch", batch, "per_batch", b.String())
	}
	return set
}

func (c *Chooser) report() {
	if c.gauge == nil {
		return
	}
	in := ae.KernelSet()
	for _, set := range ae.KernelSets() {
		v := 0.0
		if set == in {
			v = 1
		}
		c.gauge.WithLabelValues(set).Set(v)
	}
}
