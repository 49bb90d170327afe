package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
)

// preloadResult describes the records written before the throughput runs.
type preloadResult struct {
	records, anomalies int64
	bytes              int64
	elapsed            time.Duration
	cpu                cpuUse
}

// preload writes n records to topic as fast as the broker takes them:
// several goroutines generate records and write chunks through one
// stream.Writer (acks=all).
func preload(ctx context.Context, brokers []string, topic string, n int, anomalies float64, digits int, basis []float64, brokerPID int) (preloadResult, error) {
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		return preloadResult{}, err
	}
	defer w.Close()
	const chunk = 5000
	const producers = 8
	var next, anom, size atomic.Int64
	cpu := startCPU(brokerPID)
	t0 := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := newGen(basis, uint64(1000+p), anomalies, digits)
			msgs := make([]stream.Record, 0, chunk)
			for {
				lo := next.Add(chunk) - chunk
				if lo >= int64(n) || ctx.Err() != nil {
					return
				}
				hi := min(lo+chunk, int64(n))
				msgs = msgs[:0]
				var a, s int64
				for i := lo; i < hi; i++ {
					v, anomalous := g.next(nil)
					if anomalous {
						a++
					}
					s += int64(len(v))
					msgs = append(msgs, stream.Record{Key: strconv.AppendInt(nil, i, 10), Value: v})
				}
				if err := w.Write(ctx, msgs...); err != nil {
					errs <- err
					cancel()
					return
				}
				anom.Add(a)
				size.Add(s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return preloadResult{}, fmt.Errorf("preload %s: %w", topic, err)
	}
	return preloadResult{records: int64(n), anomalies: anom.Load(), bytes: size.Load(), elapsed: time.Since(t0), cpu: cpu.stop()}, nil
}

// rate is one throughput measurement.
type rate struct {
	perSec float64       // records/s from the first committed batch to the last
	join   time.Duration // from start to the first commit
	cpu    cpuUse
	alerts int64 // scorer runs: alerts written
	dlq    int64 // scorer runs: records dead-lettered
	// clientErrs counts kafka-go's error reports (timeouts, reconnects).
	clientErrs map[string]int
}

// progress turns a count of committed records, sampled as it grows, into a
// rate: records after the first commit over the time since it.
type progress struct {
	start, first, last time.Time
	nFirst, n          int64
}

func (p *progress) observe(n int64, now time.Time) {
	if n > 0 && p.first.IsZero() {
		p.first, p.nFirst = now, n
	}
	p.n, p.last = n, now
}

func (p *progress) rate() rate {
	r := rate{join: p.first.Sub(p.start)}
	if d := p.last.Sub(p.first).Seconds(); d > 0 {
		r.perSec = float64(p.n-p.nFirst) / d
	}
	return r
}

// rawConsume reads n records of topic as a fresh consumer group, through the
// same stream.Reader the scorer uses (kafka-go group reader, batches of
// maxBatch into one array, synchronous commit per batch), doing nothing
// with them.
func rawConsume(ctx context.Context, brokers []string, topic, group string, n int64, maxBatch int, maxWait time.Duration, clog *clientLog, brokerPID int) (rate, error) {
	clog.take()
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: topic, Group: group,
		MaxBatch: maxBatch, MaxWait: maxWait, StartFirst: true, Logger: slog.New(clog)})
	if err != nil {
		return rate{}, err
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout(n))
	defer cancel()
	cpu := startCPU(brokerPID)
	p := progress{start: time.Now()}
	var got int64
	var msgs []stream.Record
	for got < n {
		var err error
		msgs, err = rd.BatchInto(ctx, msgs) // one array, as the scorer's go round
		if err != nil {
			return rate{}, fmt.Errorf("raw consumer: %d of %d records: %w", got, n, err)
		}
		if err := rd.Commit(ctx, msgs...); err != nil {
			return rate{}, fmt.Errorf("raw consumer: %w", err)
		}
		got += int64(len(msgs))
		p.observe(got, time.Now())
	}
	r := p.rate()
	r.cpu, r.clientErrs = cpu.stop(), clog.take()
	return r, nil
}

// rawKafkaGo is rawConsume with a plain kafka-go group reader, no
// pkg/stream in between: the "raw kafka-go group-consume rate" the aim
// compares with. Its own settings (fetchWait as kafka-go's MaxWait, which
// is also the fetch's socket deadline; 16 MB fetches) differ a little from
// pkg/stream's (1 s, 4 MB); batches still fill for at most maxWait.
func rawKafkaGo(ctx context.Context, brokers []string, topic, group string, n int64, maxBatch int, maxWait, fetchWait time.Duration, clog *clientLog, brokerPID int) (rate, error) {
	clog.take()
	l := slog.New(clog)
	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, GroupID: group,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: fetchWait, CommitInterval: 0, StartOffset: kafka.FirstOffset,
		QueueCapacity: max(maxBatch, 100),
		ErrorLogger:   kafka.LoggerFunc(func(msg string, a ...any) { l.Debug("kafka reader", "msg", fmt.Sprintf(msg, a...)) })})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout(n))
	defer cancel()
	cpu := startCPU(brokerPID)
	p := progress{start: time.Now()}
	var got int64
	batch := make([]kafka.Message, 0, maxBatch)
	for got < n {
		first, err := rd.FetchMessage(ctx)
		if err != nil {
			return rate{}, fmt.Errorf("raw kafka-go consumer: %d of %d records: %w", got, n, err)
		}
		batch = append(batch[:0], first)
		wctx, wcancel := context.WithTimeout(ctx, maxWait)
		for len(batch) < maxBatch {
			m, err := rd.FetchMessage(wctx)
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		wcancel()
		if err := rd.CommitMessages(ctx, batch...); err != nil {
			return rate{}, fmt.Errorf("raw kafka-go consumer: commit: %w", err)
		}
		got += int64(len(batch))
		p.observe(got, time.Now())
	}
	r := p.rate()
	r.cpu, r.clientErrs = cpu.stop(), clog.take()
	return r, nil
}

