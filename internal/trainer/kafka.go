package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/pkg/stream"
)

// KafkaConfig is where a Kafka source reads from: trainer run's kafka
// flags. DefaultKafkaConfig has the defaults.
type KafkaConfig struct {
	Brokers []string      // bootstrap addresses
	Topic   string        // the topic trained on
	Group   string        // consumer group (offsets committed once the coordinator accepts their gradient)
	Format  stream.Format // record format
	// StuckAfter: while rounds are being accepted, rejoin the group when a
	// partition's committed offset has not moved for this long while
	// records wait in it (negative: never; see WatchStuck).
	StuckAfter time.Duration
}

// DefaultKafkaConfig returns the defaults.
func DefaultKafkaConfig() KafkaConfig {
	return KafkaConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "recon-events", Group: "recon-trainer", Format: stream.JSONArray, StuckAfter: 20 * time.Second}
}

// Acker is a Source that learns what happened to the records it handed
// out: Sent says they went into round r's gradient, Accepted that the
// coordinator averaged it. A Kafka source commits offsets only then.
type Acker interface {
	Sent(round uint64)
	Accepted(ctx context.Context, round uint64) error
}

// KafkaSource is a Source reading a topic as a member of a consumer group
// (default recon-trainer). Records that do not decode are skipped and
// counted; offsets are committed only for records whose gradient the
// coordinator accepted, so a crash re-delivers, never loses.
type KafkaSource struct {
	ctx     context.Context
	r       *stream.Reader
	codec   *stream.Codec
	log     *slog.Logger
	mu      sync.Mutex
	buf     []stream.Record // fetched, not yet handed out
	handed  []stream.Record // handed out since the last Sent
	pending map[uint64][]stream.Record
	batches chan []stream.Record // prefetched; closed when fetching stops
	// Accepted rounds' records wait here for the commit goroutine.
	toCommit   [][]stream.Record
	committing bool
	idle       chan struct{} // closed when the commit goroutine ends
	err        error         // why fetching stopped (read after batches closes)
	acceptedAt time.Time     // when a round was last accepted
	skipped    int           // records that did not decode (Stats)
	committed  int           // records whose offsets were committed (Stats)
	metrics    *Metrics
	share      stream.DecodeShare // of the records handed out: a wrong --format is warned about
}

// CheckRecords waits up to checkWait for at least checkMin records and
// fails when none of those decodes: the format or the feature names
// cannot be right, and joining would only stall the rounds. With fewer
// records by then it passes, and the decode-share warning watches on.
const (
	checkWait = 10 * time.Second
	checkMin  = 20
)

// NewKafkaSource returns a Kafka source; ctx bounds its fetches. m counts its
// records (nil: unregistered counters). A goroutine prefetches batches
// until ctx ends.
func NewKafkaSource(ctx context.Context, r *stream.Reader, codec *stream.Codec, log *slog.Logger, m *Metrics) *KafkaSource {
	if m == nil {
		m = NewMetrics(nil)
	}
	k := &KafkaSource{ctx: ctx, r: r, codec: codec, log: log, metrics: m, pending: map[uint64][]stream.Record{}, batches: make(chan []stream.Record, 4)}
	go k.prefetch()
	return k
}

func (k *KafkaSource) prefetch() {
	defer close(k.batches)
	var wait backoff.Backoff
	for {
		b, err := k.r.Batch(k.ctx)
		if err == nil {
			wait.Reset()
			select {
			case k.batches <- b:
				continue
			case <-k.ctx.Done():
				err = k.ctx.Err()
			}
		}
		if k.ctx.Err() == nil {
			// The broker went away: kafka-go retries inside; this is
			// what got through. Keep going.
			k.log.Warn("fetching training records failed; retrying", "err", err, "in", wait.Delay())
			if wait.Wait(k.ctx) == nil {
				continue
			}
			err = k.ctx.Err()
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, errStop)
		}
		k.err = err // published by closing batches
		return
	}
}

// take moves one prefetched batch into buf, waiting for it when wait is
// set; it reports false when there was none, with the error when fetching
// has stopped.
func (k *KafkaSource) take(wait bool) (bool, error) {
	var b []stream.Record
	var ok bool
	if wait {
		b, ok = <-k.batches
	} else {
		select {
		case b, ok = <-k.batches:
		default:
			return false, nil
		}
	}
	if !ok {
		return false, k.err
	}
	k.mu.Lock()
	k.buf = append(k.buf, b...)
	k.mu.Unlock()
	return true, nil
}

// TryRead is Read without waiting: it fills dst from what has been
// prefetched and may return 0.
func (k *KafkaSource) TryRead(dst []float64) (int, error) {
	k.mu.Lock()
	empty := len(k.buf) == 0
	k.mu.Unlock()
	if empty {
		if ok, err := k.take(false); !ok {
			return 0, err
		}
	}
	return k.fill(dst, 0), nil
}

// Width implements Source.
func (k *KafkaSource) Width() int { return k.codec.Width() }

// Read implements Source: it blocks until at least one record decodes,
// then fills dst from what has been fetched.
func (k *KafkaSource) Read(dst []float64) (int, error) {
	p := k.codec.Width()
	want := len(dst) / p
	n := 0
	for n < want {
		k.mu.Lock()
		empty := len(k.buf) == 0
		k.mu.Unlock()
		if empty {
			if n > 0 {
				return n, nil // hand out what there is; the round should not wait
			}
			if _, err := k.take(true); err != nil {
				return n, err
			}
		}
		n = k.fill(dst, n)
	}
	return n, nil
}

