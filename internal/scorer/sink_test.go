package scorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
)

func TestBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		rate  float64
		steps []struct {
			at   time.Duration
			n    int
			wait time.Duration
		}
	}{
		{"a burst, then the rate", 10, []struct {
			at   time.Duration
			n    int
			wait time.Duration
		}{{0, 10, 0}, {0, 10, time.Second}, {time.Second, 5, 500 * time.Millisecond}, {10 * time.Second, 10, 0}}},
		{"below 1 a second: bursts of 1", 0.5, []struct {
			at   time.Duration
			n    int
			wait time.Duration
		}{{0, 1, 0}, {0, 1, 2 * time.Second}, {4 * time.Second, 1, 0}}},
		{"refills up to the burst only", 2, []struct {
			at   time.Duration
			n    int
			wait time.Duration
		}{{0, 2, 0}, {time.Hour, 2, 0}, {time.Hour, 1, 500 * time.Millisecond}}},
	} {
		b := newBucket(tc.rate)
		for i, s := range tc.steps {
			if got := b.reserve(t0.Add(s.at), s.n); got != s.wait {
				t.Errorf("%s: step %d: wait %v, want %v", tc.name, i, got, s.wait)
			}
		}
	}
}

func TestSinkConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg SinkConfig
		ok  bool
	}{
		{SinkConfig{}, true},
		{SinkConfig{Alertmanager: []string{"http://am:9093"}, Webhooks: []string{"https://hooks.example/x"}, Rate: 5}, true},
		{SinkConfig{Alertmanager: []string{"am:9093"}}, false},
		{SinkConfig{Webhooks: []string{"ftp://x/y"}}, false},
		{SinkConfig{Webhooks: []string{"http://"}}, false},
		{SinkConfig{Rate: -1}, false},
		{SinkConfig{Timeout: -time.Second}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

// testAlerts returns n alerts as the scorer writes them, of source
// offsets 0..n-1 on partition 0 of topic events, keys "k0".. .
func testAlerts(n int, at time.Time) []stream.Record {
	out := make([]stream.Record, n)
	for i := range out {
		a := Alert{Schema: AlertSchema, ID: fmt.Sprintf("events/0/%d", i), Source: RecordRef{Topic: "events", Offset: int64(i), Timestamp: at},
			ScoredAt: at.Add(time.Second), Model: ModelRef{Version: 7, Variant: "plain"}, Score: 12.5, Threshold: 3,
			Features: []Feature{{Name: "bytes", Value: 9000, Reconstruction: 100, Error: 10}, {Name: "port", Value: 22, Reconstruction: 443, Error: 2}}}
		v, _ := json.Marshal(a)
		out[i] = stream.Record{Key: []byte("k" + strconv.Itoa(i)), Value: v}
	}
	return out
}

// TestAlertmanagerSink: alerts reach a fake Alertmanager's /api/v2/alerts
// as postable alerts with the labels to group and route on; with two
// instances, one down, the live one's acknowledgement is enough.
func TestAlertmanagerSink(t *testing.T) {
	var mu sync.Mutex
	var got []postableAlert
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		var as []postableAlert
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, as...)
		mu.Unlock()
	}))
	defer am.Close()
	var downHits atomic.Int64
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		downHits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	sinks, err := newSinks(SinkConfig{Alertmanager: []string{down.URL, am.URL + "/"}, Group: "recon-scorer"}, m, testkit.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"recon_scorer_sink_sent_total", "recon_scorer_sink_failures_total", "recon_scorer_sink_retries_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series before any alert (%v), want 1 at 0", name, n, err)
		}
	}
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	refused, err := deliverSinks(t.Context(), sinks, testAlerts(3, at))
	if err != nil || len(refused) != 0 {
		t.Fatalf("deliver: %v, %d refused", err, len(refused))
	}
	if len(got) != 3 || downHits.Load() != 1 {
		t.Fatalf("%d alerts reached Alertmanager, want 3; the other instance got %d requests, want 1", len(got), downHits.Load())
	}
	for i, a := range got {
		want := map[string]string{"alertname": "ReconAnomaly", "key": "k" + strconv.Itoa(i), "top_feature": "bytes", "model_version": "7", "group": "recon-scorer"}
		if fmt.Sprint(a.Labels) != fmt.Sprint(want) {
			t.Errorf("alert %d: labels %v, want %v", i, a.Labels, want)
		}
		if a.Annotations["id"] != fmt.Sprintf("events/0/%d", i) || a.Annotations["score"] != "12.5" || a.Annotations["threshold"] != "3" ||
			a.Annotations["summary"] == "" || a.Annotations["features"] != "bytes=10 (value 9000, expected 100), port=2 (value 22, expected 443)" {
			t.Errorf("alert %d: annotations %v", i, a.Annotations)
		}
		if !a.StartsAt.Equal(at) || a.EndsAt.Sub(a.StartsAt) != DefaultResolveTimeout {
			t.Errorf("alert %d: startsAt %v endsAt %v, want the record's time and %v later", i, a.StartsAt, a.EndsAt, DefaultResolveTimeout)
		}
	}
	if s := testutil.ToFloat64(m.sinkSent.WithLabelValues("alertmanager")); s != 3 {
		t.Errorf("recon_scorer_sink_sent_total{sink=alertmanager} = %v, want 3", s)
	}
	if f := testutil.ToFloat64(m.sinkFailures.WithLabelValues("alertmanager")); f != 0 {
		t.Errorf("recon_scorer_sink_failures_total = %v: one live instance is success", f)
	}
}

