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
	if n := strings.Count(buf.String(), "Kafka reachable again"); n != 1 {
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
