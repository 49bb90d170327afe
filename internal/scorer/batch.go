// Package scorer turns batches of input records into alerts, dead letters
// and scores with the current checkpoint. Batch.Process is the pure core of
// a scorer replica: no goroutines, sockets or clocks (the time is passed
// in); the replica's driver (consume, swap checkpoints, produce, commit)
// calls it between fetch and commit.
package scorer

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// AlertSchema is the version of the alert JSON this package writes.
const AlertSchema = 1

// Alert is the JSON value of an alert record (key: the source record's key).
type Alert struct {
	Schema    int       `json:"schema"`    // AlertSchema
	ID        string    `json:"id"`        // "topic/partition/offset": the idempotency key
	Source    RecordRef `json:"source"`    // the scored record
	ScoredAt  time.Time `json:"scored_at"` // when it was scored
	Model     ModelRef  `json:"model"`     // the checkpoint that scored it
	Score     float64   `json:"score"`     // squared reconstruction error of the standardized record
	Threshold float64   `json:"threshold"` // the checkpoint's threshold it exceeded
	Features  []Feature `json:"features"`  // top contributors, largest error first
}

// RecordRef locates the scored record.
type RecordRef struct {
	Topic     string    `json:"topic"`     // source topic
	Partition int       `json:"partition"` // source partition
	Offset    int64     `json:"offset"`    // source offset
	Timestamp time.Time `json:"timestamp"` // the record's Kafka timestamp
}

// ModelRef names the checkpoint that scored the record.
type ModelRef struct {
	Version uint64 `json:"version"` // checkpoint version
	Variant string `json:"variant"` // autoencoder variant
}

// Feature is one feature's part in a score.
type Feature struct {
	Name           string  `json:"name"`           // feature name
	Value          float64 `json:"value"`          // as received
	Reconstruction float64 `json:"reconstruction"` // the model's reconstruction, in the same units
	Error          float64 `json:"error"`          // its share of the score: squared standardized error
}

// Dead-letter headers.
const (
	HeaderReason    = "recon-dlq-reason"
	HeaderDetail    = "recon-dlq-detail"
	HeaderTopic     = "recon-source-topic"
	HeaderPartition = "recon-source-partition"
	HeaderOffset    = "recon-source-offset"
)

// ScoringModel is a checkpoint ready to score with.
type ScoringModel struct {
	Version   uint64  // checkpoint version
	Variant   string  // autoencoder variant
	Threshold float64 // alert when a score exceeds it (0: no alerts yet)
	loaded    *checkpoint.Loaded
	names     []string
}

// NewScoringModel prepares checkpoint c for scoring. A checkpoint without feature
// names gets f0, f1, ...
func NewScoringModel(c *reconv1.Checkpoint) (*ScoringModel, error) {
	l, err := checkpoint.Load(c)
	if err != nil {
		return nil, err
	}
	names := l.Features
	if names == nil {
		for i := 0; i < l.Model.Spec().Input; i++ {
			names = append(names, "f"+strconv.Itoa(i))
		}
	}
	if l.Normalizer == nil {
		l.Normalizer = ae.NewNormalizer(l.Model.Spec().Input)
	}
	return &ScoringModel{Version: c.GetVersion(), Variant: c.GetSpec().GetVariant(), Threshold: c.GetThreshold(), loaded: l, names: names}, nil
}

// Features returns the model's feature names in input order.
func (m *ScoringModel) Features() []string { return m.names }

// Output is what one batch produces; every input record is in exactly one
// of Scored (with its score) or DeadLetters.
type Output struct {
	Alerts      []stream.Record // one per record scored above the threshold
	DeadLetters []stream.Record // undecodable or invalid records, with reason headers
	Scores      []Scored        // every scored record
	// undecodable lists the records of the batch that did not decode, in
	// input order, for the decode-share watch (nil when all decoded).
	undecodable []undecodable
}

// undecodable is one record that did not decode: its index in the batch
// and the codec's error.
type undecodable struct {
	i   int
	err error
}

// Scored is one scored record.
type Scored struct {
	Msg   *stream.Record // the input record (in the slice given to Process)
	Score float64        // its score
	Alert bool           // whether it exceeded the threshold
}

// Batch scores batches with one model; it keeps buffers between calls and
// is not safe for concurrent use.
type Batch struct {
	model *ScoringModel
	ae    *ae.Model // this batch's own copy: scratch buffers are per model
	codec *stream.Codec
	topK  int
	x     []float64
	raw   []float64
	feat  []float64
	score []float64
	rec   []float64 // reconstructions, standardized
	idx   []int
	ok    []int // msgs index of each decoded row
	// Alert scratch: the id, the top features, and the largest alert
	// encoded so far (the next one's first allocation).
	id        []byte
	top       []Feature
	alertSize int
}

