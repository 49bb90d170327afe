package coordinator

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/recon-ad/recon/internal/round"
)

// TestRejectionReasonsStartAtZero: every rejection reason is a series at 0
// from the start, so a rule on its rate needs no `or vector(0)`.
func TestRejectionReasonsStartAtZero(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	if n, want := testutil.CollectAndCount(m.rejected), len(round.Reasons)+1; n != want {
		t.Fatalf("%d gradients_rejected series before any rejection, want %d (round.Reasons and other)", n, want)
	}
	for _, r := range append(round.Reasons, "other") {
		if v := testutil.ToFloat64(m.rejected.WithLabelValues(string(r))); v != 0 {
			t.Errorf("reason %s starts at %v", r, v)
		}
	}
}
