// Command loadgen produces records to a Kafka topic at a steady rate. It
// works against any Kafka cluster.
//
// By default the records are of the seed's kind: near a low-rank subspace
// plus noise, with a known fraction of injected anomalies of several
// kinds. Each record carries a "recon-truth" header (normal, spike,
// off-subspace or scaled) so precision and recall can be measured
// downstream.
//
// With --input FILE it replays a file instead: a CSV file with a header
// row, or JSON lines (one object per line). Each row becomes one record of
// its feature columns in --format, with the file's label as the
// recon-truth header (normal or anomaly) and its 0-based row number as the
// "recon-row" header, pass after pass, in file order or shuffled. The file
// is read into memory once, before anything is produced.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

// The headers records carry.
const (
	TruthHeader = "recon-truth" // what a record is: normal, or the anomaly kind
	RowHeader   = "recon-row"   // a replayed record's 0-based row in its file
)

// maxSyntheticWidth bounds --features: the synthetic normal region is a
// p x p matrix (128 MiB at this width).
const maxSyntheticWidth = 4096

// The flags of one mode only, refused in the other.
var (
	syntheticOnly = []string{"features", "rank", "noise", "anomalies", "kinds", "outside", "basis-seed", "keys"}
	replayOnly    = []string{"input-format", "columns", "label", "key-column", "order", "passes"}
)

