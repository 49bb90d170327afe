package stream

import (
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// Record is one Kafka record as recon's readers hand it out and its
// writers take it: packages above pkg/stream see this type, never
// kafka-go's.
type Record struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time // the record's timestamp; a writer's zero Time is the time of writing
}

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// recordOf is m as a Record, sharing m's memory. Its headers are carved
// from slab (grown as needed; nil: a slice of their own), so that a batch's
// records share one headers array instead of allocating one each.
func recordOf(m kafka.Message, slab *[]Header) Record {
	r := Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
	if n := len(m.Headers); n > 0 {
		r.Headers = carve(slab, n)
		for i, h := range m.Headers {
			r.Headers[i] = Header(h)
		}
	}
	return r
}

// messageOf is r as kafka-go's message, its headers carved from slab as
// recordOf's.
func messageOf(r *Record, slab *[]kafka.Header) kafka.Message {
	m := kafka.Message{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Time: r.Time}
	if n := len(r.Headers); n > 0 {
		m.Headers = carve(slab, n)
		for i, h := range r.Headers {
			m.Headers[i] = kafka.Header(h)
		}
	}
	return m
}

// carve returns n elements of *slab's spare capacity (a new array of room
// for at least 256 when it has too little; a slice of its own for a nil
// slab), capped so that appending to one record's headers never reaches
// the next's.
func carve[T any](slab *[]T, n int) []T {
	if slab == nil {
		return make([]T, n)
	}
	if cap(*slab)-len(*slab) < n {
		*slab = make([]T, 0, max(n, 256))
	}
	start := len(*slab)
	*slab = (*slab)[:start+n]
	return (*slab)[start : start+n : start+n]
}

// WriteClass is how a caller should treat a failed write of a record.
type WriteClass int

const (
	// WriteTransient is an outage, a leader moving; retry.
	WriteTransient WriteClass = iota
	// WriteTooLarge is permanent for the record (over MaxRecordBytes, or
	// refused by the brokers as too large or invalid); retrying it cannot
	// work.
	WriteTooLarge
	// WriteRefused is the configuration (a missing topic, no
	// authorization); retrying works once an operator fixes it.
	WriteRefused
)

// ErrRecordTooLarge is WriteEach's error for a record over MaxRecordBytes,
// which it does not send.
var ErrRecordTooLarge = errors.New("stream: record larger than MaxRecordBytes")

// ClassifyWrite says how a Writer's error for one record is to be treated.
func ClassifyWrite(err error) WriteClass {
	switch {
	case errors.Is(err, ErrRecordTooLarge), errors.Is(err, kafka.MessageSizeTooLarge), errors.Is(err, kafka.RecordListTooLarge),
		errors.Is(err, kafka.InvalidMessage), errors.Is(err, kafka.InvalidRecord):
		return WriteTooLarge
	case errors.Is(err, kafka.UnknownTopicOrPartition), errors.Is(err, protocol.ErrNoTopic), errors.Is(err, kafka.TopicAuthorizationFailed),
		errors.Is(err, kafka.ClusterAuthorizationFailed), errors.Is(err, kafka.InvalidTopic):
		return WriteRefused
	}
	return WriteTransient
}
