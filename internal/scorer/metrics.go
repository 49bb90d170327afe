package scorer

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Metrics are a scorer replica's Prometheus metrics.
type Metrics struct {
	records     prometheus.Counter
	alerts      prometheus.Counter
	deadLetters *prometheus.CounterVec
	version     prometheus.Gauge
	batch       prometheus.Histogram
	latency     prometheus.Histogram
	lag         *prometheus.GaugeVec
	// commitFailures counts batches published but not committed.
	commitFailures prometheus.Counter
}

// NewMetrics registers the metrics on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		records:     prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_records_total", Help: "Records scored or dead-lettered, their output acknowledged by Kafka."}),
		alerts:      prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_alerts_total", Help: "Alerts written."}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_scorer_dead_letters_total", Help: "Records dead-lettered, by reason."}, []string{"reason"}),
		version:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_scorer_model_version", Help: "Checkpoint version scoring."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recon_scorer_batch_seconds", Help: "Time to decode and score one batch.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "recon_scorer_event_to_alert_seconds", Help: "From a record's Kafka timestamp to its alert's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "recon_scorer_consumer_lag",
			Help: "Records behind the end of each partition this replica consumes, as of its last published batch."}, []string{"partition"}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "recon_scorer_commit_failures_total",
			Help: "Batches published whose offsets could not be committed (Kafka re-delivers their records unless a later commit covers them)."}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.alerts, m.deadLetters, m.version, m.batch, m.latency, m.lag, m.commitFailures)
	}
	return m
}

// observe records one published batch.
func (m *Metrics) observe(out Output, msgs []kafka.Message, scoring time.Duration, acked time.Time, version uint64) {
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
	// A fetched record carries its partition's high watermark: the lag
	// after it is the records between.
	last := map[int]int{} // partition -> index of its newest record
	for i := range msgs {
		if j, ok := last[msgs[i].Partition]; !ok || msgs[i].Offset > msgs[j].Offset {
			last[msgs[i].Partition] = i
		}
	}
	for part, i := range last {
		if msg := &msgs[i]; msg.HighWaterMark > 0 {
			m.lag.WithLabelValues(strconv.Itoa(part)).Set(float64(max(msg.HighWaterMark-msg.Offset-1, 0)))
		}
	}
	m.version.Set(float64(version))
}
