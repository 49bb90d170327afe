package stream

import (
	"fmt"
	"testing"
)

// TestReaderCommitsOnlyFinishedRecords: a reader that stops without
// committing leaves its records to the next member of the group, and
// batches are bounded by size.
func TestReaderCommitsOnlyFinishedRecords(t *testing.T) {
	bs, topic, ctx := newTopic(t, 2)
	if err := EnsureTopics(ctx, bs, map[string]int{topic: 2}); err != nil {
		t.Fatalf("EnsureTopics of an existing topic: %v", err)
	}
	produce(t, ctx, bs, topic, 0, 100)

	// The first member reads and finishes (commits) only its first 10 records.
	r1, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g", MaxBatch: 30, StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	for len(got) < 10 {
		b, err := r1.Batch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 30 {
			t.Fatalf("batch of %d, max 30", len(b))
		}
		got = append(got, b...)
	}
	committed := map[string]bool{}
	for _, m := range got[:10] {
		committed[string(m.Value)] = true
	}
	if err := r1.Commit(ctx, got[:10]...); err != nil {
		t.Fatal(err)
	}
	r1.Close() // stops without committing the rest

	// The next member of the group gets every record not committed.
	r2, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g", MaxBatch: 30, StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	seen := map[string]bool{}
	missing := func() int {
		n := 0
		for i := 0; i < 100; i++ {
			if k := fmt.Sprint(i); !committed[k] && !seen[k] {
				n++
			}
		}
		return n
	}
	for missing() > 0 {
		b, err := r2.Batch(ctx)
		if err != nil {
			t.Fatalf("%d uncommitted records never re-delivered: %v", missing(), err)
		}
		for _, m := range b {
			seen[string(m.Value)] = true
		}
		if err := r2.Commit(ctx, b...); err != nil {
			t.Fatal(err)
		}
	}
}
