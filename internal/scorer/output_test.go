package scorer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
)

// readAll reads topic from its start with a fresh group until want
// records are in or wait passes, and returns them.
func readAll(t *testing.T, ctx context.Context, brokers []string, topic string, want int, wait time.Duration) []stream.Record {
	t.Helper()
	r, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: topic, Group: fmt.Sprintf("check-%s-%d", topic, time.Now().UnixNano()),
		StartFirst: true, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var out []stream.Record
	for len(out) < want {
		b, err := r.Batch(rctx)
		if err != nil {
			break
		}
		out = append(out, b...)
	}
	return out
}

// TestOversizedRecordIsDeadLetteredAndThePartitionMovesOn: a record of
// 1,048,400 bytes (the broker takes it) is too large for the dead-letter
// topic once recon's headers are added; it is dead-lettered cut, with its
// size and digest, and the records after it on its partition are scored
// within 10 s. Before, the dead-letter write was retried for ever and the
// partition never moved again.
func TestOversizedRecordIsDeadLetteredAndThePartitionMovesOn(t *testing.T) {
	const p = 8
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(4 << 20)}))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 1, "alerts": 1, "dlq": 1, "scores": 1}); err != nil {
		t.Fatal(err)
	}
	events := newSynthProducer(t, brokers, "events")
	events.produce(ctx, 50)
	big := []byte(`{"padding":"` + strings.Repeat("x", 1048400-14) + `"}`)
	raw := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "events", BatchBytes: 4 << 20, RequiredAcks: kafka.RequireAll}
	if err := raw.WriteMessages(ctx, kafka.Message{Key: []byte("big"), Value: big, Headers: []kafka.Header{{Key: "trace-id", Value: []byte("abc")}}}); err != nil {
		t.Fatalf("producing the large record: %v", err)
	}
	raw.Close()
	events.produce(ctx, 50)
	produced := time.Now()

	var logs testkit.LogBuffer
	metrics := NewMetrics(nil)
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq", ScoresTopic: "scores",
		Format: stream.JSONArray, Cache: cacheUntrained(t, p), Log: slog.New(slog.NewTextHandler(&logs, nil)), MaxWait: 5 * time.Millisecond,
		Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = rep.Run(rctx) }()

	scores := readAll(t, ctx, brokers, "scores", 100, 10*time.Second)
	if len(scores) < 100 {
		t.Fatalf("%d of 100 records scored within 10 s of producing (%v); the large record stopped its partition:\n%s",
			len(scores), time.Since(produced).Round(time.Millisecond), logs.String())
	}
	dl := readAll(t, ctx, brokers, "dlq", 1, 10*time.Second)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want the large record's", len(dl))
	}
	d := dl[0]
	sum := sha256.Sum256(big)
	if header(d, HeaderReason) != "bad_json" || header(d, HeaderTruncated) != "true" ||
		header(d, HeaderOriginalSize) != strconv.Itoa(len(big)) || header(d, HeaderOriginalSHA256) != hex.EncodeToString(sum[:]) {
		t.Errorf("dead letter headers %v", d.Headers)
	}
	if header(d, "trace-id") != "abc" {
		t.Errorf("the source record's header is not kept: %v", d.Headers)
	}
	if len(d.Value) >= len(big) || string(d.Value) != string(big[:len(d.Value)]) {
		t.Errorf("dead letter value: %d bytes, want a prefix of the %d", len(d.Value), len(big))
	}
	if got := testutil.ToFloat64(metrics.outputTooLarge.WithLabelValues(outDeadLetters)) + testutil.ToFloat64(metrics.outputFailures.WithLabelValues(outDeadLetters)); got != 0 {
		t.Errorf("the dead letter was cut before it was sent, yet %v refusals were counted", got)
	}
}

// TestRefusedOutputFailsReadiness: the scores topic vanishes under a
// running replica. Writes to it fail (counted), /readyz's check fails
// within 30 s, the group's lag grows, and the alerts of the batches held
// back are written once each: a retry re-sends only what failed. Once the
// topic is back, the replica is ready and everything is out.
func TestRefusedOutputFailsReadiness(t *testing.T) {
	const p = 8
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	topics := map[string]int{"events": 2, "alerts": 1, "dlq": 1, "scores": 1}
	if err := stream.EnsureTopics(ctx, brokers, topics); err != nil {
		t.Fatal(err)
	}
	store := cacheUntrained(t, p)
	c, err := store.Latest()
	if err != nil {
		t.Fatal(err)
	}
	c.Version, c.Threshold = 2, 1e-12 // every record alerts
	if err := store.Put(c); err != nil {
		t.Fatal(err)
	}
	var logs testkit.LogBuffer
	metrics := NewMetrics(nil)
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq", ScoresTopic: "scores",
		Format: stream.JSONArray, Cache: store, Log: slog.New(slog.NewTextHandler(&logs, nil)), MaxWait: 5 * time.Millisecond,
		Metrics: metrics, LagEvery: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = rep.Run(rctx) }()
	events := newSynthProducer(t, brokers, "events")
	events.produce(ctx, 100)
	if got := readAll(t, ctx, brokers, "alerts", 100, 20*time.Second); len(got) != 100 {
		t.Fatalf("%d of 100 alerts before the topic vanished", len(got))
	}
	testkit.Until(ctx, func() bool { return rep.Ready() == nil })

	admin := &kafka.Client{Addr: kafka.TCP(brokers...)}
	if _, err := admin.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{"scores"}}); err != nil {
		t.Fatal(err)
	}
	events.produce(ctx, 200)
	deleted := time.Now()
	var notReady error
	maxLag := 0.0
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	testkit.Until(nctx, func() bool { notReady = rep.Ready(); return notReady != nil })
	cancel()
	if notReady == nil {
		t.Fatalf("still ready 30 s after its scores topic vanished:\n%s", logs.String())
	}
	t.Logf("not ready after %v: %v", time.Since(deleted).Round(time.Millisecond), notReady)
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	testkit.Until(lctx, func() bool {
		maxLag = max(maxLag, testutil.ToFloat64(metrics.lag.WithLabelValues("0"))+testutil.ToFloat64(metrics.lag.WithLabelValues("1")))
		return maxLag > 0
	})
	cancel()
	if maxLag == 0 {
		t.Error("the lag gauge stayed 0 while nothing could be committed")
	}
	if got := testutil.ToFloat64(metrics.outputFailures.WithLabelValues(outScores)); got < 2 {
		t.Errorf("recon_scorer_output_write_failures_total{output=scores} = %v", got)
	}
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"scores": 1}); err != nil {
		t.Fatal(err)
	}
	if !testkit.Until(ctx, func() bool { return rep.Ready() == nil }) {
		t.Fatalf("not ready again after the topic came back: %v\n%s", rep.Ready(), logs.String())
	}
	alerts := readAll(t, ctx, brokers, "alerts", 300, 20*time.Second)
	// Reading on for 2 s more catches any duplicate written after them.
	alerts = append(alerts, readAll(t, ctx, brokers, "alerts", 1<<30, 2*time.Second)[len(alerts):]...)
	ids := map[string]int{}
	for _, m := range alerts {
		var a Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			t.Fatal(err)
		}
		ids[a.ID]++
	}
	dups := 0
	for _, n := range ids {
		dups += n - 1
	}
	if len(ids) != 300 || dups != 0 {
		t.Errorf("%d distinct alerts of 300, %d written more than once", len(ids), dups)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), " kind=refused ") {
		t.Errorf("no warning of kind refused:\n%s", logs.String())
	}
}
