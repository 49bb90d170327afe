package trainer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
)

// TestKafkaSourceCommitsAcceptedRecords: a worker trains from a topic and
// commits offsets only for records in accepted gradients; after it stops,
// the next group member gets everything not committed, and nothing that was.
func TestKafkaSourceCommitsAcceptedRecords(t *testing.T) {
	const p, total, rounds, batch = 6, 3000, 10, 200
	log := testkit.Quiet()
	bs := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, bs, map[string]int{"ev": 2}); err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c", "d", "e", "f"}
	codec, _ := stream.NewCodec(stream.JSONArray, names)
	src := trainer.NewSynth(1, 5, p, 2, 0.2, 0)
	rec := make([]float64, p)
	var msgs []stream.Record
	for i := 0; i < total; i++ {
		if _, err := src.Read(rec); err != nil {
			t.Fatal(err)
		}
		v := codec.Encode(nil, rec)
		if i%100 == 50 {
			v = []byte(`not json`)
		}
		msgs = append(msgs, stream.Record{Key: []byte(fmt.Sprint(i)), Value: v})
	}
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: bs, Topic: "ev"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()

	co := testenv.StartCoordinator(t, coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: batch, WarmupRecords: 100,
		MaxRounds: rounds, Deadline: 10 * time.Second, CheckpointRounds: 1000})
	srv, conn := co.Server, co.Conn

	wctx, stopWorker := context.WithCancel(ctx)
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: bs, Topic: "ev", Group: "recon-trainer", StartFirst: true, MaxBatch: 100})
	if err != nil {
		t.Fatal(err)
	}
	ks := trainer.NewKafkaSource(wctx, rd, codec, log, nil)
	wk, err := trainer.New(trainer.Config{ID: "k1", Conn: conn, Log: log, Source: ks})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		if err := wk.Run(wctx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(done)
	}()
	if err := srv.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// The replies to the last gradients are still on their way when Run
	// returns: let the worker take them (and queue their commits) first.
	testkit.Within(10*time.Second, func() bool { c, _ := ks.Stats(); return c >= rounds*batch })
	stopWorker()
	<-done
	if !ks.Drain(10 * time.Second) {
		t.Fatal("queued commits did not finish")
	}
	rd.Close()
	if st := srv.Snapshot(); st.Round != rounds {
		t.Fatalf("coordinator at round %d", st.Round)
	}
	committed, skipped := ks.Stats()
	t.Logf("%d rounds of %d records trained from Kafka; %d records committed, %d skipped as undecodable", rounds, batch, committed, skipped)
	if committed < rounds*batch {
		t.Fatalf("committed %d records, at least the %d in accepted gradients expected", committed, rounds*batch)
	}

	// The next member of the group gets everything not committed.
	r2, err := stream.NewReader(stream.ReaderConfig{Brokers: bs, Topic: "ev", Group: "recon-trainer", StartFirst: true, MaxWait: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got := 0
	for got < total-committed {
		b, err := r2.Batch(ctx)
		if err != nil {
			t.Fatalf("re-delivered %d of %d uncommitted records: %v", got, total-committed, err)
		}
		got += len(b)
	}
	if got > total-committed {
		t.Errorf("%d records re-delivered; only %d were uncommitted", got, total-committed)
	}
}
