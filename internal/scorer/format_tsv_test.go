package scorer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/recon-ad/recon/pkg/stream"
)

// A record format added in this one file, with no change anywhere else:
// tab-separated values, the features in model order. It decodes only.
var tsv = stream.RegisterFormat(stream.FormatSpec{
	Name: "tsv",
	New:  func(features []string) (stream.Decoder, error) { return tsvDecoder{names: features}, nil },
})

type tsvDecoder struct{ names []string }

func (d tsvDecoder) Decode(dst []float64, value []byte) error {
	fields := bytes.Split(bytes.TrimRight(value, "\r\n"), []byte{'\t'})
	if len(fields) != len(dst) {
		return &stream.DecodeError{Reason: stream.ReasonWrongLength, Detail: fmt.Sprintf("%d fields, want %d", len(fields), len(dst))}
	}
	for i, f := range fields {
		v, err := strconv.ParseFloat(string(f), 64)
		if err != nil {
			return &stream.DecodeError{Reason: stream.ReasonNotANumber, Detail: fmt.Sprintf("%s: %q is not a number", d.names[i], f)}
		}
		dst[i] = v
	}
	return nil
}

// TestAFormatInOneFile: the format registered above is taken by name
// (what --format passes to ParseFormat), and the scorer core scores its
// records exactly as it scores the same records in JSON, and dead-letters
// a bad one with the decoder's reason.
func TestAFormatInOneFile(t *testing.T) {
	const p = 6
	f, err := stream.ParseFormat("tsv")
	if err != nil || f != tsv || f.String() != "tsv" || f.Named() {
		t.Fatalf("ParseFormat(tsv) = %v, %v", f, err)
	}
	var g stream.Format
	if err := g.UnmarshalText([]byte("tsv")); err != nil || g != tsv {
		t.Fatalf("UnmarshalText(tsv) = %v, %v", g, err)
	}
	m := untrainedModel(t, p)
	m.Threshold = 0.5
	codec, err := stream.NewCodec(tsv, m.Features())
	if err != nil {
		t.Fatal(err)
	}
	if codec.CanEncode() {
		t.Error("a decode-only format says it can encode")
	}
	js, _ := stream.NewCodec(stream.JSONArray, m.Features())
	rng := rand.New(rand.NewPCG(1, 2))
	var asTSV, asJSON []stream.Record
	rec := make([]float64, p)
	for i := range 200 {
		var line []byte
		for j := range rec {
			rec[j] = rng.NormFloat64()
			if j > 0 {
				line = append(line, '\t')
			}
			line = strconv.AppendFloat(line, rec[j], 'g', -1, 64)
		}
		at := time.Unix(1700000000, 0)
		asTSV = append(asTSV, stream.Record{Topic: "events", Offset: int64(i), Value: line, Time: at})
		asJSON = append(asJSON, stream.Record{Topic: "events", Offset: int64(i), Value: js.Encode(nil, rec), Time: at})
	}
	asTSV = append(asTSV, stream.Record{Topic: "events", Offset: 200, Value: []byte("1\t2")})
	now := time.Unix(1800000000, 0)
	bt, err := NewBatch(m, tsv, 2)
	if err != nil {
		t.Fatal(err)
	}
	bj, _ := NewBatch(m, stream.JSONArray, 2)
	ot, oj := bt.Process(asTSV, now), bj.Process(asJSON, now)
	if len(ot.Scores) != 200 || len(oj.Scores) != 200 || len(ot.Alerts) != len(oj.Alerts) || len(ot.Alerts) == 0 {
		t.Fatalf("tsv: %d scores, %d alerts; json: %d scores, %d alerts", len(ot.Scores), len(ot.Alerts), len(oj.Scores), len(oj.Alerts))
	}
	for i := range ot.Scores {
		if ot.Scores[i].Score != oj.Scores[i].Score {
			t.Fatalf("record %d scores %v in tsv, %v in json", i, ot.Scores[i].Score, oj.Scores[i].Score)
		}
	}
	if len(ot.DeadLetters) != 1 || header(ot.DeadLetters[0], HeaderReason) != string(stream.ReasonWrongLength) {
		t.Fatalf("dead letters %v, want the short record as wrong_length", ot.DeadLetters)
	}
}
