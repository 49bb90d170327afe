package worker

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
