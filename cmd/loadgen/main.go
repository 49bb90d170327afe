// Command loadgen produces records of the seed's kind to a Kafka topic:
// records near a low-rank subspace plus noise, with a known fraction of
// injected anomalies of several kinds. Each record carries a "recon-truth"
// header (normal, spike, off-subspace or scaled) so precision and recall can
// be measured downstream. It works against any Kafka cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

// TruthHeader names the header that says what a record is.
const TruthHeader = "recon-truth"

func main() {
	cli.Exit("loadgen", run(cli.Signals("loadgen"), os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: loadgen [flags]\n\nProduces records near a low-rank subspace plus noise, with injected anomalies,\n"+
			"to a Kafka topic at a steady rate. The recon-truth header of each record says\n"+
			"normal, spike (one feature pushed 6 to 8 of its standard deviations),\n"+
			"off-subspace (every feature pushed off the subspace, sd 2.5) or scaled (the\n"+
			"whole record multiplied by 4).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap `addresses`, comma-separated")
	topic := fs.String("topic", "recon-events", "`topic` to produce to")
	rate := fs.Float64("rate", 2000, "records per second (0: as fast as the broker takes them)")
	count := fs.Int64("count", 0, "stop after this many records (0: no limit)")
	duration := fs.Duration("duration", 0, "stop after this long (0: no limit)")
	p := fs.Int("features", 30, "record width")
	rank := fs.Int("rank", 3, "rank of the subspace records lie near")
	noise := fs.Float64("noise", 0.4, "noise standard deviation")
	anomalies := fs.Float64("anomalies", 0.01, "fraction of injected anomalies")
	kinds := fs.String("kinds", "spike,off-subspace,scaled", "anomaly kinds to inject, comma-separated")
	format := fs.String("format", "json-array", "record format: json-object, json-array or csv")
	basisSeed := fs.Uint64("basis-seed", 1, "seed of the subspace (trainers' synth sources use the same)")
	seed := fs.Uint64("seed", 42, "seed of the records")
	kafkaFlags := cli.AddKafkaFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	sec, err := kafkaFlags.Security()
	if err != nil {
		return err
	}
	if *p < 2 || *rank < 1 || *rank >= *p || *anomalies < 0 || *anomalies >= 1 || *rate < 0 {
		return cli.Usagef("want features >= 2, 1 <= rank < features, anomalies in [0,1), rate >= 0")
	}
	ks := strings.Split(*kinds, ",")
	for _, k := range ks {
		if !slices.Contains(synth.Kinds, k) {
			return cli.Usagef("--kinds: unknown kind %q", k)
		}
	}
	f, err := stream.ParseFormat(*format)
	if err != nil {
		return cli.Usagef("--format: %v", err)
	}
	var names []string
	for i := 0; i < *p; i++ {
		names = append(names, "f"+strconv.Itoa(i))
	}
	codec, _ := stream.NewCodec(f, names)
	log, err := cli.Logger("info")
	if err != nil {
		return err
	}
	w, err := stream.NewWriter(stream.WriterConfig{Brokers: strings.Split(*brokers, ","), Topic: *topic, Logger: log, Security: sec})
	if err != nil {
		return err
	}
	defer w.Close()
	basis := synth.Basis(rand.New(rand.NewPCG(*basisSeed, 0xba5e)), *rank, *p) // as worker.NewSynth
	rng := rand.New(rand.NewPCG(*seed, 0x10ad))
	scales := synth.Scales(basis, *rank, *noise)
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	const tick = 20 * time.Millisecond
	perTick := 1000.0
	if *rate > 0 {
		perTick = *rate * tick.Seconds()
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	rec := make([]float64, *p)
	var sent, injected int64
	var owed float64
	start := time.Now()
	for {
		owed += perTick
		n := int(owed)
		owed -= float64(n)
		if *count > 0 {
			n = int(min(int64(n), *count-sent))
		}
		msgs := make([]kafka.Message, 0, n)
		for i := 0; i < n; i++ {
			synth.Sample(rng, rec, basis, *rank, *noise)
			truth := "normal"
			if rng.Float64() < *anomalies {
				truth = ks[rng.IntN(len(ks))]
				synth.Inject(rng, rec, scales, truth)
				injected++
			}
			key := strconv.FormatInt(sent+int64(i), 10)
			msgs = append(msgs, kafka.Message{Key: []byte(key), Value: codec.Encode(nil, rec),
				Headers: []kafka.Header{{Key: TruthHeader, Value: []byte(truth)}}})
		}
		if len(msgs) > 0 {
			// An unreachable broker is retried with backoff (the writer
			// logs one line per burst): records are never skipped.
			backoff := 100 * time.Millisecond
			for {
				err := w.Write(ctx, msgs...)
				if err == nil || ctx.Err() != nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
			if ctx.Err() != nil {
				break
			}
			sent += int64(len(msgs))
		}
		if *count > 0 && sent >= *count {
			break
		}
		if *rate > 0 {
			select {
			case <-ctx.Done():
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "loadgen: %d records (%d anomalies) to %s in %.1fs, %.0f records/s\n", sent, injected, *topic, el, float64(sent)/el)
	return nil
}
