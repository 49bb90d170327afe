package scorer

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
)

const decodeWarning = "most records do not decode"

// untrainedModel returns an untrained model of p features (code width 2).
func untrainedModel(tb testing.TB, p int) *ScoringModel {
	tb.Helper()
	a, err := ae.New(ae.Spec{Input: p, Code: 2})
	if err != nil {
		tb.Fatal(err)
	}
	c := checkpoint.Build(a, nil, nil, nil)
	c.Version = 1
	m, err := NewScoringModel(c)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// mixedRecords returns n JSON-array records of p features on partition 0
// of topic events from offset off on, those for which bad(offset) holds in
// CSV (what a scorer with the wrong --format sees).
func mixedRecords(rng *rand.Rand, p int, off int64, n int, bad func(int64) bool) []stream.Record {
	names := make([]string, p)
	for f := range names {
		names[f] = fmt.Sprintf("f%d", f)
	}
	codec, _ := stream.NewCodec(stream.JSONArray, names)
	rec := make([]float64, p)
	msgs := make([]stream.Record, n)
	for i := range msgs {
		o := off + int64(i)
		for f := range rec {
			rec[f] = rng.NormFloat64()
		}
		v := codec.Encode(nil, rec)
		if bad(o) {
			v = []byte(strings.Trim(string(v), "[]"))
		}
		msgs[i] = stream.Record{Topic: "events", Partition: 0, Offset: o, Key: []byte(fmt.Sprint(o)), Value: v}
	}
	return msgs
}

// TestDecodeShareWarnsOncePerMinute feeds a Parallel of several parts
// batches of 700 records (so windows of 1000 straddle batches and parts)
// for three minutes, one batch a second: a stream mostly undecodable
// gives exactly one warning in each minute, saying how many of a window
// failed, the format and the first failure; every undecodable record is
// still dead-lettered. Half or fewer undecodable gives none.
func TestDecodeShareWarnsOncePerMinute(t *testing.T) {
	const p, batch, batches = 8, 700, 180
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		bad   func(off int64) bool
		warns int
	}{
		{"60% undecodable", func(o int64) bool { return o%5 < 3 }, 3},
		{"all decodable", func(int64) bool { return false }, 0},
		{"half undecodable", func(o int64) bool { return o%2 == 0 }, 0},
		{"all undecodable", func(int64) bool { return true }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs testkit.LogBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			par, err := NewParallel(4, untrainedModel(t, p), stream.JSONArray, 3)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			var share decodeShare
			var warnedAt []time.Duration
			for i := range batches {
				off := int64(i * batch)
				msgs := mixedRecords(rng, p, off, batch, tc.bad)
				now := t0.Add(time.Duration(i) * time.Second)
				before := strings.Count(logs.String(), decodeWarning)
				out := par.Process(msgs, now)
				share.observe(log, stream.JSONArray, msgs, out, now)
				if strings.Count(logs.String(), decodeWarning) > before {
					warnedAt = append(warnedAt, now.Sub(t0))
				}
				wantDead := 0
				for o := off; o < off+batch; o++ {
					if tc.bad(o) {
						wantDead++
					}
				}
				if len(out.DeadLetters) != wantDead || len(out.Scores) != batch-wantDead {
					t.Fatalf("batch %d: %d dead letters and %d scored, want %d and %d", i, len(out.DeadLetters), len(out.Scores), wantDead, batch-wantDead)
				}
				for _, d := range out.DeadLetters {
					if r := header(d, HeaderReason); r != string(stream.ReasonBadJSON) {
						t.Fatalf("batch %d: dead letter %s with reason %q", i, header(d, HeaderOffset), r)
					}
				}
			}
			lines := strings.Count(logs.String(), decodeWarning)
			if lines != tc.warns {
				t.Fatalf("%d decode warnings, want %d:\n%s", lines, tc.warns, logs.String())
			}
			for k, at := range warnedAt {
				if at < time.Duration(k)*time.Minute || at >= time.Duration(k+1)*time.Minute {
					t.Errorf("warning %d at t0+%v, want one in each minute: %v", k, at, warnedAt)
				}
			}
			if tc.warns == 0 {
				return
			}
			// The first window is offsets 0 to 999, complete in the second batch.
			first := strings.SplitN(logs.String(), "\n", 2)[0]
			wantBad := 0
			for o := range int64(decodeWindow) {
				if tc.bad(o) {
					wantBad++
				}
			}
			for _, want := range []string{"level=WARN", "topic=events", fmt.Sprintf("undecodable=%d of=%d", wantBad, decodeWindow),
				"format=json-array", `first="partition 0 offset 0: bad_json:`} {
				if !strings.Contains(first, want) {
					t.Errorf("warning %q lacks %q", first, want)
				}
			}
			if warnedAt[0] != time.Second {
				t.Errorf("first warning at t0+%v, want t0+1s (when the first window is complete)", warnedAt[0])
			}
		})
	}
}

// BenchmarkProcess scores batches of 2000 records (the replica's default
// MaxBatch) of 8 features, all decodable or 60% not, as the replica does:
// Process on GOMAXPROCS parts, then the decode-share watch.
func BenchmarkProcess(b *testing.B) {
	const p, n = 8, 2000
	for _, tc := range []struct {
		name string
		bad  func(int64) bool
	}{
		{"decodable", func(int64) bool { return false }},
		{"undecodable=60%", func(o int64) bool { return o%5 < 3 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			par, err := NewParallel(runtime.GOMAXPROCS(0), untrainedModel(b, p), stream.JSONArray, 3)
			if err != nil {
				b.Fatal(err)
			}
			msgs := mixedRecords(rand.New(rand.NewPCG(1, 2)), p, 0, n, tc.bad)
			log := slog.New(slog.DiscardHandler)
			var share decodeShare
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				out := par.Process(msgs, now)
				share.observe(log, stream.JSONArray, msgs, out, now)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}
