// Package sketch is the mergeable quantile sketch of held-out scores that
// workers send with their gradients: DataDog's DDSketch with a fixed
// relative accuracy, encoded as its protobuf. Every quantile it returns is
// within RelativeAccuracy of the exact quantile of the scores it holds,
// however many sketches were merged.
package sketch

import (
	"errors"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/pb/sketchpb"
	"google.golang.org/protobuf/proto"
)

// RelativeAccuracy is the sketches' guaranteed relative accuracy.
const RelativeAccuracy = 0.01

// New returns an empty sketch.
func New() *ddsketch.DDSketch {
	s, err := ddsketch.NewDefaultDDSketch(RelativeAccuracy)
	if err != nil {
		panic(err) // the accuracy is a valid constant
	}
	return s
}

// Encode returns s's protobuf encoding.
func Encode(s *ddsketch.DDSketch) []byte {
	b, err := proto.Marshal(s.ToProto())
	if err != nil {
		panic(fmt.Sprintf("sketch: encode: %v", err))
	}
	return b
}

// ErrBad is wrapped by Decode's errors.
var ErrBad = errors.New("bad score sketch")

// Decode parses a sketch encoded by Encode, refusing one of another
// accuracy or with impossible counts.
func Decode(b []byte) (*ddsketch.DDSketch, error) {
	var pb sketchpb.DDSketch
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBad, err)
	}
	if pb.Mapping == nil || math.Abs(pb.Mapping.Gamma-New().IndexMapping.ToProto().Gamma) > 1e-12 {
		return nil, fmt.Errorf("%w: index mapping differs from this build's (relative accuracy %v)", ErrBad, RelativeAccuracy)
	}
	for _, st := range []*sketchpb.Store{pb.PositiveValues, pb.NegativeValues} {
		if st == nil {
			continue
		}
		if len(st.BinCounts)+len(st.ContiguousBinCounts) > 1<<16 {
			return nil, fmt.Errorf("%w: too many bins", ErrBad)
		}
		for _, c := range st.BinCounts {
			if !(c >= 0) || math.IsInf(c, 0) {
				return nil, fmt.Errorf("%w: bin count %v", ErrBad, c)
			}
		}
		for _, c := range st.ContiguousBinCounts {
			if !(c >= 0) || math.IsInf(c, 0) {
				return nil, fmt.Errorf("%w: bin count %v", ErrBad, c)
			}
		}
		if d := int64(st.ContiguousBinIndexOffset); d > 1<<20 || d < -(1<<20) {
			return nil, fmt.Errorf("%w: bin offset %d", ErrBad, d)
		}
		for k := range st.BinCounts {
			if k > 1<<20 || k < -(1<<20) {
				return nil, fmt.Errorf("%w: bin index %d", ErrBad, k)
			}
		}
	}
	if !(pb.ZeroCount >= 0) || math.IsInf(pb.ZeroCount, 0) {
		return nil, fmt.Errorf("%w: zero count %v", ErrBad, pb.ZeroCount)
	}
	s, err := ddsketch.FromProto(&pb)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBad, err)
	}
	return s, nil
}

// Robust returns the robust threshold of the scores s holds: the median
// times (Q75/Q25)^(k/1.349). On the log scale that is k robust standard
// deviations (the interquartile range over 1.349) above the median, the
// tail a log-normal fit to the bulk of the scores puts there. Unlike a high
// quantile it barely moves when a few percent of the scores are anomalies,
// which a training stream usually contains.
func Robust(s *ddsketch.DDSketch, k float64) (float64, error) {
	qs, err := s.GetValuesAtQuantiles([]float64{0.25, 0.5, 0.75})
	if err != nil {
		return 0, err
	}
	q25, q50, q75 := qs[0], qs[1], qs[2]
	if !(q25 > 0 && q75 >= q25) {
		return 0, fmt.Errorf("sketch: robust threshold: quartiles %v and %v", q25, q75)
	}
	return q50 * math.Pow(q75/q25, k/1.349), nil
}
