package trainer

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/recon-ad/recon/pkg/stream"
)

// TestUndecodableReasonsStartAtZero: every decode failure reason is a
// series at 0 from the start.
func TestUndecodableReasonsStartAtZero(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	if n, want := testutil.CollectAndCount(m.undecodable), len(stream.Reasons)+1; n != want {
		t.Fatalf("%d records_undecodable series before any record, want %d (stream.Reasons and other)", n, want)
	}
	for _, r := range append(stream.Reasons, "other") {
		if v := testutil.ToFloat64(m.undecodable.WithLabelValues(string(r))); v != 0 {
			t.Errorf("reason %s starts at %v", r, v)
		}
	}
}

// TestMetricsUnderBothPrefixes: every trainer metric is exported as
// recon_trainer_* and, deprecated for one release, as recon_worker_*.
func TestMetricsUnderBothPrefixes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.rounds.Inc()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if len(f.GetMetric()) > 0 && f.GetMetric()[0].GetCounter() != nil {
			got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		} else {
			got[f.GetName()] = -1
		}
	}
	for _, name := range []string{"gradients_total", "gradients_rejected_total", "records_skipped_total", "sessions_total",
		"gradient_seconds", "records_consumed_total", "records_undecodable_total", "kernels"} {
		for _, prefix := range MetricPrefixes {
			if _, ok := got[prefix+name]; !ok && name != "kernels" {
				t.Errorf("%s%s is not exported", prefix, name)
			}
		}
	}
	if got["recon_trainer_gradients_total"] != 1 || got["recon_worker_gradients_total"] != 1 {
		t.Errorf("gradients_total = %v (trainer) and %v (worker), want 1 under both names", got["recon_trainer_gradients_total"], got["recon_worker_gradients_total"])
	}
}