// TestSinkRateLimit: at 50 alerts a second, 100 alerts go in requests of
// at most 50 and take at least a second.
func TestSinkRateLimit(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(as))
		mu.Unlock()
	}))
	defer hook.Close()
	m := NewMetrics(nil)
	sinks, err := newSinks(SinkConfig{Webhooks: []string{hook.URL}, Rate: 50}, m, testkit.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := deliverSinks(t.Context(), sinks, testAlerts(100, t0)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	total := 0
	for _, n := range sizes {
		total += n
		if n > 50 {
			t.Errorf("a request of %d alerts: over the burst of 50", n)
		}
	}
	if total != 100 || took < 950*time.Millisecond {
		t.Errorf("%d alerts in %v (requests %v), want 100 in at least 1 s", total, took, sizes)
	}
}

// alertingCache is cacheUntrained with a threshold every record exceeds.
func alertingCache(t *testing.T, p int) *checkpoint.Store {
	t.Helper()
	store := cacheUntrained(t, p)
	c, err := store.Latest()
	if err != nil {
		t.Fatal(err)
	}
	c.Version, c.Threshold = 2, 1e-12
	if err := store.Put(c); err != nil {
		t.Fatal(err)
	}
	return store
}

// startSinkReplica runs a replica on a fresh in-process broker (topic
// events of 1 partition holding n records) with sinks, until the test ends.
func startSinkReplica(t *testing.T, ctx context.Context, n int, sinks SinkConfig, metrics *Metrics) (brokers []string, rep *Replica) {
	t.Helper()
	brokers = testkit.Kafka(t)
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 1, "alerts": 1, "dlq": 1}); err != nil {
		t.Fatal(err)
	}
	newSynthProducer(t, brokers, "events").produce(ctx, n)
	sinks.RetryMin, sinks.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq",
		Format: stream.JSONArray, Cache: alertingCache(t, 8), Log: testkit.Quiet(), MaxWait: 5 * time.Millisecond, Metrics: metrics, Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		if err := rep.Run(rctx); err != nil {
			t.Errorf("replica: %v", err)
		}
		close(done)
	}()
	t.Cleanup(func() { stop(); <-done })
	return brokers, rep
}