// fill decodes buffered records into dst from record n on.
func (k *KafkaSource) fill(dst []float64, n int) int {
	p := k.codec.Width()
	want := len(dst) / p
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	for n < want && len(k.buf) > 0 {
		m := k.buf[0]
		k.buf = k.buf[1:]
		k.handed = append(k.handed, m)
		err := k.codec.Decode(dst[n*p:(n+1)*p], m.Value)
		k.count(&m, err, now)
		if err != nil {
			continue
		}
		n++
	}
	return n
}

// count records one handed-out record's decoding in the counters and the
// decode-share watch, warning when most of a window failed (k.mu held).
func (k *KafkaSource) count(m *stream.Record, err error, now time.Time) {
	k.metrics.consumed.Inc()
	if err != nil {
		k.skipped++
		reason := "other"
		var de *stream.DecodeError
		if errors.As(err, &de) {
			reason = string(de.Reason)
		}
		k.metrics.undecodable.WithLabelValues(reason).Inc()
	}
	if w, ok := k.share.Count(m, err, now); ok {
		k.log.Warn("most training records do not decode: is --format or --features wrong?", "topic", w.Topic,
			"undecodable", w.Undecodable, "of", w.Of, "format", k.codec.Format().String(), "first", w.First)
	}
}

// CheckRecords implements Checker: it waits up to checkWait for checkMin
// records and fails when none of them decodes. The records stay for
// training.
func (k *KafkaSource) CheckRecords(ctx context.Context) error {
	deadline := time.NewTimer(checkWait)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		have := len(k.buf)
		k.mu.Unlock()
		if have >= checkMin {
			break
		}
		select {
		case b, ok := <-k.batches:
			if !ok {
				return nil // stopping: Run finds out
			}
			k.mu.Lock()
			k.buf = append(k.buf, b...)
			k.mu.Unlock()
			continue
		case <-deadline.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		break
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.buf) < checkMin {
		return nil
	}
	dst := make([]float64, k.codec.Width())
	var first error
	for _, m := range k.buf {
		err := k.codec.Decode(dst, m.Value)
		if err == nil {
			return nil
		}
		if first == nil {
			first = fmt.Errorf("partition %d offset %d: %w", m.Partition, m.Offset, err)
		}
	}
	return fmt.Errorf("none of the first %d records of %s decodes as %s with these %d features (%w): is --format or --features wrong?",
		len(k.buf), k.buf[0].Topic, k.codec.Format(), k.codec.Width(), first)
}

var errStop = errors.New("kafka source stopped")

// Sent implements Acker.
func (k *KafkaSource) Sent(round uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pending[round] = append(k.pending[round], k.handed...)
	k.handed = nil
}

// Accepted implements Acker: it queues the commit of round's records and
// returns at once; a goroutine commits in order. A commit can block for
// as long as the group rebalances (a member was killed), and training must
// not wait for that.
func (k *KafkaSource) Accepted(ctx context.Context, round uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.acceptedAt = time.Now()
	msgs := k.pending[round]
	delete(k.pending, round)
	// Rounds before this one that were never accepted are dropped: their
	// records are re-delivered after a restart unless a later commit on
	// the same partition covers them (at least once).
	for r := range k.pending {
		if r < round {
			delete(k.pending, r)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	k.toCommit = append(k.toCommit, msgs)
	if !k.committing {
		k.committing = true
		k.idle = make(chan struct{})
		go k.commitLoop()
	}
	return nil
}

// WatchStuck makes the source rejoin its group when a partition's
// committed offset has not moved for after while records wait in it
// (stream.Reader.Watch), judging only while the coordinator accepts this
// source's rounds: with the coordinator down no trainer commits, and
// rejoining would not help. The watch ends when the reader is closed;
// after <= 0 starts none.
func (k *KafkaSource) WatchStuck(after time.Duration) {
	k.r.Watch(after, func() bool { return k.training(after / 3) })
}

// training reports whether the coordinator accepted one of this source's
// rounds within the last d.
func (k *KafkaSource) training(d time.Duration) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.acceptedAt.IsZero() && time.Since(k.acceptedAt) < d
}

func (k *KafkaSource) commitLoop() {
	ctx := context.WithoutCancel(k.ctx)
	for {
		k.mu.Lock()
		if len(k.toCommit) == 0 {
			k.committing = false
			close(k.idle)
			k.mu.Unlock()
			return
		}
		// Everything queued goes in one commit (kafka-go commits the
		// highest offset per partition): when rounds are accepted faster
		// than a commit takes, the queue does not grow.
		var msgs []stream.Record
		for _, q := range k.toCommit {
			msgs = append(msgs, q...)
		}
		k.toCommit = nil
		k.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := k.r.Commit(cctx, msgs...)
		cancel()
		k.mu.Lock()
		if err != nil {
			k.log.Warn("committing trained records failed; they will be re-delivered", "records", len(msgs), "err", err)
		} else {
			k.committed += len(msgs)
		}
		k.mu.Unlock()
	}
}

// Drain waits up to timeout for queued commits to finish, and reports
// whether they did: a stopping trainer calls it so that the offsets of
// everything accepted are committed.
func (k *KafkaSource) Drain(timeout time.Duration) bool {
	k.mu.Lock()
	idle := k.idle
	busy := k.committing
	k.mu.Unlock()
	if !busy {
		return true
	}
	select {
	case <-idle:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stats returns how many records were committed and how many skipped as
// undecodable.
func (k *KafkaSource) Stats() (committed, skipped int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.committed, k.skipped
}
