// Command alerts-subscriber is an example to copy: it consumes recon's
// alerts topic as a member of its own consumer group, drops the duplicates
// that at-least-once delivery can produce (alerts share the id of the
// record they are about), and prints one line per alert. Replace act with
// what your team does with an alert: page, open a ticket, call a webhook.
//
//	go run ./examples/alerts-subscriber --brokers 127.0.0.1:9092
//
// It depends on kafka-go alone: the alert schema is declared here, so the
// file can leave this repository.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
)

// Alert is recon's alert, schema 1.
type Alert struct {
	Schema int    `json:"schema"`
	ID     string `json:"id"` // "topic/partition/offset" of the scored record: the idempotency key
	Source struct {
		Topic     string    `json:"topic"`
		Partition int       `json:"partition"`
		Offset    int64     `json:"offset"`
		Timestamp time.Time `json:"timestamp"`
	} `json:"source"`
	ScoredAt time.Time `json:"scored_at"`
	Model    struct {
		Version uint64 `json:"version"`
		Variant string `json:"variant"`
	} `json:"model"`
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	Features  []struct {
		Name           string  `json:"name"`
		Value          float64 `json:"value"`
		Reconstruction float64 `json:"reconstruction"`
		Error          float64 `json:"error"`
	} `json:"features"`
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	topic := flag.String("topic", "recon-alerts", "alerts topic")
	group := flag.String("group", "recon-alerts-example", "consumer group (each group gets every alert once)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: strings.Split(*brokers, ","), Topic: *topic, GroupID: *group,
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: time.Second,
	})
	defer r.Close()
	seen := newSeen(100_000) // ids of recent alerts: at-least-once means rare repeats
	wait := newBackoff()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// kafka-go keeps reconnecting and rejoining by itself: an
			// error here is an outage (or a rebalance), not the end.
			wait.fail(ctx, "fetch", err)
			continue
		}
		wait.ok()
		var a Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			log.Printf("skipping an alert that does not parse (offset %d): %v", m.Offset, err)
		} else if !seen.add(a.ID) {
			act(a)
		}
		// Commit after acting: a crash before this line repeats the alert
		// (the id makes that harmless), it never loses one.
		// A failed commit (an outage) only means the alert may come again.
		for err := r.CommitMessages(ctx, m); err != nil && ctx.Err() == nil; err = r.CommitMessages(ctx, m) {
			wait.fail(ctx, "commit", err)
		}
		wait.ok()
	}
}

// backoff waits between failed attempts, 100 ms doubling to 5 s, and logs
// the first failure of an outage and then one line every minute.
type backoff struct {
	delay  time.Duration
	since  time.Time
	logged time.Time
}

func newBackoff() *backoff { return &backoff{delay: 100 * time.Millisecond} }

func (b *backoff) fail(ctx context.Context, what string, err error) {
	now := time.Now()
	if b.since.IsZero() {
		b.since = now
	}
	if now.Sub(b.logged) >= time.Minute {
		log.Printf("%s failed (down for %v); retrying: %v", what, now.Sub(b.since).Round(time.Second), err)
		b.logged = now
	}
	select {
	case <-ctx.Done():
	case <-time.After(b.delay):
	}
	b.delay = min(2*b.delay, 5*time.Second)
}

func (b *backoff) ok() {
	if !b.since.IsZero() {
		log.Printf("Kafka works again after %v", time.Since(b.since).Round(time.Second))
	}
	*b = backoff{delay: 100 * time.Millisecond}
}

// act is what to do with a new alert.
func act(a Alert) {
	top := ""
	if len(a.Features) > 0 {
		f := a.Features[0]
		top = fmt.Sprintf("%s=%.4g (expected %.4g)", f.Name, f.Value, f.Reconstruction)
	}
	fmt.Printf("%s  %s  score %.4g > %.4g  model v%d  top %s\n",
		a.Source.Timestamp.Format(time.RFC3339), a.ID, a.Score, a.Threshold, a.Model.Version, top)
}

// seen remembers the last n ids.
type seen struct {
	ids  map[string]bool
	ring []string
	next int
}

func newSeen(n int) *seen { return &seen{ids: map[string]bool{}, ring: make([]string, n)} }

// add records id and reports whether it was already there.
func (s *seen) add(id string) bool {
	if s.ids[id] {
		return true
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.ids[id] = true
	return false
}