// waitCommitted waits until the group's committed offsets on events
// cover n records.
func waitCommitted(t *testing.T, ctx context.Context, brokers []string, n int64) {
	t.Helper()
	if !testkit.Until(ctx, func() bool { return committedOffsets(t, ctx, brokers, "recon-scorer", "events", 1) >= n }) {
		t.Fatalf("committed offsets never covered the %d records", n)
	}
}

// TestSinkFailingHoldsTheCommit: a webhook that answers 503 three times
// and then 200 gets every alert exactly once, in order, and nothing is
// committed before it acknowledged them.
func TestSinkFailingHoldsTheCommit(t *testing.T) {
	const n = 40
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	failed := make(chan struct{})  // a request was refused
	checked := make(chan struct{}) // the test looked at the commits meanwhile
	var mu sync.Mutex
	var ids []string
	fails := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		if fails < 3 {
			fails++
			mu.Unlock()
			failed <- struct{}{}
			<-checked
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		defer mu.Unlock()
		var as []Alert
		if err := json.Unmarshal(body, &as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range as {
			ids = append(ids, a.ID)
		}
	}))
	defer hook.Close()
	metrics := NewMetrics(nil)
	brokers, rep := startSinkReplica(t, ctx, n, SinkConfig{Webhooks: []string{hook.URL}}, metrics)
	for i := range 3 {
		select {
		case <-failed:
		case <-ctx.Done():
			t.Fatalf("the webhook saw %d requests", i)
		}
		if c := committedOffsets(t, ctx, brokers, "recon-scorer", "events", 1); c != 0 {
			t.Errorf("failure %d: committed offsets cover %d records before the webhook acknowledged any", i+1, c)
		}
		if since, _ := rep.sinks[0].failing(); i > 0 && since.IsZero() {
			t.Errorf("failure %d: the sink does not say it is failing", i+1)
		}
		if i == 2 { // failing for long, as far as readiness can tell
			run := &rep.sinks[0].run
			run.mu.Lock()
			run.since = time.Now().Add(-time.Minute)
			run.mu.Unlock()
			if err := rep.Ready(); err == nil || !strings.Contains(err.Error(), "sink webhook") {
				t.Errorf("ready while its sink has failed for a minute: %v", err)
			}
		}
		checked <- struct{}{}
	}
	waitCommitted(t, ctx, brokers, n)
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != n {
		t.Fatalf("the webhook got %d alerts, want %d: %v", len(ids), n, ids)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("events/0/%d", i); id != want {
			t.Errorf("alert %d: %s, want %s", i, id, want)
		}
	}
	for what, c := range map[string]prometheus.Counter{"sent": metrics.sinkSent.WithLabelValues("webhook"),
		"failures": metrics.sinkFailures.WithLabelValues("webhook"), "retries": metrics.sinkRetries.WithLabelValues("webhook")} {
		want := map[string]float64{"sent": n, "failures": 3, "retries": 3}[what]
		if got := testutil.ToFloat64(c); got != want {
			t.Errorf("recon_scorer_sink_%s_total{sink=webhook} = %v, want %v", what, got, want)
		}
	}
	if err := rep.Ready(); err != nil {
		t.Errorf("not ready once the sink works: %v", err)
	}
}

