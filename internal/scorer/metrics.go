package scorer

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recon-ad/recon/internal/kernels"
	"github.com/recon-ad/recon/pkg/stream"
)

// Metrics are a scorer replica's Prometheus metrics.
type Metrics struct {
	records     prometheus.Counter
	alerts      prometheus.Counter
	deadLetters *prometheus.CounterVec
	version     prometheus.Gauge
	threshold   prometheus.Gauge
	batch       prometheus.Histogram
	latency     prometheus.Histogram
	lag         *prometheus.GaugeVec
	kernels     *prometheus.GaugeVec // the kernel set in use (internal/kernels)
	// commitFailures counts batches published but not committed.
	commitFailures prometheus.Counter
	commitFailing  prometheus.Gauge // 1 from a failed commit to the next that works
	// Output writes (publisher).
	outputFailures *prometheus.CounterVec // records whose write failed, per attempt
	outputRetries  *prometheus.CounterVec // batches written again
	outputTooLarge *prometheus.CounterVec // records refused as too large
	outputDropped  prometheus.Counter     // dead letters refused even cut
	outputFailing  prometheus.Gauge       // 1 while writes fail
	offsetResets   prometheus.Counter     // partitions read again after their log went back
	lineageChanges *prometheus.CounterVec // switches to a coordinator that started over or went back
	// HTTP alert sinks (sink.go), by sink; at 0 for the configured ones.
	sinkSent, sinkFailures, sinkRetries *prometheus.CounterVec
}

// NewMetrics registers the metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		kernels:     kernels.NewGauge("recon_scorer_kernels"),
		records:     prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_records_total", Help: "Records scored or dead-lettered, their output acknowledged by Kafka."}),
		alerts:      prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_alerts_total", Help: "Alerts written."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_dead_letters_total", Help: "Records dead-lettered, by reason."}, []string{"reason"}),
		version:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_scorer_model_version", Help: "Checkpoint version scoring."}),
		threshold: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_scorer_threshold",
			Help: "The alert threshold of the checkpoint scoring (0: none yet, so no alerts)."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recon_scorer_batch_seconds", Help: "Time to decode and score one batch.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recon_scorer_event_to_alert_seconds", Help: "From a record's Kafka timestamp to its alert's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recon_scorer_consumer_lag",
			Help: "The scorer group's lag per partition of the input topic (log end minus committed offset), read every 5 s from the brokers; every replica reports the whole group's, so aggregate with max by (partition)."}, []string{"partition"}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_commit_failures_total",
			Help: "Batches published whose offsets could not be committed (Kafka re-delivers their records unless a later commit covers them)."}),
		outputFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_output_write_failures_total",
			Help: "Output records whose write failed, per attempt, by output (alerts, dead_letters, scores); they are retried."}, []string{"output"}),
		outputRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_output_retries_total",
			Help: "Times an output's failed records were written again, by output."}, []string{"output"}),
		outputTooLarge: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_output_too_large_total",
			Help: "Output records refused as too large, by output: dead letters are cut to fit, alerts and scores dead-lettered."}, []string{"output"}),
		outputDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_output_dropped_total",
			Help: "Dead letters the brokers refused even cut to 4 KiB, dropped with an error line."}),
		commitFailing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_scorer_commit_failing",
			Help: "1 from a failed offset commit until one works again, else 0 (records stay published, and are re-delivered unless a later commit covers them)."}),
		outputFailing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_scorer_output_failing",
			Help: "1 while writing output fails (the replica is not ready), else 0."}),
		lineageChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_lineage_changes_total",
			Help: "Times the coordinator's checkpoints did not continue the model in use and the scorer switched to them, by change: new_lineage (it started over on a new store), went_back (its store went back)."}, []string{"change"}),
		sinkSent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_sink_sent_total",
			Help: "Alerts an HTTP alert sink (alertmanager, webhook) acknowledged, by sink."}, []string{"sink"}),
		sinkFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_sink_failures_total",
			Help: "Requests to an HTTP alert sink that failed (refused, an error status, no answer), by sink."}, []string{"sink"}),
		sinkRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_sink_retries_total",
			Help: "Requests sent to an HTTP alert sink again after a transient failure, by sink."}, []string{"sink"}),
		offsetResets: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_offset_resets_total",
			Help: "Partitions whose log went back (a broker restarted empty, a topic recreated), read again from their first retained offset."}),
	}
	// Labelled counters exist from the start at 0 for their known labels.
	for _, r := range DeadLetterReasons {
		m.deadLetters.WithLabelValues(r)
	}
	for _, o := range []string{outAlerts, outDeadLetters, outScores} {
		m.outputFailures.WithLabelValues(o)
		m.outputRetries.WithLabelValues(o)
		m.outputTooLarge.WithLabelValues(o)
	}
	m.lineageChanges.WithLabelValues(changeNewLineage)
	m.lineageChanges.WithLabelValues(changeWentBack)
	if reg != nil {
		reg.MustRegister(m.records, m.alerts, m.deadLetters, m.version, m.threshold, m.batch, m.latency, m.lag, m.commitFailures, m.commitFailing,
			m.outputFailures, m.outputRetries, m.outputTooLarge, m.outputDropped, m.outputFailing, m.offsetResets,
			m.lineageChanges, m.kernels, m.sinkSent, m.sinkFailures, m.sinkRetries)
	}
	return m
}

// DeadLetterReasons are the values of the recon-dlq-reason header.
var DeadLetterReasons = func() []string {
	var r []string
	for _, d := range stream.Reasons {
		r = append(r, string(d))
	}
	return append(r, "non_finite_score", "output_too_large", ReasonSinkRefused)
}()

// setLag sets the lag gauges from a reading of the group's progress and
// drops those of partitions that are gone.
func (m *Metrics) setLag(prog map[int]stream.PartitionProgress) {
	m.lag.Reset()
	for part, p := range prog {
		m.lag.WithLabelValues(strconv.Itoa(part)).Set(float64(p.Lag()))
	}
}

// observe records one published batch.
func (m *Metrics) observe(out Output, msgs []stream.Record, scoring time.Duration, acked time.Time) {
	n := len(msgs)
	m.records.Add(float64(n))
	m.alerts.Add(float64(len(out.Alerts)))
	for _, d := range out.DeadLetters {
		m.deadLetters.WithLabelValues(header(d, HeaderReason)).Inc()
	}
	m.batch.Observe(scoring.Seconds())
	for _, s := range out.Scores {
		if s.Alert && !s.Msg.Time.IsZero() {
			m.latency.Observe(acked.Sub(s.Msg.Time).Seconds())
		}
	}
}
