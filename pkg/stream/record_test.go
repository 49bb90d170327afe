package stream

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	kproduce "github.com/segmentio/kafka-go/protocol/produce"
)

// TestClassifyWrite: each way kafka-go reports a topic that is not there,
// or access refused, is a refusal (told to the user as one), not a
// transient failure: the broker's error code, and the client's own
// metadata miss, bare or wrapped as Client.Produce wraps it; a record too
// large, ours or the broker's verdict, is permanent for the record.
func TestClassifyWrite(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want WriteClass
	}{
		{kafka.UnknownTopicOrPartition, WriteRefused},
		{fmt.Errorf("write 200 records to scores: %w", kafka.UnknownTopicOrPartition), WriteRefused},
		{fmt.Errorf("kafka.(*Client).Produce: %w", kproduce.NewError(protocol.NewErrNoTopic("scores"))), WriteRefused},
		{fmt.Errorf("kafka.(*Client).Produce: %w", protocol.ErrNoTopic), WriteRefused},
		{kafka.TopicAuthorizationFailed, WriteRefused},
		{fmt.Errorf("%w: about 2000000 bytes", ErrRecordTooLarge), WriteTooLarge},
		{fmt.Errorf("write to alerts: %w", kafka.MessageSizeTooLarge), WriteTooLarge},
		{errors.New("i/o timeout"), WriteTransient},
	} {
		if got := ClassifyWrite(tc.err); got != tc.want {
			t.Errorf("ClassifyWrite(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRecordsRoundTrip: a Record survives the trip to kafka-go's message
// and back, headers included, and a writer refuses one over
// MaxRecordBytes without sending it.
func TestRecordsRoundTrip(t *testing.T) {
	r := Record{Topic: "t", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}}
	var ms []kafka.Header
	var rs []Header
	m := messageOf(&r, &ms)
	back := recordOf(m, &rs)
	if back.Topic != r.Topic || back.Partition != r.Partition || back.Offset != r.Offset || string(back.Key) != "k" || string(back.Value) != "v" ||
		len(back.Headers) != 2 || back.Headers[0].Key != "a" || string(back.Headers[0].Value) != "1" || back.Headers[1].Key != "b" {
		t.Fatalf("round trip: %+v, want %+v", back, r)
	}
	w := &Writer{} // no connection: a record over the limit is refused before any
	big := Record{Value: make([]byte, MaxRecordBytes)}
	errs := w.WriteEach(context.Background(), big)
	if len(errs) != 1 || !errors.Is(errs[0], ErrRecordTooLarge) || ClassifyWrite(errs[0]) != WriteTooLarge {
		t.Fatalf("WriteEach of a record over MaxRecordBytes: %v", errs)
	}
}

// TestRecordsShareASlabSafely: records converted into one headers slab get
// their own headers, and appending to one record's headers never
// overwrites the next record's.
func TestRecordsShareASlabSafely(t *testing.T) {
	var slab []Header
	a := recordOf(kafka.Message{Headers: []kafka.Header{{Key: "a"}}}, &slab)
	b := recordOf(kafka.Message{Headers: []kafka.Header{{Key: "b"}, {Key: "c"}}}, &slab)
	a.Headers = append(a.Headers, Header{Key: "x"})
	if b.Headers[0].Key != "b" || b.Headers[1].Key != "c" || a.Headers[0].Key != "a" || len(b.Headers) != 2 {
		t.Fatalf("headers alias across records: a %v, b %v", a.Headers, b.Headers)
	}
	if cap(slab) < 256 {
		t.Fatalf("slab of capacity %d: want one array for a batch", cap(slab))
	}
}
