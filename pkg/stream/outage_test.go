package stream

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOutageOneLinePerBurst: failed attempts every 100 ms for two minutes
// give a warning at once, then after 5, 10, 20, 40 and 60 s gaps (the
// interval doubles to a minute), not one per attempt; the first success
// logs one recovery line, and a new outage starts over.
func TestOutageOneLinePerBurst(t *testing.T) {
	var buf bytes.Buffer
	o := newOutage(slog.New(slog.NewTextHandler(&buf, nil)), "reader events", []string{"127.0.0.1:1"})
	clock := time.Unix(0, 0)
	o.now = func() time.Time { return clock }
	for i := 0; i < 1200; i++ { // 120 s
		o.logf("dial tcp %s: connection refused", "127.0.0.1:1")
		clock = clock.Add(100 * time.Millisecond)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	// At 0, 5, 15, 35 and 75 s, then 60 s later (135 s) is past the end.
	if len(lines) != 5 {
		t.Fatalf("%d warnings for 1200 failed attempts over 120 s, want 5:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "connection refused") || !strings.Contains(l, "brokers=127.0.0.1:1") {
			t.Errorf("warning lacks level, cause or brokers: %s", l)
		}
	}
	if !strings.Contains(lines[1], "failed_attempts=50") {
		t.Errorf("second warning should count the 50 attempts since the first: %s", lines[1])
	}
	buf.Reset()
	o.ok()
	o.ok()
	if n := strings.Count(buf.String(), "Kafka works again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, buf.String())
	}
	buf.Reset()
	o.logf("connection refused")
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Error("a new outage was not reported at once")
	}
	var none *outage
	none.fail("x") // nil outages (no logger) do nothing
	none.ok()
}

// TestOutageNamesWhatFailed: "cannot reach Kafka" only when no broker
// answers; a missing topic, an oversized record and an offset out of range
// each their own words; an idle partition's fetch timeout and a rebalance
// are routine (debug level, no outage).
func TestOutageNamesWhatFailed(t *testing.T) {
	cases := []struct {
		err, want string // want "": no warning
	}{
		{"dial tcp 127.0.0.1:9092: connect: connection refused", "cannot reach Kafka"},
		{"failed to dial: failed to open connection to 127.0.0.1:9092: dial tcp 127.0.0.1:9092: i/o timeout", "cannot reach Kafka"},
		{"the kafka reader got an unknown error reading partition 2 of recon-events at offset 10: read tcp 127.0.0.1:5->127.0.0.1:9092: i/o timeout", ""},
		{"[27] Rebalance In Progress: the coordinator has begun rebalancing the group", ""},
		{"[3] Unknown Topic Or Partition: the request is for a topic or partition that does not exist on this broker", "the topic does not exist"},
		{"[10] Message Size Too Large: the server has a configurable maximum message size", "larger than Kafka accepts"},
		{"error initializing the kafka reader for partition 0 of events: [1] Offset Out Of Range", "outside the partition's log"},
		{"SASL Authentication Failed", "refused the credentials"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		o := newOutage(slog.New(slog.NewTextHandler(&buf, nil)), "reader events", []string{"127.0.0.1:9092"})
		o.logf("%s", c.err)
		got := buf.String()
		if c.want == "" {
			if got != "" {
				t.Errorf("%q: logged %q, want nothing at info level", c.err, got)
			}
			if !o.started().IsZero() {
				t.Errorf("%q started an outage", c.err)
			}
			continue
		}
		if !strings.Contains(got, c.want) || !strings.Contains(got, "level=WARN") {
			t.Errorf("%q: logged %q, want a warning saying %q", c.err, got, c.want)
		}
		if c.want != "cannot reach Kafka" && strings.Contains(got, "cannot reach Kafka") {
			t.Errorf("%q: says cannot reach Kafka: %s", c.err, got)
		}
	}
}
