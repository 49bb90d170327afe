package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
)

// latencyResult is the event-to-alert phase's outcome.
type latencyResult struct {
	target, achieved float64         // records/s asked for and produced in the measured window
	produced         int64           // records in the measured window
	anomalies        int64           // injected anomalies in the measured window
	lat              []time.Duration // sorted
	// Per alert: record handed to the producer -> the replica's scored_at
	// (producer, broker, fetch and batch fill), and scored_at -> alert
	// received (process, alert write, alert fetch); each sorted.
	toScored, afterScored []time.Duration
	readerStats           kafka.ReaderStats
	clientErrs            map[string]int
	scorerHist            histogram // the replica's own event-to-alert histogram (all alerts)
	cpu                   cpuUse
	maxInFlight           int // most concurrent produce calls seen
}

func (r latencyResult) pct(q float64) time.Duration { return pct(r.lat, q) }

// pct returns the q-quantile of sorted d (nearest rank).
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

const (
	probes = 200         // records that show the replica has joined its group
	warmup = time.Second // produced at the rate but not measured
	// alertWait is the alert consumer's fetch wait. With MinBytes 1 the
	// broker answers as soon as there is an alert, so it costs no latency;
	// kafka-go also makes it the fetch's socket deadline, so a short one
	// turns a busy broker into i/o timeouts and 100 ms reconnects.
	alertWait = 500 * time.Millisecond
)

// latencyPhase runs a scorer replica on an empty topic, produces records at
// a steady rate through a stream.Writer (5 ms batch timeout, acks=all) and
// consumes the alerts topic; an alert's latency is its arrival at the alert
// consumer minus the moment its source record was handed to the producer
// (the record's key is its sequence number, whose hand-off time this process
// keeps in nanoseconds).
func latencyPhase(ctx context.Context, cfg scorer.ReplicaConfig, hz float64, dur time.Duration, g *gen, clog *clientLog, brokerPID int) (latencyResult, error) {
	res := latencyResult{target: hz}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	capacity := probes + int(hz*(warmup+dur).Seconds()*1.05) + 1000
	sent := make([]atomic.Int64, capacity) // unix nanoseconds a record was handed to the producer
	var firstMeasured atomic.Int64
	firstMeasured.Store(int64(capacity))

	// The alert consumer: a plain partition reader, no group to join.
	ar := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.AlertsTopic, Partition: 0,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: alertWait})
	defer ar.Close()
	var mu sync.Mutex
	var received atomic.Int64
	var lat, toScored, afterScored []time.Duration
	readerDone := make(chan error, 1)
	go func() {
		for {
			m, err := ar.FetchMessage(ctx)
			now := time.Now().UnixNano()
			if err != nil {
				readerDone <- err
				return
			}
			received.Add(1)
			seq, err := strconv.ParseInt(string(m.Key), 10, 64)
			if err != nil || seq < 0 || seq >= int64(capacity) {
				readerDone <- fmt.Errorf("alert with key %q: not one of this run's records", m.Key)
				return
			}
			if seq >= firstMeasured.Load() {
				var a scorer.Alert
				if err := json.Unmarshal(m.Value, &a); err != nil {
					readerDone <- fmt.Errorf("alert %q: %w", m.Key, err)
					return
				}
				t, scored := sent[seq].Load(), a.ScoredAt.UnixNano()
				mu.Lock()
				lat = append(lat, time.Duration(now-t))
				toScored = append(toScored, time.Duration(scored-t))
				afterScored = append(afterScored, time.Duration(now-scored))
				mu.Unlock()
			}
		}
	}()

	r, err := startReplica(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer func() { _ = r.stop() }() // for the early returns: the end checks it
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: cfg.Brokers, Topic: cfg.Topic})
	if err != nil {
		return res, err
	}
	defer w.Close()

	// Probe records until the replica has joined its group and scored them.
	msgs := make([]stream.Record, 0, probes)
	save := g.anomalies
	g.anomalies = 0
	for i := range probes {
		v, _ := g.next(nil)
		now := time.Now()
		sent[i].Store(now.UnixNano())
		msgs = append(msgs, stream.Record{Key: strconv.AppendInt(nil, int64(i), 10), Value: v, Time: now})
	}
	g.anomalies = save
	if err := w.Write(ctx, msgs...); err != nil {
		return res, fmt.Errorf("latency probes: %w", err)
	}
	if err := r.waitProcessed(ctx, probes, nil, 60*time.Second); err != nil {
		return res, fmt.Errorf("latency probes: %w", err)
	}

	// Steady production: every millisecond, the records due by then.
	clog.take()
	cpu := startCPU(brokerPID)
	sem := make(chan struct{}, 512)
	var wg sync.WaitGroup
	var werr error
	var werrOnce sync.Once
	tick := time.NewTicker(time.Millisecond)
	start := time.Now()
	warmEnd, end := start.Add(warmup), start.Add(warmup+dur)
	var n, measured, anomalies int64
	var measuredStart time.Time
	for seq := int64(probes); ; {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			break
		}
		if measuredStart.IsZero() && !now.Before(warmEnd) {
			measuredStart = now
			firstMeasured.Store(seq)
		}
		due := int64(hz*now.Sub(start).Seconds()) - n
		if due > 0 && seq+due <= int64(capacity) {
			batch := make([]stream.Record, 0, due)
			for range due {
				v, anomalous := g.next(nil)
				if anomalous && !measuredStart.IsZero() {
					anomalies++
				}
				sent[seq].Store(now.UnixNano())
				batch = append(batch, stream.Record{Key: strconv.AppendInt(nil, seq, 10), Value: v, Time: now})
				seq++
			}
			n += due
			if !measuredStart.IsZero() {
				measured += due
			}
			sem <- struct{}{}
			res.maxInFlight = max(res.maxInFlight, len(sem))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.Write(ctx, batch...); err != nil {
					werrOnce.Do(func() { werr = err; cancel() })
				}
				<-sem
			}()
		}
		<-tick.C
	}
	window := time.Since(measuredStart)
	tick.Stop()
	wg.Wait()
	if werr != nil {
		return res, fmt.Errorf("latency producer: %w", werr)
	}
	res.produced, res.anomalies = measured, anomalies
	res.achieved = float64(measured) / window.Seconds()

	// Everything scored and committed, hence every alert acknowledged; then
	// wait for the alert consumer to have them all.
	if err := r.waitProcessed(ctx, probes+n, nil, 30*time.Second); err != nil {
		return res, err
	}
	res.cpu = cpu.stop()
	res.clientErrs = clog.take()
	want := r.counter("recon_scorer_alerts_total")
	deadline := time.Now().Add(15 * time.Second)
	for received.Load() < want {
		select {
		case err := <-readerDone:
			return res, fmt.Errorf("alert consumer: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("alert consumer: %d of %d alerts within 15 s", received.Load(), want)
		}
	}
	res.scorerHist = r.histogram("recon_scorer_event_to_alert_seconds")
	if err := r.stop(); err != nil {
		return res, err
	}
	cancel()
	if err := <-readerDone; err != nil && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("alert consumer: %w", err)
	}
	res.readerStats = ar.Stats()
	mu.Lock()
	res.lat, res.toScored, res.afterScored = slices.Clone(lat), slices.Clone(toScored), slices.Clone(afterScored)
	mu.Unlock()
	slices.Sort(res.lat)
	slices.Sort(res.toScored)
	slices.Sort(res.afterScored)
	return res, nil
}
