package scorer

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
)

// TestReplicaWarnsWhenMostRecordsDoNotDecode: a replica on the in-process
// broker fed 3000 records of which 60% are CSV (a wrong --format) logs one
// decode warning (three windows, well within a minute) and still writes
// every undecodable record to the dead-letter topic; fed only decodable
// records it logs none.
func TestReplicaWarnsWhenMostRecordsDoNotDecode(t *testing.T) {
	const p, n = 8, 3000
	for _, tc := range []struct {
		name  string
		bad   func(int64) bool
		dead  int
		warns int
	}{
		{"60% undecodable", func(o int64) bool { return o%5 < 3 }, 1800, 1},
		{"all decodable", func(int64) bool { return false }, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := testkit.Kafka(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 1, "alerts": 1, "dlq": 1}); err != nil {
				t.Fatal(err)
			}
			w, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topic: "events"})
			if err != nil {
				t.Fatal(err)
			}
			msgs := mixedRecords(rand.New(rand.NewPCG(1, 2)), p, 0, n, tc.bad)
			for i := range msgs {
				msgs[i].Topic = "" // the writer's
			}
			if err := w.Write(ctx, msgs...); err != nil {
				t.Fatal(err)
			}
			w.Close()
			var logs testkit.LogBuffer
			rep, err := NewReplica(ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq",
				Format: stream.JSONArray, Cache: cacheUntrained(t, p), Log: slog.New(slog.NewTextHandler(&logs, nil)), MaxWait: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- rep.Run(rctx) }()
			testkit.Until(ctx, func() bool { return rep.Processed.Load() >= n })
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(logs.String(), decodeWarning); got != tc.warns {
				t.Errorf("%d decode warnings, want %d:\n%s", got, tc.warns, logs.String())
			}
			if tc.warns > 0 && !strings.Contains(logs.String(), "undecodable=600 of=1000 format=json-array") {
				t.Errorf("the warning does not say 600 of 1000 in json-array:\n%s", logs.String())
			}
			if tc.dead > 0 {
				dl := readAll(t, ctx, brokers, "dlq", tc.dead, 20*time.Second)
				if len(dl) != tc.dead {
					t.Fatalf("%d dead letters, want %d", len(dl), tc.dead)
				}
				for _, d := range dl {
					if r := header(d, HeaderReason); r != string(stream.ReasonBadJSON) {
						t.Fatalf("dead letter %s: reason %q", header(d, HeaderOffset), r)
					}
				}
			}
		})
	}
}
