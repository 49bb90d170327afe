package stream

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/testkit"
)

// newTopic returns a broker (kfake unless RECON_TEST_BROKERS), a fresh
// topic of partitions partitions on it, and a context that ends with the
// test or after a minute.
func newTopic(t *testing.T, partitions int) ([]string, string, context.Context) {
	t.Helper()
	bs := testkit.Kafka(t)
	topic := fmt.Sprintf("t-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if err := EnsureTopics(ctx, bs, map[string]int{topic: partitions}); err != nil {
		t.Fatal(err)
	}
	return bs, topic, ctx
}

func produce(t *testing.T, ctx context.Context, bs []string, topic string, from, n int) {
	t.Helper()
	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var msgs []Record
	for i := from; i < from+n; i++ {
		msgs = append(msgs, Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
}

// consumeAll reads rd in batches, committing each, recording the keys
// seen and the first error, until ctx ends.
type consumer struct {
	mu   sync.Mutex
	seen map[string]bool
	err  error
	done chan struct{}
}

func consume(ctx context.Context, rd *Reader) *consumer {
	c := &consumer{seen: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			b, err := rd.Batch(ctx)
			if err == nil {
				err = rd.Commit(ctx, b...)
			}
			c.mu.Lock()
			if err != nil && ctx.Err() == nil && c.err == nil {
				c.err = err
			}
			for _, m := range b {
				c.seen[string(m.Key)] = true
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *consumer) count() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.seen) }

// TestWatchStuck: a member that holds a partition and never commits is
// reported, naming the member, once the watch is ready; while ready is
// false nothing is judged.
func TestWatchStuck(t *testing.T) {
	bs, topic, ctx := newTopic(t, 2)
	produce(t, ctx, bs, topic, 0, 200)
	squat, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g", StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	if _, err := squat.Batch(ctx); err != nil { // joined, holding both partitions for now
		t.Fatal(err)
	}
	rd, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g", StartFirst: true, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	cctx, stop := context.WithCancel(ctx)
	c := consume(cctx, rd)
	defer func() { stop(); <-c.done }()

	var logs testkit.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	const after = 900 * time.Millisecond
	wctx, wcancel := context.WithTimeout(ctx, 4*after)
	if watchStuck(wctx, Security{}, bs, "g", topic, after, func() bool { return false }, log) {
		t.Errorf("judged a partition stuck while not ready:\n%s", logs.String())
	}
	wcancel()
	if !watchStuck(ctx, Security{}, bs, "g", topic, after, nil, log) {
		t.Fatal("no stuck partition found")
	}
	line := logs.String()
	if !regexp.MustCompile(`level=WARN .*kind=stuck_partition group=g topic=t-\d+ partition=\d .* held_by="[^"]*@[^"]*/\d+@[^"]* \([^"]+\)" group_state=Stable`).MatchString(line) {
		t.Errorf("the warning does not name the partition's holder:\n%s", line)
	}
	if c.count() == 0 || c.count() >= 200 {
		t.Errorf("the working member consumed %d records: want its own partition's, not the squatter's", c.count())
	}

	// The squatter is a live member: rejoining gives it a partition again
	// (records keep coming to both), so stuckWatch finds a stall again at
	// once, and then pauses before watching for one once more.
	sw := &stuckWatch{brokers: bs, group: "g", topic: topic, after: after, log: log}
	for i := 0; i < 2; i++ {
		if !sw.wait(ctx) {
			t.Fatalf("stuckWatch found no stuck partition (round %d)", i+1)
		}
		if err := rd.Rejoin(); err != nil {
			t.Fatal(err)
		}
		produce(t, ctx, bs, topic, 200+100*i, 100)
	}
	if !regexp.MustCompile(`level=WARN .*kind=stall_repeated .*pause=900ms`).MatchString(logs.String()) {
		t.Errorf("no pause announced after the second stall in a row:\n%s", logs.String())
	}
	start := time.Now()
	if !sw.wait(ctx) {
		t.Fatal("stuckWatch found no stuck partition the third time")
	}
	if took := time.Since(start); took < 2*after {
		t.Errorf("the third watch fired after %v: want the 900ms pause and then 900ms without progress", took)
	}
	if !strings.Contains(logs.String(), "pause=2.7s") {
		t.Errorf("the pause did not grow to 3x after the third stall in a row:\n%s", logs.String())
	}
}

// TestRejoin: Rejoin makes the reader a new member of the group; a Batch
// waiting across it goes on with the new membership, and every record is
// consumed and committed.
func TestRejoin(t *testing.T) {
	bs, topic, ctx := newTopic(t, 2)
	rd, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g", StartFirst: true, MaxBatch: 20, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	admin := Security{}.Admin(bs)
	defer admin.Close()
	member := func() string {
		t.Helper()
		h, _, err := admin.Holders(ctx, "g", topic)
		if err != nil {
			t.Fatal(err)
		}
		return h[0]
	}
	produce(t, ctx, bs, topic, 0, 100)
	cctx, stop := context.WithCancel(ctx)
	c := consume(cctx, rd)
	defer func() { stop(); <-c.done }()
	testkit.Until(ctx, func() bool { return c.count() >= 100 })
	before := member()
	// The consumer now waits in Batch on an idle topic.
	if err := rd.Rejoin(); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, bs, topic, 100, 100)
	testkit.Until(ctx, func() bool { return c.count() >= 200 })
	if n := c.count(); n != 200 {
		t.Fatalf("consumed %d of 200 records across the rejoin", n)
	}
	c.mu.Lock()
	cerr := c.err
	c.mu.Unlock()
	if cerr != nil {
		t.Errorf("a Batch or Commit failed across the rejoin: %v", cerr)
	}
	after := ""
	if !testkit.Until(ctx, func() bool { after = member(); return after != "" && after != before }) {
		t.Fatalf("the group still names the member %s after the rejoin", before)
	}
	if !strings.Contains(after, "@") {
		t.Errorf("holder %q: want client@host (member)", after)
	}
	// Everything consumed is committed.
	var prog map[int]PartitionProgress
	if !testkit.Until(ctx, func() bool {
		var err error
		if prog, err = admin.GroupProgress(ctx, "g", topic); err != nil {
			t.Fatal(err)
		}
		return prog[0].Lag()+prog[1].Lag() == 0
	}) {
		t.Fatalf("commits do not cover every record after the rejoin: %+v", prog)
	}
}
