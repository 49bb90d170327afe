package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/pkg/stream"
)

// Acker is a Source that learns what happened to the records it handed
// out: Sent says they went into round r's gradient, Accepted that the
// coordinator averaged it. A Kafka source commits offsets only then.
type Acker interface {
	Sent(round uint64)
	Accepted(ctx context.Context, round uint64) error
}

// Kafka is a Source reading a topic as a member of a consumer group
// (default recon-trainer). Records that do not decode are skipped and
// counted; offsets are committed only for records whose gradient the
// coordinator accepted, so a crash re-delivers, never loses.
type Kafka struct {
	ctx     context.Context
	r       *stream.Reader
	codec   *stream.Codec
	log     *slog.Logger
	mu      sync.Mutex
	buf     []kafka.Message // fetched, not yet handed out
	handed  []kafka.Message // handed out since the last Sent
	pending map[uint64][]kafka.Message
	// Skipped counts records that did not decode.
	Skipped int
	// Committed counts records whose offsets were committed.
	Committed int
}

// NewKafka returns a Kafka source; ctx bounds its fetches.
func NewKafka(ctx context.Context, r *stream.Reader, codec *stream.Codec, log *slog.Logger) *Kafka {
	return &Kafka{ctx: ctx, r: r, codec: codec, log: log, pending: map[uint64][]kafka.Message{}}
}

// Width implements Source.
func (k *Kafka) Width() int { return k.codec.Width() }

// Read implements Source: it blocks until at least one record decodes,
// then fills dst from what has been fetched.
func (k *Kafka) Read(dst []float64) (int, error) {
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
			b, err := k.r.Batch(k.ctx)
			if err != nil {
				if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
					return n, errors.Join(err, errStop)
				}
				return n, err
			}
			k.mu.Lock()
			k.buf = append(k.buf, b...)
			k.mu.Unlock()
		}
		k.mu.Lock()
		for n < want && len(k.buf) > 0 {
			m := k.buf[0]
			k.buf = k.buf[1:]
			k.handed = append(k.handed, m)
			if err := k.codec.Decode(dst[n*p:(n+1)*p], m.Value); err != nil {
				k.Skipped++
				continue
			}
			n++
		}
		k.mu.Unlock()
	}
	return n, nil
}

var errStop = errors.New("kafka source stopped")

// Sent implements Acker.
func (k *Kafka) Sent(round uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pending[round] = append(k.pending[round], k.handed...)
	k.handed = nil
}

// Accepted implements Acker: it commits the offsets of round's records.
func (k *Kafka) Accepted(ctx context.Context, round uint64) error {
	k.mu.Lock()
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
	k.mu.Unlock()
	if err := k.r.Commit(ctx, msgs...); err != nil {
		return err
	}
	k.mu.Lock()
	k.Committed += len(msgs)
	k.mu.Unlock()
	return nil
}
