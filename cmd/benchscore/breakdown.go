package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
)

// stages is where a scorer loop's wall time went.
type stages struct {
	alertTimeout                    time.Duration // the alert writer's batch timeout
	batches, records, alerts        int64
	fetch, process, publish, commit time.Duration // summed over the batches
	wall                            time.Duration // first batch (the group join) left out
	cpu                             cpuUse
	clientErrs                      map[string]int
}

func (s stages) rate() float64 { return float64(s.records) / s.wall.Seconds() }

// breakdown consumes the n records of base.Topic as a fresh group with a
// copy of scorer.Replica.Run's loop (stream.Reader batch, Batch.Process,
// alerts and dead letters written through stream.Writers, synchronous
// commit), timing each stage. Only the alert writer's batch timeout may
// differ from the replica's (5 ms).
func breakdown(ctx context.Context, base scorer.ReplicaConfig, group string, n int64, alertTimeout time.Duration, clog *clientLog, brokerPID int) (stages, error) {
	st := stages{alertTimeout: alertTimeout}
	c, err := base.Cache.Latest()
	if err != nil {
		return st, err
	}
	m, err := scorer.NewModel(c)
	if err != nil {
		return st, err
	}
	b, err := scorer.NewBatch(m, base.Format, 3)
	if err != nil {
		return st, err
	}
	log := slog.New(clog)
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: base.Brokers, Topic: base.Topic, Group: group,
		MaxBatch: base.MaxBatch, MaxWait: base.MaxWait, StartFirst: true, Logger: log})
	if err != nil {
		return st, err
	}
	defer rd.Close()
	alerts, err := stream.NewWriter(stream.WriterConfig{Brokers: base.Brokers, Topic: base.AlertsTopic, BatchTimeout: alertTimeout, Logger: log})
	if err != nil {
		return st, err
	}
	defer alerts.Close()
	dlq, err := stream.NewWriter(stream.WriterConfig{Brokers: base.Brokers, Topic: base.DLQTopic, BatchTimeout: alertTimeout, Logger: log})
	if err != nil {
		return st, err
	}
	defer dlq.Close()
	ctx, cancel := context.WithTimeout(ctx, phaseTimeout(n))
	defer cancel()
	clog.take()
	var cpu *cpuMeter
	var start time.Time
	var got int64
	for got < n {
		t0 := time.Now()
		msgs, err := rd.Batch(ctx)
		if err != nil {
			return st, fmt.Errorf("breakdown: %d of %d records: %w", got, n, err)
		}
		t1 := time.Now()
		out := b.Process(msgs, t1)
		t2 := time.Now()
		if len(out.Alerts) > 0 {
			if err := alerts.Write(ctx, out.Alerts...); err != nil {
				return st, err
			}
		}
		if len(out.DeadLetters) > 0 {
			if err := dlq.Write(ctx, out.DeadLetters...); err != nil {
				return st, err
			}
		}
		t3 := time.Now()
		if err := rd.Commit(ctx, msgs...); err != nil {
			return st, err
		}
		t4 := time.Now()
		got += int64(len(msgs))
		if start.IsZero() { // the first batch waited for the group join
			start, cpu = t4, startCPU(brokerPID)
			continue
		}
		st.batches++
		st.records += int64(len(msgs))
		st.alerts += int64(len(out.Alerts))
		st.fetch += t1.Sub(t0)
		st.process += t2.Sub(t1)
		st.publish += t3.Sub(t2)
		st.commit += t4.Sub(t3)
	}
	st.wall = time.Since(start)
	st.cpu = cpu.stop()
	st.clientErrs = clog.take()
	return st, nil
}