// NewBatch returns a scorer for records of the given format with model m,
// listing the top topK contributing features in each alert.
func NewBatch(m *ScoringModel, format stream.Format, topK int) (*Batch, error) {
	codec, err := stream.NewCodec(format, m.names)
	if err != nil {
		return nil, err
	}
	return &Batch{model: m, ae: m.loaded.Model.Clone(), codec: codec, topK: max(topK, 1)}, nil
}

// Model returns the batch's model.
func (b *Batch) Model() *ScoringModel { return b.model }

// Parallel scores large batches on several goroutines, one Batch each;
// small batches use the first alone. The output is in input order, as one
// Batch's would be.
type Parallel struct {
	parts []*Batch
}

// minPart is the fewest records worth a goroutine of their own.
const minPart = 256

// NewParallel returns a Parallel of n Batches (n at least 1).
func NewParallel(n int, m *ScoringModel, format stream.Format, topK int) (*Parallel, error) {
	p := &Parallel{}
	for i := 0; i < max(n, 1); i++ {
		b, err := NewBatch(m, format, topK)
		if err != nil {
			return nil, err
		}
		p.parts = append(p.parts, b)
	}
	return p, nil
}

// Model returns the model the batches score with.
func (p *Parallel) Model() *ScoringModel { return p.parts[0].model }

// Process is Batch.Process over the parts.
func (p *Parallel) Process(msgs []stream.Record, now time.Time) Output {
	k := min(len(p.parts), len(msgs)/minPart)
	if k <= 1 {
		return p.parts[0].Process(msgs, now)
	}
	outs := make([]Output, k)
	scores := make([]Scored, len(msgs)) // part i scores into [lo, hi)
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		lo, hi := i*len(msgs)/k, (i+1)*len(msgs)/k
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = p.parts[i].process(msgs[lo:hi], now, scores[lo:lo:hi])
		}()
	}
	wg.Wait()
	// One slice of each, the parts' in order; the scores moved down in
	// place.
	var na, nd, nu int
	for _, o := range outs {
		na, nd, nu = na+len(o.Alerts), nd+len(o.DeadLetters), nu+len(o.undecodable)
	}
	out := Output{Scores: scores[:0]}
	if na > 0 {
		out.Alerts = make([]stream.Record, 0, na)
	}
	if nd > 0 {
		out.DeadLetters = make([]stream.Record, 0, nd)
	}
	if nu > 0 {
		out.undecodable = make([]undecodable, 0, nu)
	}
	for i, o := range outs {
		out.Alerts = append(out.Alerts, o.Alerts...)
		out.DeadLetters = append(out.DeadLetters, o.DeadLetters...)
		out.Scores = append(out.Scores, o.Scores...)
		lo := i * len(msgs) / k
		for _, u := range o.undecodable {
			out.undecodable = append(out.undecodable, undecodable{lo + u.i, u.err})
		}
	}
	return out
}

// decodeShare is the replica's decode-share watch (stream.DecodeShare): a
// scorer given the wrong --format dead-letters every record, and dead
// letters alone say nothing in its log. It is fed every batch's output in
// order by the replica's consume loop and outlives model swaps.
type decodeShare struct{ stream.DecodeShare }

// decodeWindow is the watch's window, for tests.
const decodeWindow = stream.DecodeWindow

// observe counts batch msgs, whose output out is, at time now, and logs to
// log when a window it completes is mostly undecodable.
func (d *decodeShare) observe(log *slog.Logger, format stream.Format, msgs []stream.Record, out Output, now time.Time) {
	bad := out.undecodable
	for i := range msgs {
		var err error
		if len(bad) > 0 && bad[0].i == i {
			err, bad = bad[0].err, bad[1:]
		}
		if w, ok := d.Count(&msgs[i], err, now); ok {
			log.Warn("most records do not decode: is --format or the trainer's --features wrong?", "topic", w.Topic,
				"undecodable", w.Undecodable, "of", w.Of, "format", format.String(), "first", w.First)
		}
	}
}

// Process decodes, normalizes and scores msgs at time now.
func (b *Batch) Process(msgs []stream.Record, now time.Time) Output {
	return b.process(msgs, now, nil)
}

