//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
)

// ready reports whether a process's /readyz answers 200.
func ready(addr string) bool {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// TestBrokerOutagesAndALargeRecord kills the broker (kill -9, its data
// dir kept) for 30 s and then for 120 s while loadgen streams; every
// process stays up throughout, and afterwards every record is scored or
// dead-lettered. Then one record of 1,048,400 bytes goes into a partition
// followed by 100 ordinary ones: it is dead-lettered with its reason, cut
// to fit with its size in a header, and the 100 are scored within 10 s.
func TestBrokerOutagesAndALargeRecord(t *testing.T) {
	const rate, count = 1000, 60_000 // a minute of stream, outages aside
	p := startPipeline(t, rate, count)
	waitFor(t, 90*time.Second, "a threshold", func() bool { return scrape(p.coordMetrics, "recon_coordinator_threshold") > 0 })
	alive := func(when string) {
		t.Helper()
		for _, pr := range append(p.all[1:], p.load) {
			if !pr.Running() && (pr != p.load || !strings.Contains(pr.LogText(), "loadgen: ")) {
				t.Fatalf("%s exited %s:\n%s", pr.Name, when, tail(pr.LogText(), 3000))
			}
		}
	}
	for _, down := range []time.Duration{30 * time.Second, 120 * time.Second} {
		time.Sleep(5 * time.Second) // simulates records flowing normally between outages
		p.devkafka.Kill()
		t.Logf("devkafka: kill -9, down for %v", down)
		// The outage itself: every process must stay up through it, looked
		// at once a second.
		tick := time.NewTicker(time.Second)
		for deadline := time.Now().Add(down); time.Now().Before(deadline); <-tick.C {
			alive(fmt.Sprintf("with the broker down for %v", down))
		}
		tick.Stop()
		for i, m := range p.scorerMetrics {
			if down >= time.Minute && ready(m) {
				t.Errorf("scorer-%d answers /readyz with 200 after %v without a broker", i+1, down)
			}
		}
		if err := p.devkafka.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "devkafka to come back", func() bool { return strings.Count(p.devkafka.LogText(), "resuming from the data") >= 1 })
		alive("after the broker came back")
	}
	for i, m := range p.scorerMetrics {
		waitFor(t, 60*time.Second, fmt.Sprintf("scorer-%d ready again", i+1), func() bool { return ready(m) })
	}
	waitFor(t, 180*time.Second, "loadgen to finish", func() bool { return !p.load.Running() })
	if !strings.Contains(p.load.LogText(), fmt.Sprintf("loadgen: %d records", count)) {
		t.Fatalf("loadgen did not produce %d records: %s", count, p.load.LogText())
	}

	// The large record, then 100 ordinary ones on its partition.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const extra = 101
	big := make([]byte, 1048400)
	for i := range big {
		big[i] = 'x'
	}
	// All on partition 0, behind the large record.
	first := kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 })
	raw := &kafka.Writer{Addr: kafka.TCP(p.kafka), Topic: "recon-events", Balancer: first, BatchBytes: 2 << 20,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	truth := []kafka.Header{{Key: "recon-truth", Value: []byte("normal")}}
	if err := raw.WriteMessages(ctx, kafka.Message{Key: []byte("large"), Value: big, Headers: truth}); err != nil {
		t.Fatalf("the broker refused the large record: %v", err)
	}
	names := make([]string, 30)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	codec, _ := stream.NewCodec(stream.JSONArray, names)
	rng := rand.New(rand.NewPCG(1, 2))
	var after []kafka.Message
	rec := make([]float64, 30)
	for i := range extra - 1 {
		for j := range rec {
			rec[j] = rng.NormFloat64()
		}
		after = append(after, kafka.Message{Key: []byte(fmt.Sprintf("after-large-%d", i)), Value: codec.Encode(nil, rec), Headers: truth})
	}
	if err := raw.WriteMessages(ctx, after...); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	produced := time.Now()
	var scored int
	dlq := make(chan stream.Record, 1)
	// Until the large record (or ctx's end): a reader that fails leaves dlq
	// empty, and the select below reports it.
	go func() {
		_ = readAll(ctx, []string{p.kafka}, "recon-dlq", func(m stream.Record) bool {
			if string(m.Key) == "large" {
				dlq <- m
				return false
			}
			return true
		})
	}()
	if err := readAll(ctx, []string{p.kafka}, "recon-scores", func(m stream.Record) bool {
		if strings.HasPrefix(string(m.Key), "after-large-") {
			scored++
		}
		return scored < extra-1 && time.Since(produced) < 10*time.Second
	}); err != nil {
		t.Errorf("reading the scores topic: %v", err)
	}
	if scored < extra-1 {
		t.Errorf("%d of the %d records after the large one scored within 10 s", scored, extra-1)
	}
	t.Logf("the %d records after the large one scored %v after producing", scored, time.Since(produced).Round(time.Millisecond))
	select {
	case dl := <-dlq:
		if r := header(dl, scorer.HeaderReason); r != "bad_json" || header(dl, scorer.HeaderOriginalSize) != "1048400" || header(dl, scorer.HeaderTruncated) != "true" {
			t.Errorf("large record dead-lettered with reason %q, size %q, truncated %q", r, header(dl, scorer.HeaderOriginalSize), header(dl, scorer.HeaderTruncated))
		}
	case <-time.After(10 * time.Second):
		t.Error("the large record was not dead-lettered within 10 s")
	}

	// Every record of the stream is accounted for, and every process is
	// still the one started.
	r := p.account(count + extra) // loadgen's, the large record and the 100 after it
	if r.missing > 0 {
		t.Errorf("%d records neither scored nor dead-lettered after the outages", r.missing)
	}
	alive("at the end")
	for _, pr := range p.all[1:] {
		if strings.Contains(pr.LogText(), "panic") {
			t.Errorf("%s panicked:\n%s", pr.Name, tail(pr.LogText(), 3000))
		}
	}
}
