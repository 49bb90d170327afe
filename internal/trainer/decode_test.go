package trainer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/stream"
)

// produce writes values to a new topic of one partition.
func produce(t *testing.T, ctx context.Context, bs []string, topic string, values [][]byte) {
	t.Helper()
	if err := stream.EnsureTopics(ctx, bs, map[string]int{topic: 1}); err != nil {
		t.Fatal(err)
	}
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: bs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	msgs := make([]stream.Record, len(values))
	for i, v := range values {
		msgs[i] = stream.Record{Key: []byte(fmt.Sprint(i)), Value: v}
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

func source(t *testing.T, ctx context.Context, bs []string, topic string, f stream.Format, log *slog.Logger, m *trainer.Metrics) *trainer.KafkaSource {
	t.Helper()
	codec, err := stream.NewCodec(f, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: bs, Topic: topic, Group: "g-" + topic + "-" + f.String(), StartFirst: true, MaxBatch: 500})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return trainer.NewKafkaSource(ctx, rd, codec, log, m)
}

// CSV records read as JSON arrays (a wrong --format): CheckRecords fails
// before the worker joins, naming the topic, the format and the first
// record's problem, and Run returns ErrRefused without contacting the
// coordinator. Read as CSV, the same records pass and stay for training.
func TestKafkaSourceRefusesAWrongFormat(t *testing.T) {
	bs := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var values [][]byte
	for i := range 50 {
		values = append(values, []byte(fmt.Sprintf("%d,2.5,-1", i)))
	}
	produce(t, ctx, bs, "csv-records", values)

	wrong := source(t, ctx, bs, "csv-records", stream.JSONArray, testkit.Quiet(), nil)
	err := wrong.CheckRecords(ctx)
	if err == nil {
		t.Fatal("CheckRecords passed CSV records read as json-array")
	}
	for _, want := range []string{"none of the first", "csv-records", "json-array", "3 features", "--format"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	// Run stops at once with ErrRefused; its connection goes nowhere.
	wk, err := trainer.New(trainer.Config{ID: "w", Conn: deadConn(t), Log: testkit.Quiet(), Source: wrong})
	if err != nil {
		t.Fatal(err)
	}
	if err := wk.Run(ctx); !errors.Is(err, trainer.ErrRefused) {
		t.Fatalf("Run returned %v, want ErrRefused", err)
	}

	right := source(t, ctx, bs, "csv-records", stream.CSV, testkit.Quiet(), nil)
	if err := right.CheckRecords(ctx); err != nil {
		t.Fatalf("CheckRecords refused records of the right format: %v", err)
	}
	dst := make([]float64, 3*50)
	if n, err := right.Read(dst); err != nil || n == 0 || dst[0] != 0 || dst[1] != 2.5 {
		t.Fatalf("after the check, Read = %d, %v, %v: the checked records must stay for training", n, err, dst[:3])
	}
}

// Most records undecodable (60%): a warning names the share and the first
// error, and the metrics count every record consumed and every undecodable
// one by reason.
func TestKafkaSourceCountsAndWarnsOfUndecodableRecords(t *testing.T) {
	bs := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const total = 2000
	var values [][]byte
	for i := range total {
		v := fmt.Sprintf("[%d,1,2]", i)
		if i%5 < 3 {
			v = `{"a":1}`
		}
		values = append(values, []byte(v))
	}
	produce(t, ctx, bs, "mostly-bad", values)
	var logs testkit.LogBuffer
	reg := prometheus.NewRegistry()
	m := trainer.NewMetrics(reg)
	k := source(t, ctx, bs, "mostly-bad", stream.JSONArray, slog.New(slog.NewTextHandler(&logs, nil)), m)
	if err := k.CheckRecords(ctx); err != nil {
		t.Fatalf("CheckRecords refused a topic where 40%% decode: %v", err)
	}
	dst := make([]float64, 3*100)
	got := 0
	for got < total*2/5 {
		n, err := k.Read(dst)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	if !regexp.MustCompile(`level=WARN .*undecodable=\d+ of=\d+ format=json-array`).MatchString(logs.String()) {
		t.Errorf("no warning of the undecodable share; log:\n%s", logs.String())
	}
	if n := testutil.ToFloat64(metric(t, reg, "recon_worker_records_consumed_total")); n < total {
		t.Errorf("records consumed %v, want >= %d", n, total)
	}
	if n := testutil.ToFloat64(metric(t, reg, "recon_worker_records_undecodable_total")); n < total*3/5 {
		t.Errorf("records undecodable %v, want >= %d", n, total*3/5)
	}
}

// metric returns the collector registered under name.
func metric(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	found := false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		found = true
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	if !found {
		t.Fatalf("metric %s not registered", name)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
	c.Add(sum)
	return c
}

// deadConn is a connection to a loopback port nothing listens on.
func deadConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