// process is Process with the scores appended to scores, which has room
// for one per record (nil: a new slice).
func (b *Batch) process(msgs []stream.Record, now time.Time, scores []Scored) Output {
	out := Output{Scores: scores}
	p := b.codec.Width()
	// Records decode straight into b.raw; b.ok maps its rows to msgs.
	b.raw = grow(b.raw, len(msgs)*p)
	b.ok = b.ok[:0]
	for i := range msgs {
		m := &msgs[i]
		n := len(b.ok)
		if err := b.codec.Decode(b.raw[n*p:(n+1)*p], m.Value); err != nil {
			reason, detail := stream.ReasonBadJSON, err.Error()
			var de *stream.DecodeError
			if errors.As(err, &de) {
				reason, detail = de.Reason, de.Detail
			}
			out.DeadLetters = append(out.DeadLetters, deadLetter(*m, string(reason), detail))
			out.undecodable = append(out.undecodable, undecodable{i, err})
			continue
		}
		b.ok = append(b.ok, i)
	}
	ok := b.ok
	n := len(ok)
	b.raw = b.raw[:n*p]
	if n == 0 {
		return out
	}
	b.x = grow(b.x, n*p)
	l := b.model.loaded
	l.Normalizer.Transform(b.x, b.raw)
	// One forward pass: the reconstruction gives the scores, the per-feature
	// terms and the alerts' reconstructed values.
	b.rec = grow(b.rec, n*p)
	b.score = grow(b.score, n)
	b.feat = grow(b.feat, n*p)
	l.ScoreOn(b.ae, b.score, b.feat, b.rec, b.x)
	th := b.model.Threshold
	var recon []float64
	if out.Scores == nil {
		out.Scores = make([]Scored, 0, n)
	}
	for j, i := range ok {
		m := &msgs[i]
		s := b.score[j]
		if math.IsNaN(s) || math.IsInf(s, 0) {
			// Finite inputs that standardize or reconstruct to a non-finite
			// score (a value far outside the training range): not scoreable.
			out.DeadLetters = append(out.DeadLetters, deadLetter(*m, "non_finite_score", fmt.Sprintf("score %v", s)))
			continue
		}
		alert := th > 0 && s > th
		out.Scores = append(out.Scores, Scored{Msg: m, Score: s, Alert: alert})
		if !alert {
			continue
		}
		if recon == nil {
			recon = make([]float64, p)
		}
		out.Alerts = append(out.Alerts, b.alert(m, j, s, now, recon))
	}
	return out
}

// alert builds the alert for scored record j of the batch.
func (b *Batch) alert(m *stream.Record, j int, score float64, now time.Time, recon []float64) stream.Record {
	p := b.codec.Width()
	l := b.model.loaded
	// Reconstruction in the input's units.
	l.Normalizer.Inverse(recon, b.rec[j*p:(j+1)*p])
	contrib := b.feat[j*p : (j+1)*p]
	b.idx = checkpoint.TopFeatures(b.idx, contrib, b.topK)
	b.id = appendRecordID(b.id[:0], m.Topic, m.Partition, m.Offset)
	a := Alert{
		Schema:   AlertSchema,
		ID:       unsafeString(b.id), // only while the alert is encoded
		Source:   RecordRef{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Timestamp: m.Time.UTC()},
		ScoredAt: now.UTC(), Model: ModelRef{Version: b.model.Version, Variant: b.model.Variant},
		Score: score, Threshold: b.model.Threshold,
		Features: b.top[:0],
	}
	for _, i := range b.idx {
		a.Features = append(a.Features, Feature{Name: b.model.names[i], Value: b.raw[j*p+i], Reconstruction: recon[i], Error: contrib[i]})
	}
	b.top = a.Features
	v, ok := appendAlert(make([]byte, 0, b.alertSize), &a)
	if !ok {
		var err error
		if v, err = json.Marshal(a); err != nil {
			panic(fmt.Sprintf("scorer: marshal alert: %v", err)) // every field is finite by construction
		}
	}
	b.alertSize = max(b.alertSize, len(v))
	return stream.Record{Key: m.Key, Value: v, Headers: m.Headers} // the source's headers (tracing, tenancy) travel on
}

// unsafeString views b as a string without copying; the result must not
// outlive b's next change.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// deadLetter is m for the dead-letter topic: its key, value and headers,
// then recon's headers saying why and where it came from.
func deadLetter(m stream.Record, reason, detail string) stream.Record {
	hs := make([]stream.Header, 0, len(m.Headers)+5)
	hs = append(hs, m.Headers...)
	hs = append(hs,
		stream.Header{Key: HeaderReason, Value: []byte(reason)},
		stream.Header{Key: HeaderDetail, Value: []byte(detail)},
		stream.Header{Key: HeaderTopic, Value: []byte(m.Topic)},
		stream.Header{Key: HeaderPartition, Value: []byte(strconv.Itoa(m.Partition))},
		stream.Header{Key: HeaderOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))})
	return stream.Record{Key: m.Key, Value: m.Value, Headers: hs}
}

func grow(b []float64, n int) []float64 {
	if cap(b) < n {
		return make([]float64, n)
	}
	return b[:n]
}

// header returns the value of header k of m ("" when absent).
func header(m stream.Record, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}
