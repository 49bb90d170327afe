package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// TailConfig configures a Tail.
type TailConfig struct {
	Brokers []string // bootstrap addresses
	Topic   string   // the topic to follow, every partition
	// Since is where each partition starts: its first record at or after
	// this time (zero: the partition's end, new records only).
	Since    time.Time
	Security Security     // TLS and SASL (zero: plaintext)
	Logger   *slog.Logger // optional: outages, one line per burst
	// Rescan is how often the topic's partitions are looked up again, so
	// that added ones are followed (default 30 s).
	Rescan time.Duration
}

// Tail follows every partition of a topic without a consumer group and
// calls fn with each record, in order within a partition (fn is called
// from one goroutine per partition). It commits nothing: a reader that
// keeps no state of its own (a console, a monitor) reads the whole topic
// in every instance, where a shared group would split the partitions
// between them. It returns when ctx ends; a missing topic is waited for.
func Tail(ctx context.Context, cfg TailConfig, fn func(Record)) error {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return errors.New("stream: a tail needs brokers and a topic")
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = 30 * time.Second
	}
	out := newOutage(cfg.Logger, "tail "+cfg.Topic, cfg.Brokers)
	admin := cfg.Security.Admin(cfg.Brokers)
	defer admin.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	followed := map[int]bool{}
	for {
		parts, err := admin.partitions(ctx, cfg.Topic)
		if err != nil && ctx.Err() == nil {
			out.logf("partitions of %s: %v", cfg.Topic, err)
		}
		for _, p := range parts {
			if followed[p] {
				continue
			}
			followed[p] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				followPartition(ctx, cfg, p, out, fn)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(cfg.Rescan):
		}
	}
}

// followPartition reads partition p of cfg.Topic until ctx ends.
func followPartition(ctx context.Context, cfg TailConfig, p int, out *outage, fn func(Record)) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.Topic, Partition: p,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: time.Second, Dialer: cfg.Security.dialer(),
		ErrorLogger: kafka.LoggerFunc(out.logf)})
	defer r.Close()
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if cfg.Since.IsZero() {
			err = r.SetOffset(kafka.LastOffset)
		} else {
			err = r.SetOffsetAt(ctx, cfg.Since)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		out.logf("partition %d of %s: finding the start: %v", p, cfg.Topic, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			out.logf("partition %d of %s: %v", p, cfg.Topic, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		fn(recordOf(m, nil)) // fn may keep the record
	}
}

// partitions returns the partition ids of topic (none while it is missing).
func (a *Admin) partitions(ctx context.Context, topic string) ([]int, error) {
	md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil, nil
			}
			return nil, fmt.Errorf("topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	return parts, nil
}

// ReadAt reads the record at offset of partition of topic: for a reader
// that looks one record up (the source of an alert). It fails when the
// offset is no longer retained or ctx ends first.
func ReadAt(ctx context.Context, brokers []string, sec Security, topic string, partition int, offset int64) (Record, error) {
	var conn *kafka.Conn
	err := errors.New("stream: no brokers")
	for _, b := range brokers { // the first that answers finds the leader
		if conn, err = sec.dialer().DialLeader(ctx, "tcp", b, topic, partition); err == nil {
			break
		}
	}
	if err != nil {
		return Record{}, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return Record{}, err
	}
	if offset < first || offset >= last {
		return Record{}, fmt.Errorf("offset %d of %s/%d is not retained (the partition holds %d to %d)", offset, topic, partition, first, last-1)
	}
	if _, err := conn.Seek(offset, kafka.SeekAbsolute); err != nil {
		return Record{}, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetReadDeadline(dl); err != nil {
			return Record{}, err
		}
	}
	b := conn.ReadBatch(1, MaxRecordBytes+1<<20)
	defer b.Close()
	for {
		m, err := b.ReadMessage()
		if err != nil {
			return Record{}, err
		}
		if m.Offset >= offset {
			if m.Offset != offset {
				return Record{}, fmt.Errorf("offset %d of %s/%d is not in the log (compacted?); the next is %d", offset, topic, partition, m.Offset)
			}
			return recordOf(m, nil), nil
		}
	}
}
