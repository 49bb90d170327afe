package console

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"

	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// oneCheckpoint is a coordinator client that has one checkpoint.
type oneCheckpoint struct {
	reconv1.CoordinatorClient
	c *reconv1.Checkpoint
}

func (o oneCheckpoint) GetCheckpoint(_ context.Context, req *reconv1.GetCheckpointRequest, _ ...grpc.CallOption) (*reconv1.Checkpoint, error) {
	if req.GetVersion() != o.c.GetVersion() {
		return nil, fmt.Errorf("checkpoint %d: not found", req.GetVersion())
	}
	return o.c, nil
}

// TestExplainAddsUpToTheScore: an alert the scorer raised on a record in
// Kafka, recomputed from that record and its checkpoint, has every
// feature, the listed ones with the alert's figures, and terms that add
// up to the alert's score (whitened, as the default fit is).
func TestExplainAddsUpToTheScore(t *testing.T) {
	const p = 8
	rng := rand.New(rand.NewPCG(3, 4))
	basis := synth.Basis(rng, 2, p)
	train := make([]float64, 3000*p)
	synth.Sample(rng, train, basis, 2, 0.2)
	cfg := fit.Default()
	cfg.Spec.Output = ae.Linear
	res, err := fit.Fit(context.Background(), cfg, train, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range p {
		names = append(names, fmt.Sprintf("x%d", i))
	}
	c := res.Checkpoint(names)
	c.Version, c.Optimizer = 7, nil
	if len(c.GetWhitening()) == 0 {
		t.Fatal("the fit has no whitening: this test means to check the whitened terms")
	}

	brokers := testkit.Kafka(t)
	codec, _ := stream.NewCodec(stream.JSONArray, names)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := (stream.Security{}).EnsureTopics(ctx, brokers, map[string]int{"events": 1}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: "events", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll} // acknowledged: in the log before ReadAt
	defer w.Close()
	rec := make([]float64, p)
	var msgs []kafka.Message
	for i := range 50 {
		synth.Sample(rng, rec, basis, 2, 0.2)
		if i%10 == 3 {
			rec[2] += 9
		}
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: codec.Encode(nil, rec)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// Read them back for their offsets, as the scorer sees them.
	var got []stream.Record
	for off := int64(0); off < int64(len(msgs)); off++ {
		m, err := stream.ReadAt(ctx, brokers, stream.Security{}, "events", 0, off)
		if err != nil {
			t.Fatalf("ReadAt %d: %v", off, err)
		}
		got = append(got, m)
	}
	if _, err := stream.ReadAt(ctx, brokers, stream.Security{}, "events", 0, int64(len(msgs))); err == nil {
		t.Error("ReadAt past the end found a record")
	}
	m, err := scorer.NewScoringModel(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := scorer.NewBatch(m, stream.JSONArray, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := b.Process(got, time.Now())
	if len(out.Alerts) == 0 {
		t.Fatal("no alert on records with spikes")
	}
	x := &Explainer{Brokers: brokers, Format: stream.JSONArray, Coordinator: oneCheckpoint{c: c}}
	for _, am := range out.Alerts {
		var a scorer.Alert
		if err := json.Unmarshal(am.Value, &a); err != nil {
			t.Fatal(err)
		}
		e, err := x.Explain(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		sum, share := 0.0, 0.0
		for _, f := range e.Features {
			sum += f.Term
			share += f.Share
		}
		if len(e.Features) != p || !e.Whitened || !e.Matches || math.Abs(sum-a.Score) > 1e-6*a.Score || math.Abs(share-1) > 1e-9 {
			t.Errorf("alert %s (score %v): %d features, whitened %v, matches %v, terms sum to %v, shares to %v", a.ID, a.Score, len(e.Features), e.Whitened, e.Matches, sum, share)
		}
		by := map[string]FeaturePart{}
		for _, f := range e.Features {
			by[f.Name] = f
		}
		for _, f := range a.Features {
			g := by[f.Name]
			if math.Abs(g.Value-f.Value) > 1e-12 || math.Abs(g.Reconstruction-f.Reconstruction) > 1e-9*math.Max(1, math.Abs(f.Value)) || math.Abs(g.Error-f.Error) > 1e-9*math.Max(1, f.Error) {
				t.Errorf("alert %s feature %s: recomputed %+v, the alert's %+v", a.ID, f.Name, g, f)
			}
		}
	}
	a := scorer.Alert{ID: "events/0/3", Source: scorer.RecordRef{Topic: "events", Offset: 3}, Model: scorer.ModelRef{Version: 8}}
	if _, err := x.Explain(ctx, a); err == nil {
		t.Error("an alert of a version the coordinator does not have was explained")
	}
}
