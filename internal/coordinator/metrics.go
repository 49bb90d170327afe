package coordinator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/round"
)

// Metrics are the coordinator's Prometheus metrics.
type Metrics struct {
	rounds        prometheus.Counter
	round         prometheus.Gauge
	abandoned     prometheus.Counter
	roundSeconds  prometheus.Histogram
	members       prometheus.Gauge
	rejected      *prometheus.CounterVec
	loss          prometheus.Gauge
	samples       prometheus.Counter
	version       prometheus.Gauge
	threshold     prometheus.Gauge
	heldout       prometheus.Gauge
	settled       prometheus.Gauge
	firstRecords  prometheus.Gauge // stream records read when the first threshold was set
	records       prometheus.Counter
	drifted       prometheus.Gauge
	refused       prometheus.Counter
	benched       prometheus.Counter
	ckFailures    prometheus.Counter
	ckFailing     prometheus.Gauge
	ckSkipped     prometheus.Counter
	state         *prometheus.GaugeVec
	presentations prometheus.Gauge
}

// setState makes the state gauge 1 for st, 0 for the others.
func (m *Metrics) setState(st pace.State) {
	for _, s := range pace.States() {
		v := 0.0
		if s == st {
			v = 1
		}
		m.state.WithLabelValues(s.String()).Set(v)
	}
}

// NewMetrics registers the metrics on reg (nil: unregistered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rounds:    prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_rounds_total", Help: "Training rounds completed."}),
		round:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_round", Help: "Number of the last completed round."}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_rounds_abandoned_total", Help: "Rounds abandoned at their deadline with too few gradients."}),
		roundSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recon_coordinator_round_duration_seconds",
			Help: "Time from a round's start to its completion.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		members:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_workers", Help: "Workers joined."}),
		rejected:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_coordinator_gradients_rejected_total", Help: "Gradients rejected, by reason."}, []string{"reason"}),
		loss:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_loss", Help: "Sample-weighted mean training objective of the last round."}),
		samples:    prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_samples_total", Help: "Training records behind applied gradients."}),
		version:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_checkpoint_version", Help: "Newest checkpoint version written."}),
		threshold:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_threshold", Help: "Current alert threshold."}),
		heldout:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_heldout_scores", Help: "Held-out records in the calibration window (the first threshold needs 500)."}),
		records:    prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_records_total", Help: "New stream records read by trainers for accepted gradients (held-out ones included)."}),
		drifted:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_normalizer_drifted_features", Help: "Features whose held-out records no longer fit the normalizer frozen at warm-up (mean beyond 3 sd, or spread off by a factor 3)."}),
		refused:    prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_joins_refused_total", Help: "Worker joins refused: a record schema (width or feature names) that does not match the model's, or an id another live process holds."}),
		benched:    prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_members_benched_total", Help: "Times a worker was taken out of the rounds for sending no gradient in several rounds in a row."}),
		ckFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_checkpoint_write_failures_total", Help: "Checkpoint writes that failed (a full disk, a damaged store); training goes on and the write is retried."}),
		ckFailing:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_checkpoint_failing", Help: "1 while the last checkpoint write failed, else 0."}),
		ckSkipped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_coordinator_checkpoints_skipped_total", Help: "Scheduled looks at a checkpoint that wrote none: the model had not changed materially since the last (--checkpoint-change)."}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recon_coordinator_training_state",
			Help: "1 for the state training is in (warming, learning, settled, maintaining), 0 for the others."}, []string{"state"}),
		presentations: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_presentations_per_record",
			Help: "Records trained on per new stream record read, over about the last thousand rounds (replay included)."}),
		settled: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_settled", Help: "1 once the first threshold is set (training settled or the record bound reached), else 0."}),
		firstRecords: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_coordinator_first_threshold_records",
			Help: "Stream records read by trainers when the first threshold was set (0: none yet); at most --first-threshold-records."}),
	}
	// Labelled counters exist from the start at 0 for their known labels
	// ("other": an error Submit did not name).
	for _, r := range round.Reasons {
		m.rejected.WithLabelValues(string(r))
	}
	m.rejected.WithLabelValues("other")
	if reg != nil {
		reg.MustRegister(m.rounds, m.round, m.abandoned, m.roundSeconds, m.members, m.rejected, m.loss, m.samples, m.version, m.threshold, m.heldout, m.settled, m.firstRecords, m.records, m.drifted,
			m.refused, m.benched, m.ckFailures, m.ckFailing, m.ckSkipped, m.state, m.presentations)
	}
	return m
}
