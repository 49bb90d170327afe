package scorer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/recon-ad/recon/pkg/stream"
)

// TestAppendMatchesMarshal: the alert and score-record appenders write
// exactly what json.Marshal writes, for numbers at every exponent (and the
// cutoffs of its exponent form), strings that need escaping (quotes, HTML,
// control bytes, invalid UTF-8, U+2028), times with and without
// nanoseconds or in other zones, and no features; and they refuse what
// json.Marshal refuses.
func TestAppendMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 1e-6, 9.99999e-7, 1e-7, 1e21, 9.99999999e20, 1e20, 123456789,
		5e-324, math.MaxFloat64, -math.SmallestNonzeroFloat64, 1e-10, 2.5e-9, 1.7976931348623157e308, 0.1, 104.6}
	for range 2000 {
		floats = append(floats, rng.NormFloat64()*math.Pow(10, float64(rng.IntN(60)-30)), math.Float64frombits(rng.Uint64()))
	}
	strs := []string{"", "f0", "bench-events", `quo"te`, `back\slash`, "<b>&", "tab\there", "nl\n", "\x00\x1f\x7f", "é ü 日本",
		"\xff\xfe bad utf-8", "line\u2028sep\u2029", "host-1234"}
	times := []time.Time{{}, time.Unix(0, 0).UTC(), time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 7, 12, 0, 0, 123456789, time.UTC), time.Date(2026, 12, 7, 12, 0, 0, 120000000, time.UTC),
		time.Date(2026, 12, 7, 12, 0, 0, 5, time.FixedZone("x", 3600)), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.UnixMilli(1 << 50).UTC()}
	pick := func(fs []float64) float64 {
		if rng.IntN(10) == 0 {
			return []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[rng.IntN(3)]
		}
		return fs[rng.IntN(len(fs))]
	}
	for i := range 20000 {
		a := Alert{Schema: AlertSchema, ID: strs[rng.IntN(len(strs))],
			Source: RecordRef{Topic: strs[rng.IntN(len(strs))], Partition: rng.IntN(100) - 1, Offset: rng.Int64() - rng.Int64(),
				Timestamp: times[rng.IntN(len(times))]},
			ScoredAt: times[rng.IntN(len(times))], Model: ModelRef{Version: rng.Uint64(), Variant: strs[rng.IntN(len(strs))]},
			Score: pick(floats), Threshold: pick(floats)}
		switch i % 3 {
		case 0: // nil features
		case 1:
			a.Features = []Feature{}
		default:
			for range 1 + rng.IntN(4) {
				a.Features = append(a.Features, Feature{Name: strs[rng.IntN(len(strs))], Value: pick(floats), Reconstruction: pick(floats), Error: pick(floats)})
			}
		}
		want, err := json.Marshal(a)
		got, ok := appendAlert([]byte("prefix"), &a)
		switch {
		case ok && err != nil:
			t.Fatalf("alert %+v: appended %s, json.Marshal refuses it: %v", a, got, err)
		case ok && !bytes.Equal(got, append([]byte("prefix"), want...)):
			t.Fatalf("alert:\n got %s\nwant prefix%s", got, want)
		case !ok && err == nil && a.Source.Timestamp.Location() == time.UTC && a.ScoredAt.Location() == time.UTC:
			t.Fatalf("alert %+v: refused, json.Marshal writes %s", a, want)
		}

		s := ScoreRecord{ID: strs[rng.IntN(len(strs))], Score: pick(floats), Threshold: pick(floats), Alert: rng.IntN(2) == 0,
			Version: rng.Uint64(), Scorer: strs[rng.IntN(len(strs))]}
		want, err = json.Marshal(s)
		got, ok = appendScore(nil, &s, appendString(nil, s.Scorer))
		switch {
		case ok != (err == nil):
			t.Fatalf("score record %+v: appended %v, json.Marshal error %v", s, ok, err)
		case ok && !bytes.Equal(got, want):
			t.Fatalf("score record:\n got %s\nwant %s", got, want)
		}
	}
}

// TestScoreMessages: a batch's score records are json.Marshal's
// ScoreRecords, keyed and headed as their source records, each value its
// own (appending to one does not change the next).
func TestScoreMessages(t *testing.T) {
	m := &ScoringModel{Version: 7, Threshold: 2.5}
	var scores []Scored
	for i := range 3000 {
		src := &stream.Record{Topic: "events", Partition: i % 4, Offset: int64(i) * 1000003, Key: []byte{byte(i)},
			Headers: []stream.Header{{Key: "trace", Value: []byte{byte(i)}}}}
		scores = append(scores, Scored{Msg: src, Score: float64(i) / 7, Alert: i%10 == 0})
	}
	msgs := scoreMessages(scores, m, `replica "a" <1>`)
	if len(msgs) != len(scores) {
		t.Fatalf("%d records for %d scores", len(msgs), len(scores))
	}
	for i, s := range scores {
		want, _ := json.Marshal(ScoreRecord{ID: fmt.Sprintf("%s/%d/%d", s.Msg.Topic, s.Msg.Partition, s.Msg.Offset),
			Score: s.Score, Threshold: 2.5, Alert: s.Alert, Version: 7, Scorer: `replica "a" <1>`})
		if !bytes.Equal(msgs[i].Value, want) || !bytes.Equal(msgs[i].Key, s.Msg.Key) || len(msgs[i].Headers) != 1 || &msgs[i].Headers[0] != &s.Msg.Headers[0] {
			t.Fatalf("record %d: %s key %v headers %v, want %s key %v headers %v", i, msgs[i].Value, msgs[i].Key, msgs[i].Headers, want, s.Msg.Key, s.Msg.Headers)
		}
		if cap(msgs[i].Value) != len(msgs[i].Value) {
			t.Fatalf("record %d: value of length %d has room for %d: an append would overwrite the next", i, len(msgs[i].Value), cap(msgs[i].Value))
		}
	}
}