// phaseTimeout bounds a consuming phase of n records: generous, so only a
// stall ends it.
func phaseTimeout(n int64) time.Duration {
	return 60*time.Second + time.Duration(n)*50*time.Microsecond
}

// replicaRun is a scorer replica running in this process.
type replicaRun struct {
	rep    *scorer.Replica
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's outcome, once done is closed
}

func startReplica(ctx context.Context, cfg scorer.ReplicaConfig) (*replicaRun, error) {
	reg := prometheus.NewRegistry()
	cfg.Metrics = scorer.NewMetrics(reg)
	rep, err := scorer.NewReplica(cfg)
	if err != nil {
		return nil, err
	}
	if rep.Version() == 0 {
		return nil, errors.New("scorer replica found no checkpoint in its cache")
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &replicaRun{rep: rep, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = rep.Run(ctx)
		close(r.done)
	}()
	return r, nil
}

// waitProcessed polls the replica's committed count until it reaches n,
// feeding p; it fails if the replica stops or makes no progress for stall.
func (r *replicaRun) waitProcessed(ctx context.Context, n int64, p *progress, stall time.Duration) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		now := time.Now()
		got := r.rep.Processed.Load()
		if p != nil {
			p.observe(got, now)
		}
		if got >= n {
			return nil
		}
		if got != last {
			last, lastAt = got, now
		} else if now.Sub(lastAt) > stall {
			return fmt.Errorf("scorer replica stalled at %d of %d records for %v", got, n, stall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.done:
			err := r.err
			if err == nil {
				err = errors.New("it returned")
			}
			return fmt.Errorf("scorer replica stopped at %d of %d records: %w", got, n, err)
		case <-tick.C:
		}
	}
}

// stop ends the replica and waits for it; it may be called again.
func (r *replicaRun) stop() error {
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(30 * time.Second):
		return errors.New("scorer replica did not stop within 30 s")
	}
}

// counter returns the sum of the replica's counter name over its labels.
func (r *replicaRun) counter(name string) int64 {
	mfs, _ := r.reg.Gather()
	var s float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				s += m.GetCounter().GetValue()
			}
		}
	}
	return int64(s)
}

// histogram is a Prometheus histogram's state.
type histogram struct {
	bounds []float64 // bucket upper bounds
	cum    []uint64  // cumulative counts per bucket
	count  uint64
	sum    float64
}

// histogram returns the replica's histogram name (zero when absent).
func (r *replicaRun) histogram(name string) histogram {
	mfs, _ := r.reg.Gather()
	var h histogram
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		ph := mf.GetMetric()[0].GetHistogram()
		h.count, h.sum = ph.GetSampleCount(), ph.GetSampleSum()
		for _, b := range ph.GetBucket() {
			h.bounds = append(h.bounds, b.GetUpperBound())
			h.cum = append(h.cum, b.GetCumulativeCount())
		}
	}
	return h
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile
// does (linear within a bucket) and returns the bucket's bounds too.
func (h histogram) quantile(q float64) (v, lo, hi float64) {
	if h.count == 0 {
		return 0, 0, 0
	}
	rank := q * float64(h.count)
	prev, prevCum := 0.0, uint64(0)
	for i, b := range h.bounds {
		if float64(h.cum[i]) >= rank {
			in := float64(h.cum[i] - prevCum)
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(prevCum)) / in
			}
			return prev + frac*(b-prev), prev, b
		}
		prev, prevCum = b, h.cum[i]
	}
	return prev, prev, prev // beyond the last bound
}

// scoreRun runs one scorer replica over the n preloaded records of topic as
// a fresh consumer group, until it has committed them all.
func scoreRun(ctx context.Context, base scorer.ReplicaConfig, group string, n int64, clog *clientLog, brokerPID int) (rate, error) {
	cfg := base
	cfg.Group = group
	cfg.Log = slog.New(clog)
	clog.take()
	cpu := startCPU(brokerPID)
	p := progress{start: time.Now()}
	r, err := startReplica(ctx, cfg)
	if err != nil {
		return rate{}, err
	}
	werr := r.waitProcessed(ctx, n, &p, 30*time.Second)
	c := cpu.stop()
	serr := r.stop()
	if werr != nil {
		return rate{}, werr
	}
	if serr != nil {
		return rate{}, serr
	}
	res := p.rate()
	res.cpu = c
	res.alerts = r.counter("recon_scorer_alerts_total")
	res.dlq = r.counter("recon_scorer_dead_letters_total")
	res.clientErrs = clog.take()
	return res, nil
}

// replicaConfig is the scorer configuration of the benchmark.
func replicaConfig(brokers []string, topic, alerts, dlq string, cache *checkpoint.Store, maxBatch int, maxWait time.Duration, log *slog.Logger) scorer.ReplicaConfig {
	return scorer.ReplicaConfig{Brokers: brokers, Topic: topic, AlertsTopic: alerts, DLQTopic: dlq,
		Format: stream.JSONArray, MaxBatch: maxBatch, MaxWait: maxWait, Cache: cache, Log: log}
}
