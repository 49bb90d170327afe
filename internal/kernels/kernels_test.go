package kernels

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/recon-ad/recon/pkg/ae"
)

// TestChooserTimesEachSpecOnce: the first spec is timed (one log line where
// the build has more than one set), the same spec again is not, a new spec
// is; the gauge always marks exactly the set in use.
func TestChooserTimesEachSpecOnce(t *testing.T) {
	sets := ae.KernelSets()
	defer func() {
		if err := ae.UseKernels(sets[len(sets)-1]); err != nil {
			t.Error(err)
		}
	}()
	var logs bytes.Buffer
	g := NewGauge("test_kernels")
	c := NewChooser(slog.New(slog.NewTextHandler(&logs, nil)), ae.TaskScore, g)
	gauged := func() string {
		t.Helper()
		on := ""
		for _, s := range sets {
			switch v := testutil.ToFloat64(g.WithLabelValues(s)); v {
			case 1:
				if on != "" {
					t.Fatalf("gauge marks %s and %s", on, s)
				}
				on = s
			case 0:
			default:
				t.Fatalf("gauge of %s: %v", s, v)
			}
		}
		return on
	}
	if n := testutil.CollectAndCount(g); n != len(sets) {
		t.Fatalf("gauge has %d series before any choice, want one per set (%v)", n, sets)
	}
	small := ae.Spec{Input: 30, Hidden: []int{16}, Code: 4, Activation: ae.ReLU, Output: ae.Linear}
	wide := ae.Spec{Input: 100, Hidden: []int{64}, Code: 8, Activation: ae.Tanh, Output: ae.Linear}
	lines := func() int { return strings.Count(logs.String(), "kernels chosen") }
	want := 0
	for i, spec := range []ae.Spec{small, small, wide, wide, small} {
		got := c.Choose(spec, 256)
		if !slices.Contains(sets, got) {
			t.Fatalf("choice %d: %q, not one of %v", i, got, sets)
		}
		if on := gauged(); on != got {
			t.Fatalf("choice %d: %q, the gauge marks %q", i, got, on)
		}
		if name, _, _ := strings.Cut(ae.Kernels(), " "); name != got {
			t.Fatalf("choice %d: %q, ae.Kernels() says %q", i, got, ae.Kernels())
		}
		if len(sets) > 1 && i != 1 && i != 3 {
			want++ // a spec unlike the last one is timed
		}
		if lines() != want {
			t.Fatalf("after choice %d: %d log lines, want %d:\n%s", i, lines(), want, logs.String())
		}
	}
	t.Logf("sets %v; %s", sets, logs.String())
}
