package stream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/recon-ad/recon/internal/testkit"
)

// broker is a kfake cluster that can be stopped and started again on the
// same port, with its data (dir set) or empty.
type broker struct {
	t      *testing.T
	port   int
	dir    string
	topics map[string]int32
	c      *kfake.Cluster
}

func startBroker(t *testing.T, dir string, topics map[string]int32) *broker {
	b := &broker{t: t, dir: dir, topics: topics}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(b.port)}
	if b.dir != "" {
		opts = append(opts, kfake.DataDir(b.dir))
	}
	for name, parts := range b.topics {
		opts = append(opts, kfake.SeedTopics(parts, name))
	}
	var err error
	// The old listener's port may take a moment to free.
	testkit.Within(5*time.Second, func() bool { b.c, err = kfake.NewCluster(opts...); return err == nil })
	if err != nil {
		b.t.Fatal(err)
	}
	if b.port == 0 {
		_, p, _ := net.SplitHostPort(b.c.ListenAddrs()[0])
		b.port, _ = strconv.Atoi(p)
	}
}

func (b *broker) stop() {
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

func (b *broker) addrs() []string {
	return []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))}
}

// readKeys reads rd, committing each batch, until want keys are seen or
// ctx ends; it returns the keys seen and Batch's first error.
func readKeys(ctx context.Context, rd *Reader, want map[string]bool) (map[string]bool, error) {
	seen := map[string]bool{}
	for {
		done := true
		for k := range want {
			if !seen[k] {
				done = false
				break
			}
		}
		if done {
			return seen, nil
		}
		b, err := rd.Batch(ctx)
		if err != nil {
			return seen, err
		}
		for _, m := range b {
			seen[string(m.Key)] = true
		}
		if err := rd.Commit(ctx, b...); err != nil && ctx.Err() == nil {
			// a commit across the restart: re-delivered, not lost
			continue
		}
	}
}

func keys(from, n int) map[string]bool {
	out := map[string]bool{}
	for i := from; i < from+n; i++ {
		out[fmt.Sprint(i)] = true
	}
	return out
}

// TestReaderWaitsOutALongOutage: with the broker down for 20 s (longer
// than kafka-go's own join attempts, after which its FetchMessage returns
// the dial error), Batch reports the outage and goes on; once the broker
// is back with its data, the records produced then arrive.
func TestReaderWaitsOutALongOutage(t *testing.T) {
	const topic = "events"
	b := startBroker(t, t.TempDir(), map[string]int32{topic: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	produce(t, ctx, b.addrs(), topic, 0, 50)
	var logs testkit.LogBuffer
	rd, err := NewReader(ReaderConfig{Brokers: b.addrs(), Topic: topic, Group: "g", StartFirst: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if _, err := readKeys(ctx, rd, keys(0, 50)); err != nil {
		t.Fatal(err)
	}
	b.stop()
	type result struct {
		seen map[string]bool
		err  error
	}
	res := make(chan result, 1)
	go func() {
		s, err := readKeys(ctx, rd, keys(50, 20))
		res <- result{s, err}
	}()
	time.Sleep(20 * time.Second) // simulates a broker outage of 20 s
	select {
	case r := <-res:
		t.Fatalf("Batch returned during the outage: %v", r.err)
	default:
	}
	if since, _ := rd.FetchFailing(); since.IsZero() {
		t.Error("FetchFailing reports nothing 20 s into the outage")
	}
	b.start()
	produce(t, ctx, b.addrs(), topic, 50, 20)
	r := <-res
	if r.err != nil {
		t.Fatalf("after the outage: %v (seen %d of 20)", r.err, len(r.seen))
	}
	if since, _ := rd.FetchFailing(); !since.IsZero() {
		t.Error("FetchFailing still reports the outage")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), " kind=unreachable ") {
		t.Errorf("no warning of an unreachable broker:\n%s", logs.String())
	}
}

// TestReaderReadsALogThatWentBack: the broker comes back empty and a
// commit from before the restart lands on it (offset 50 on partitions
// whose new logs hold about 10 records). The next member of the group
// (a routine restart) would start at offset 50 and skip every record
// before it; its monitor resets the group to the first retained offset
// and says so.
func TestReaderReadsALogThatWentBack(t *testing.T) {
	const topic = "events"
	b := startBroker(t, "", map[string]int32{topic: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	rd, err := NewReader(ReaderConfig{Brokers: b.addrs(), Topic: topic, Group: "g", StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, b.addrs(), topic, 0, 100)
	if _, err := readKeys(ctx, rd, keys(0, 100)); err != nil {
		t.Fatal(err)
	}
	b.stop()
	b.start() // empty: the topic seeded again, no records, no group
	// The stale commit: what a scorer's publisher commits for a batch it
	// fetched before the restart.
	stale := []Record{{Topic: topic, Partition: 0, Offset: 49}, {Topic: topic, Partition: 1, Offset: 49}}
	testkit.Until(ctx, func() bool { return rd.Commit(ctx, stale...) == nil })
	rd.Close()
	produce(t, ctx, b.addrs(), topic, 100, 20)

	var logs testkit.LogBuffer
	rd2, err := NewReader(ReaderConfig{Brokers: b.addrs(), Topic: topic, Group: "g", StartFirst: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rd2.Close()
	var mu sync.Mutex
	back := map[int]int{}
	rd2.Monitor(MonitorConfig{Every: 300 * time.Millisecond, WentBack: func(p int) { mu.Lock(); back[p]++; mu.Unlock() }})
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	seen, err := readKeys(rctx, rd2, keys(100, 20))
	if err != nil {
		t.Fatalf("%d of the 20 records produced after the restart read: %v\n%s", len(seen), err, logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(back) == 0 {
		t.Error("WentBack never called")
	}
	if n := strings.Count(logs.String(), "log went back"); n < 1 || n > 2 {
		t.Errorf("%d went-back lines, want one per partition:\n%s", n, logs.String())
	}
}