// TestSinkRefusalDeadLetters: a webhook that refuses (400) any request
// holding the alert of record 7 gets every other alert; that one is
// dead-lettered as sink_refused and the partition is committed past it.
func TestSinkRefusalDeadLetters(t *testing.T) {
	const n = 30
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	got := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []Alert
		if err := json.NewDecoder(r.Body).Decode(&as); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, a := range as {
			if a.Source.Offset == 7 {
				http.Error(w, "no alerts about record 7", http.StatusBadRequest)
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range as {
			got[a.ID]++
		}
	}))
	defer hook.Close()
	metrics := NewMetrics(nil)
	brokers, _ := startSinkReplica(t, ctx, n, SinkConfig{Webhooks: []string{hook.URL}}, metrics)
	waitCommitted(t, ctx, brokers, n)
	dl := readAll(t, ctx, brokers, "dlq", 1, 10*time.Second)
	if len(dl) != 1 || header(dl[0], HeaderReason) != ReasonSinkRefused || header(dl[0], HeaderOffset) != "7" ||
		header(dl[0], HeaderTopic) != "events" || header(dl[0], HeaderPartition) != "0" {
		t.Fatalf("dead letters %v, want record 7's alert with reason %s", dl, ReasonSinkRefused)
	}
	var a Alert
	if err := json.Unmarshal(dl[0].Value, &a); err != nil || a.ID != "events/0/7" {
		t.Errorf("dead letter value %q (%v), want the alert's JSON", dl[0].Value, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("events/0/%d", i)
		if c := got[id]; (i == 7) != (c == 0) {
			t.Errorf("alert %s reached the webhook %d times", id, c)
		}
	}
	if c := testutil.ToFloat64(metrics.deadLetters.WithLabelValues(ReasonSinkRefused)); c != 1 {
		t.Errorf("recon_scorer_dead_letters_total{reason=sink_refused} = %v, want 1", c)
	}
}

// TestNoSinksNoMetrics: without sinks the replica has none and no sink
// series exist.
func TestNoSinksNoMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rep, err := NewReplica(ReplicaConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "e", AlertsTopic: "a", DLQTopic: "d",
		Cache: cacheUntrained(t, 4), Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.sinks) != 0 {
		t.Errorf("%d sinks configured by default", len(rep.sinks))
	}
	if n, _ := testutil.GatherAndCount(reg, "recon_scorer_sink_sent_total"); n != 0 {
		t.Errorf("%d sink series without sinks", n)
	}
	if _, err := NewReplica(ReplicaConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "e", AlertsTopic: "a", DLQTopic: "d",
		Cache: cacheUntrained(t, 4), Log: slog.New(slog.DiscardHandler), Sinks: SinkConfig{Webhooks: []string{"not a url"}}}); err == nil {
		t.Error("a bad sink URL was accepted")
	}
}

// TestParseRetryAfter: delay-seconds and HTTP-dates, bounded; anything
// else is no Retry-After.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"86400", maxRetryAfter, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Mon, 07 Dec 2026 08:00:30 GMT", 30 * time.Second, true},
		{"Mon, 07 Dec 2026 07:59:00 GMT", 0, true}, // past
	} {
		got, ok := parseRetryAfter(tc.h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tc.h, got, ok, tc.want, tc.ok)
		}
	}
	if w := retryWait(&retryAfterError{wait: time.Hour}, time.Second); w != maxRetryAfter {
		t.Errorf("a Retry-After of an hour waits %v, want %v", w, maxRetryAfter)
	}
	if w := retryWait(errors.New("503"), 200*time.Millisecond); w != 200*time.Millisecond {
		t.Errorf("no Retry-After waits %v, want the backoff", w)
	}
}

// TestSinkHonoursRetryAfter: a webhook answering 429 with Retry-After: 1
// gets its next request no sooner than a second later, although the
// backoff alone would send it after 10 ms; the alert then arrives.
func TestSinkHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	var got int
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var as []Alert
		_ = json.NewDecoder(r.Body).Decode(&as)
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		got += len(as)
	}))
	defer hook.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	sinks, err := newSinks(SinkConfig{Webhooks: []string{hook.URL}, RetryMin: 10 * time.Millisecond}, m, testkit.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	refused, err := deliverSinks(t.Context(), sinks, testAlerts(2, time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)))
	if err != nil || len(refused) != 0 {
		t.Fatalf("deliver: %v, %d refused", err, len(refused))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 || got != 2 {
		t.Fatalf("%d requests delivering %d alerts, want 2 requests and 2 alerts", len(times), got)
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("the retry came %v after a 429 asking for 1 s", gap)
	}
	if r := testutil.ToFloat64(m.sinkRetries.WithLabelValues("webhook")); r != 1 {
		t.Errorf("recon_scorer_sink_retries_total{sink=webhook} = %v, want 1", r)
	}
}
