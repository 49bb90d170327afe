package console

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Explained is an alert recomputed from its source record and the
// checkpoint that scored it: every feature, with its term of the score.
// With whitening the score is r^T P r for the standardized residual r, so
// feature l's term is r_l (P r)_l (negative where its error runs against
// the others' usual pattern); without, r_l^2. The terms add up to the score.
type Explained struct {
	Score    float64       `json:"score"`           // recomputed
	Matches  bool          `json:"matches"`         // equal to the alert's score to 1e-6, relative
	Whitened bool          `json:"whitened"`        // the model weighs errors by how features vary together
	Features []FeaturePart `json:"features"`        // every feature, largest term first
	Error    string        `json:"error,omitempty"` // why it could not be recomputed (the rest is then empty)
}

// FeaturePart is one feature of a recomputed alert.
type FeaturePart struct {
	Name           string  `json:"name"`           // the feature
	Value          float64 `json:"value"`          // as received
	Reconstruction float64 `json:"reconstruction"` // the model's, in the same units
	Error          float64 `json:"error"`          // squared standardized error, as alerts list it
	Term           float64 `json:"term"`           // its term of the score
	Share          float64 `json:"share"`          // Term / Score
}

// Explainer recomputes alerts: it reads the source record from Kafka and
// the checkpoint from the coordinator (a few kept).
type Explainer struct {
	Brokers     []string                  // bootstrap addresses
	Security    stream.Security           // TLS and SASL for Kafka
	Format      stream.Format             // the records' format, as the scorers read them
	Coordinator reconv1.CoordinatorClient // where checkpoints are read from

	mu    sync.Mutex
	cache map[uint64]*checkpoint.Loaded
	order []uint64
}

// Explain recomputes a.
func (x *Explainer) Explain(ctx context.Context, a scorer.Alert) (*Explained, error) {
	l, err := x.checkpoint(ctx, a.Model.Version)
	if err != nil {
		return nil, err
	}
	m, err := stream.ReadAt(ctx, x.Brokers, x.Security, a.Source.Topic, a.Source.Partition, a.Source.Offset)
	if err != nil {
		return nil, fmt.Errorf("the source record %s: %w", a.ID, err)
	}
	names := l.Features
	p := l.Model.Spec().Input
	if len(names) != p {
		names = make([]string, p)
		for i := range names {
			names[i] = "f" + strconv.Itoa(i)
		}
	}
	codec, err := stream.NewCodec(x.Format, names)
	if err != nil {
		return nil, err
	}
	raw := make([]float64, p)
	if err := codec.Decode(raw, m.Value); err != nil {
		return nil, fmt.Errorf("the source record %s does not decode as %s: %w", a.ID, x.Format, err)
	}
	z := append([]float64(nil), raw...)
	if l.Normalizer != nil {
		l.Normalizer.Transform(z, z)
	}
	rec := make([]float64, p)
	l.Model.Reconstruct(rec, z)
	r := make([]float64, p)
	for i := range r {
		r[i] = z[i] - rec[i]
	}
	term := make([]float64, p)
	e := &Explained{Whitened: l.Whitening != nil}
	if l.Whitening != nil {
		e.Score = l.Whitening.Terms(term, r)
	} else {
		for i := range p {
			term[i] = r[i] * r[i]
			e.Score += term[i]
		}
	}
	e.Matches = math.Abs(e.Score-a.Score) <= 1e-6*math.Max(math.Abs(a.Score), 1)
	units := append([]float64(nil), rec...)
	if l.Normalizer != nil {
		l.Normalizer.Inverse(units, rec)
	}
	for i := range p {
		f := FeaturePart{Name: names[i], Value: raw[i], Reconstruction: units[i], Error: r[i] * r[i], Term: term[i]}
		if e.Score != 0 {
			f.Share = term[i] / e.Score
		}
		e.Features = append(e.Features, f)
	}
	sort.SliceStable(e.Features, func(i, j int) bool { return e.Features[i].Term > e.Features[j].Term })
	return e, nil
}

// checkpoint returns version v, loaded (the last 8 asked for are kept).
func (x *Explainer) checkpoint(ctx context.Context, v uint64) (*checkpoint.Loaded, error) {
	x.mu.Lock()
	if l, ok := x.cache[v]; ok {
		x.mu.Unlock()
		return l, nil
	}
	x.mu.Unlock()
	if x.Coordinator == nil {
		return nil, errors.New("no coordinator to read the checkpoint from")
	}
	c, err := x.Coordinator.GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{Version: v})
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", v, err)
	}
	l, err := checkpoint.Load(c)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %d: %w", v, err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.cache == nil {
		x.cache = map[uint64]*checkpoint.Loaded{}
	}
	x.cache[v] = l
	x.order = append(x.order, v)
	if len(x.order) > 8 {
		delete(x.cache, x.order[0])
		x.order = x.order[1:]
	}
	return l, nil
}