func main() {
	cli.Exit("loadgen", run(cli.Signals("loadgen"), os.Args[1:], os.Stderr))
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: loadgen [flags]
       loadgen --input FILE [flags]

Produces records to a Kafka topic at a steady rate.

Synthetic records (the default) lie near a low-rank subspace plus noise, with
injected anomalies. The recon-truth header of each record says normal, spike
(one feature pushed 6 to 8 of its standard deviations), off-subspace (every
feature pushed off the subspace, sd 2.5) or scaled (the whole record
multiplied by 4). Each anomaly is drawn again while it lies inside the
ellipsoid holding the --outside share of normal records (their covariance
known), so none is one a normal draw would match: at 6 features about 9% of
plain off-subspace and 6% of scaled records would be.

Replay (--input FILE) produces the rows of a file instead: CSV with a header
row, or JSON lines (one object per line), told apart by the extension (.csv;
.jsonl, .ndjson or .json) or --input-format. Each row is one record in
--format of the --columns named (default: every column but the label and key
columns), numbers all, NaN and infinities passed on as they are. The --label
column (default: label, when the file has one) is not sent as a feature: the
recon-truth header says normal for 0 (or false, or normal) and anomaly for any
other value. The recon-row header gives the record's 0-based row in the file,
and the key is the --key-column's value or else the row number. --passes runs
through the file that many times (0: until --count, --duration or a signal),
in file order or, with --order shuffle, shuffled afresh each pass from --seed.
The file is read into memory first. The synthetic-only flags (--features,
--rank, --noise, --anomalies, --kinds, --basis-seed) are refused on the command
line with --input, the replay flags without it; a RECON_* variable of the
other mode is ignored.`)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap `addresses`, comma-separated")
	topic := fs.String("topic", "recon-events", "`topic` to produce to")
	rate := fs.Float64("rate", 2000, "records per second (0: as fast as the broker takes them)")
	count := fs.Int64("count", 0, "stop after this many records (0: no limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit)")
	format := fs.String("format", "json-array", "record format: json-object, json-array or csv")
	seed := fs.Uint64("seed", 42, "seed of the records (replay: of the shuffle)")
	p := fs.Int("features", 30, "synthetic: record width, at most 4096 (replay: see --columns)")
	rank := fs.Int("rank", 3, "synthetic: rank of the subspace records lie near")
	noise := fs.Float64("noise", 0.4, "synthetic: noise standard deviation")
	anomalies := fs.Float64("anomalies", 0.01, "synthetic: fraction of injected anomalies")
	kinds := fs.String("kinds", "spike,off-subspace,scaled", "synthetic: anomaly kinds to inject, comma-separated")
	outside := fs.Float64("outside", 0.9999, "synthetic: anomalies lie outside the region holding this `share` of normal records (0: as first injected)")
	keys := fs.Int("keys", 0, "synthetic: key the records sensor-0 .. sensor-N-1 in turn, as N devices would (0: each record's number)")
	basisSeed := fs.Uint64("basis-seed", 1, "synthetic: seed of the subspace (trainers' synth sources use the same)")
	input := fs.String("input", "", "replay the rows of this CSV or JSON-lines `file` instead of producing synthetic records")
	inputFormat := fs.String("input-format", "", "replay: the file's `format`, csv or jsonl (default: from its extension)")
	columns := fs.String("columns", "", "replay: the feature `columns` to send, in record order, comma-separated (default: every column but the label and key columns)")
	label := fs.String("label", "label", "replay: the label `column`, sent as the recon-truth header, not as a feature (\"\": none; the default only when the file has it)")
	keyColumn := fs.String("key-column", "", "replay: the `column` whose value keys each record (default: the row number)")
	ord := fs.String("order", "file", "replay: the order of the rows: file, or shuffle (afresh each pass)")
	passes := fs.Int("passes", 1, "replay: passes through the file (0: until --count, --duration or a signal)")
	kafkaFlags := cli.AddKafkaFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	sec, err := kafkaFlags.Security()
	if err != nil {
		return err
	}
	if err := checkMode(commandLine(fs, args), *input != ""); err != nil {
		return err
	}
	if *rate < 0 {
		return cli.Usagef("--rate %v: want >= 0", *rate)
	}
	f, err := stream.ParseFormat(*format)
	if err != nil {
		return cli.Usagef("--format: %v", err)
	}
	if c, err := stream.NewCodec(f, []string{"f0"}); err != nil || !c.CanEncode() {
		return cli.Usagef("--format %s: loadgen cannot write records of that format", f)
	}

	var src *source
	if *input == "" {
		if *p < 2 || *rank < 1 || *rank >= *p || *anomalies < 0 || *anomalies >= 1 || *outside < 0 || *outside >= 1 || *noise <= 0 {
			return cli.Usagef("want features >= 2, 1 <= rank < features, --noise > 0, --anomalies and --outside in [0,1)")
		}
		if *p > maxSyntheticWidth {
			// The normal region behind --outside is a p x p matrix:
			// 90,000 features would need 65 GB.
			return cli.Usagef("--features %d: synthetic records are at most %d features wide (replay a file with --input for wider records)", *p, maxSyntheticWidth)
		}
		ks := strings.Split(*kinds, ",")
		for _, k := range ks {
			if !slices.Contains(synth.Kinds, k) {
				return cli.Usagef("--kinds: unknown kind %q", k)
			}
		}
		if *keys < 0 {
			return cli.Usagef("--keys %d: want >= 0", *keys)
		}
		src = synthetic(f, *p, *rank, *noise, *anomalies, *outside, ks, *basisSeed, *seed)
		if *keys > 0 {
			src = keyed(src, *keys)
		}
	} else {
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		sel := selection{label: *label, labelOptional: !set["label"], key: *keyColumn}
		if *columns != "" {
			for _, c := range strings.Split(*columns, ",") {
				if c = strings.TrimSpace(c); c == "" {
					return cli.Usagef("--columns %q: an empty column name", *columns)
				}
				sel.columns = append(sel.columns, c)
			}
		}
		if *passes < 0 {
			return cli.Usagef("--passes %d: want >= 0", *passes)
		}
		if *ord != "file" && *ord != "shuffle" {
			return cli.Usagef("--order %q: want file or shuffle", *ord)
		}
		in, err := parseInputFormat(*inputFormat, *input)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		var rng *rand.Rand
		if *ord == "shuffle" {
			rng = rand.New(rand.NewPCG(*seed, 0x10ad))
		}
		if src, err = replay(*input, in, sel, f, *passes, rng); err != nil {
			return err
		}
	}

	log, err := cli.Logger("info")
	if err != nil {
		return err
	}
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: strings.Split(*brokers, ","), Topic: *topic, Logger: log, Security: sec})
	if err != nil {
		return err
	}
	defer w.Close()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	sent := produce(ctx, w, src.next, *rate, *count)
	fmt.Fprintf(stderr, "loadgen: %s\n", src.summary(sent, *topic, time.Since(start)))
	return nil
}

// commandLine returns the names of the flags args sets, leaving aside the
// RECON_* variables cli.Parse also applies: a shared environment may set
// flags of the other mode. args must already have parsed into fs.
func commandLine(fs *flag.FlagSet, args []string) map[string]bool {
	probe := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	fs.VisitAll(func(f *flag.Flag) { probe.Var(ignore{f.Value}, f.Name, f.Usage) })
	_ = probe.Parse(args) // args parsed into fs already: nothing new to report
	set := map[string]bool{}
	probe.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// ignore is a flag value that takes any setting and keeps none.
type ignore struct{ flag.Value }

func (ignore) Set(string) error { return nil }

func (v ignore) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// checkMode refuses the flags of the mode not chosen.
func checkMode(given map[string]bool, replay bool) error {
	wrong, mode := syntheticOnly, "synthetic records only, not for --input"
	if !replay {
		wrong, mode = replayOnly, "replaying a file only: they need --input"
	}
	var bad []string
	for _, name := range wrong {
		if given[name] {
			bad = append(bad, "--"+name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	hint := ""
	if replay && given["features"] {
		hint = " (--columns picks a file's features)"
	}
	return cli.Usagef("%s: for %s%s", strings.Join(bad, ", "), mode, hint)
}

// source makes the records to produce.
type source struct {
	next    func() (stream.Record, bool)                            // the next record; false when there are no more
	summary func(sent int64, topic string, el time.Duration) string // what was produced, for the last line
}

// synthetic returns a source of records near a low-rank subspace, the
// given fraction of them anomalies of the given kinds, each outside the
// region holding share outside of normal records (0: anywhere).
func synthetic(f stream.Format, p, rank int, noise, anomalies, outside float64, kinds []string, basisSeed, seed uint64) *source {
	var names []string
	for i := 0; i < p; i++ {
		names = append(names, "f"+strconv.Itoa(i))
	}
	codec, _ := stream.NewCodec(f, names)
	basis := synth.Basis(rand.New(rand.NewPCG(basisSeed, 0xba5e)), rank, p) // as trainer.NewSynth
	rng := rand.New(rand.NewPCG(seed, 0x10ad))
	scales := synth.Scales(basis, rank, noise)
	var region *synth.Region
	if outside > 0 {
		region = synth.NewRegion(basis, rank, noise, outside)
	}
	rec := make([]float64, p)
	var made, injected int64
	return &source{
		next: func() (stream.Record, bool) {
			synth.Sample(rng, rec, basis, rank, noise)
			truth := "normal"
			if rng.Float64() < anomalies {
				truth = kinds[rng.IntN(len(kinds))]
				synth.Outlying(rng, rec, basis, rank, noise, scales, truth, region)
				injected++
			}
			key := strconv.FormatInt(made, 10)
			made++
			return stream.Record{Key: []byte(key), Value: codec.Encode(nil, rec),
				Headers: []stream.Header{{Key: TruthHeader, Value: []byte(truth)}}}, true
		},
		summary: func(sent int64, topic string, el time.Duration) string {
			s := el.Seconds()
			return fmt.Sprintf("%d records (%d anomalies) to %s in %.1fs, %.0f records/s", sent, injected, topic, s, float64(sent)/s)
		},
	}
}

// keyed returns src with its records keyed sensor-0 .. sensor-(n-1) in
// turn.
func keyed(src *source, n int) *source {
	next, i := src.next, 0
	src.next = func() (stream.Record, bool) {
		m, ok := next()
		m.Key = []byte("sensor-" + strconv.Itoa(i%n))
		i++
		return m, ok
	}
	return src
}

// replay returns a source of the rows of the file at path, in records of
// format f, pass after pass (0: no end) in file order or shuffled by rng.
func replay(path string, in inputFormat, sel selection, f stream.Format, passes int, rng *rand.Rand) (*source, error) {
	t, err := load(path, in, sel)
	if err != nil {
		return nil, err
	}
	codec, err := stream.NewCodec(f, t.features)
	if err != nil {
		return nil, err
	}
	o := newOrder(t.rows(), passes, rng)
	return &source{
		next: func() (stream.Record, bool) {
			i, ok := o.next()
			if !ok {
				return stream.Record{}, false
			}
			return t.message(codec, i), true
		},
		summary: func(sent int64, topic string, el time.Duration) string {
			return fmt.Sprintf("%d rows read from %s, %d records produced to %s in %s, %.1fs, %.0f records/s",
				t.rows(), t.name, sent, topic, passesDone(sent, t.rows()), el.Seconds(), float64(sent)/el.Seconds())
		},
	}, nil
}

// load reads the file at path.
func load(path string, in inputFormat, sel selection) (*table, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	defer file.Close()
	return readTable(file, filepath.Base(path), in, sel)
}

// passesDone says how many passes through rows rows sent records make.
func passesDone(sent int64, rows int) string {
	full, rest := sent/int64(rows), sent%int64(rows)
	s := strconv.FormatInt(full, 10) + " passes"
	if full == 1 {
		s = "1 pass"
	}
	if rest > 0 {
		s += fmt.Sprintf(" and %d rows", rest)
	}
	return s
}

// writer is where records go.
type writer interface {
	Write(ctx context.Context, msgs ...stream.Record) error
}

// produce writes the records next makes to w at rate records a second (0:
// as fast as w takes them) until next has no more, count are written (0:
// no limit) or ctx ends, and returns the number written.
func produce(ctx context.Context, w writer, next func() (stream.Record, bool), rate float64, count int64) int64 {
	const tick = 20 * time.Millisecond
	perTick := 1000.0
	if rate > 0 {
		perTick = rate * tick.Seconds()
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var sent int64
	var owed float64
	for {
		owed += perTick
		n := int(owed)
		owed -= float64(n)
		if count > 0 {
			n = int(min(int64(n), count-sent))
		}
		msgs := make([]stream.Record, 0, n)
		done := false
		for len(msgs) < n {
			m, ok := next()
			if !ok {
				done = true
				break
			}
			msgs = append(msgs, m)
		}
		if len(msgs) > 0 {
			// An unreachable broker is retried with backoff (the writer
			// logs one line per burst): records are never skipped.
			var wait backoff.Backoff
			for {
				err := w.Write(ctx, msgs...)
				if err == nil || wait.Wait(ctx) != nil {
					break
				}
			}
			if ctx.Err() != nil {
				break
			}
			sent += int64(len(msgs))
		}
		if done || count > 0 && sent >= count {
			break
		}
		if rate > 0 {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	return sent
}
