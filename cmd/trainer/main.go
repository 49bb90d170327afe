// Command trainer trains recon's autoencoders. run is a distributed
// training worker for a coordinator; the offline subcommands work on CSV
// data: fit trains one model and writes a checkpoint; sweep-k fits a range
// of code widths and suggests one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/table"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

const usage = `usage: trainer <command> [flags]

Commands:
  run      a distributed training worker: join a coordinator and send it gradients
  fit      train one model on a CSV file and write a checkpoint
  sweep-k  fit a range of code widths, print held-out error per k and suggest one

Run 'trainer <command> -h' for a command's flags. Every flag can also be set
by an environment variable: RECON_ and its name in capitals, dashes as
underscores (--noise-sigma: RECON_NOISE_SIGMA).
`

func main() {
	cli.Dispatch("trainer", usage,
		cli.Command{Name: "run", Run: runWorker},
		cli.Command{Name: "fit", Run: runFit},
		cli.Command{Name: "sweep-k", Run: runSweep})
}

// dataFlags select the rows to train on.
type dataFlags struct {
	input, header, columns, label *string
}

func addDataFlags(fs *flag.FlagSet) *dataFlags {
	return &dataFlags{
		input:   fs.String("input", "-", "CSV `file` to read, - for standard input"),
		header:  fs.String("header", "auto", "whether the first line names the columns: auto, yes, no"),
		columns: fs.String("columns", "", "feature `columns`, comma-separated names or 0-based indices (default: all but --label)"),
		label:   fs.String("label", "", "label `column` (name or index): never trained on"),
	}
}

func (d *dataFlags) read() (*table.Table, error) {
	h, err := table.ParseHeader(*d.header)
	if err != nil {
		return nil, cli.Usagef("--header: %v", err)
	}
	var cols []string
	if *d.columns != "" {
		cols = strings.Split(*d.columns, ",")
	}
	var r io.Reader = os.Stdin
	name := "standard input"
	if *d.input != "-" {
		f, err := os.Open(*d.input)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r, name = f, *d.input
	}
	t, err := table.Read(r, table.Options{Header: h, Columns: cols, Label: *d.label})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// trainFlags are the optimization settings.
type trainFlags struct {
	epochs, batch, patience *int
	lr, holdout, rate       *float64
	seed                    *uint64
}

func addTrainFlags(fs *flag.FlagSet) *trainFlags {
	d := fit.Default()
	return &trainFlags{
		epochs:   fs.Int("epochs", d.Epochs, "most training `epochs` (0: 200, fewer on large data so that about 4M records are presented; training stops earlier when held-out error stops improving)"),
		batch:    fs.Int("batch", d.Batch, "minibatch `size`"),
		patience: fs.Int("patience", d.Patience, "`epochs` without held-out improvement before the learning rate drops (twice) and then training stops"),
		lr:       fs.Float64("lr", d.LR, "Adam learning `rate`"),
		holdout:  fs.Float64("holdout", d.Holdout, "`fraction` of rows held out for early stopping and the threshold"),
		rate:     fs.Float64("alert-rate", d.AlertRate, "alert threshold: the `share` of held-out records scored above it (the 1 - share quantile of held-out scores)"),
		seed:     fs.Uint64("seed", d.Seed, "random `seed` for the split, initialization, batches and noise"),
	}
}

func (t *trainFlags) config(spec ae.Spec, auto bool) (fit.Config, error) {
	c := fit.Config{Spec: spec, Auto: auto, Epochs: *t.epochs, Batch: *t.batch, LR: *t.lr,
		Holdout: *t.holdout, Patience: *t.patience, AlertRate: *t.rate, Seed: *t.seed}
	if err := c.Validate(); err != nil {
		return c, cli.Usagef("%v", err)
	}
	return c, nil
}

func runFit(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trainer fit", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: trainer fit --out model.db [flags] < data.csv

Trains one autoencoder on the numeric columns of a CSV file (standardized on the
training rows), stops when held-out error stops improving, sets the alert threshold
for an alert rate on held-out scores and writes the model as the next checkpoint
version in a bbolt file. Progress goes to standard error.`)
	data := addDataFlags(fs)
	model := cli.AddModelFlags(fs)
	train := addTrainFlags(fs)
	out := fs.String("out", "", "checkpoint store `file` (bbolt) to write; created if missing (required)")
	keep := fs.Int("keep", 10, "checkpoints the store keeps, newest first (0: all)")
	quiet := fs.Bool("quiet", false, "no per-epoch progress")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return cli.Usagef("--out is required: the checkpoint store to write")
	}
	spec, auto, err := model.Spec()
	if err != nil {
		return err
	}
	cfg, err := train.config(spec, auto)
	if err != nil {
		return err
	}
	t, err := data.read()
	if err != nil {
		return err
	}
	// Open the store before training: an unwritable path fails in a moment,
	// not after the work. A store this run created is removed on failure.
	_, statErr := os.Stat(*out)
	created := errors.Is(statErr, os.ErrNotExist)
	store, err := checkpoint.Open(*out, checkpoint.Options{Keep: *keep})
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		// Remove a store this run created, unless something (another
		// process) has committed to it meanwhile.
		empty := false
		if !ok && created {
			v, err := store.NextVersion()
			empty = err == nil && v == 1
		}
		store.Close()
		if empty {
			os.Remove(*out)
		}
	}()

	var progress func(fit.Progress)
	if !*quiet {
		progress = func(p fit.Progress) {
			mark := " "
			if p.Best {
				mark = "*"
			}
			fmt.Fprintf(os.Stderr, "epoch %4d/%d  train %.5f  held-out %.5f%s  lr %.1e  %8.0f rows/s\n",
				p.Epoch, p.Epochs, p.TrainLoss, p.HeldOut, mark, p.LR, p.RowsPerSec)
		}
	}
	res, err := fit.Fit(ctx, cfg, t.X, t.Width(), progress)
	if err != nil {
		return err
	}
	if len(res.Constant) > 0 {
		var names []string
		for _, j := range res.Constant {
			names = append(names, t.Names[j])
		}
		fmt.Fprintf(os.Stderr, "trainer fit: warning: columns constant on the training rows, centered but not scaled: %s\n", strings.Join(names, ", "))
	}
	version, err := store.NextVersion()
	if err != nil {
		return err
	}
	c := res.Checkpoint(t.Names)
	c.Version = version
	c.CreatedAt = timestamppb.Now()
	c.Metadata = map[string]string{
		"tool":          "trainer fit",
		"source":        *data.input,
		"train_rows":    strconv.Itoa(len(res.TrainRows)),
		"heldout_rows":  strconv.Itoa(len(res.HeldOutRows)),
		"heldout_error": strconv.FormatFloat(res.HeldOut, 'g', 8, 64),
		"best_epoch":    strconv.Itoa(res.BestEpoch),
		"seed":          strconv.FormatUint(*train.seed, 10),
	}
	if err := store.Put(c); err != nil {
		return err
	}
	ok = true
	s := res.Model.Spec()
	fmt.Fprintf(os.Stderr, "trainer fit: %s model %d-%v-%d; %d training rows, %d held out; %d epochs (best %d) in %v, %.0f rows/s\n",
		s.Variant, s.Input, s.Hidden, s.Code, len(res.TrainRows), len(res.HeldOutRows), res.Epochs, res.BestEpoch,
		res.Elapsed.Round(time.Millisecond), float64(len(res.TrainRows)*res.Epochs)/res.Elapsed.Seconds())
	fmt.Fprintf(os.Stderr, "trainer fit: held-out error %.5f; threshold %.5f for alert rate %v; wrote version %d to %s\n",
		res.HeldOut, res.Threshold, res.AlertRate, version, *out)
	return nil
}

func runSweep(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trainer sweep-k", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: trainer sweep-k (--demo | --input data.csv) [--k 1-9] [--plot sweep.png] [flags]

Fits one model per code width k on the same split and prints training and held-out
error per k; for a linear model (the default) also the PCA closed form, PCA's
held-out error and the largest principal angle to the PCA subspace. Suggests the k
at the elbow of held-out error. Any model flag turns the sweep non-linear.`)
	data := addDataFlags(fs)
	model := cli.AddModelFlags(fs)
	train := addTrainFlags(fs)
	demo := fs.Bool("demo", false, "use the seed's synthetic data: 500 rows, 10 features near a rank-3 subspace, noise sd 0.4")
	kFlag := fs.String("k", "", "code widths: a range like 1-9 or a list like 2,4,8 (default 1 to min(p-1, 10))")
	plotPath := fs.String("plot", "", "write the error curve with the elbow marked to this `file` (.png, .svg or .pdf)")
	quiet := fs.Bool("quiet", false, "no per-k progress")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	linear := !set["hidden"] && !set["activation"] && !set["code-activation"] && !set["output"] && !set["variant"]
	if linear {
		model.SetLinear(fs)
	}
	spec, _, err := model.Spec()
	if err != nil {
		return err
	}
	cfg, err := train.config(spec, false)
	if err != nil {
		return err
	}
	if linear {
		lc := fit.LinearDemoConfig()
		lc.Spec, lc.Holdout, lc.Seed, lc.AlertRate = spec, cfg.Holdout, cfg.Seed, cfg.AlertRate
		cfg = lc
	}
	var x []float64
	var p int
	source := "demo data (rank 3)"
	if *demo {
		if set["input"] {
			return cli.Usagef("--demo and --input exclude each other")
		}
		x, _, p = synth.Demo(rand.New(rand.NewPCG(*train.seed, 2026)))
	} else {
		t, err := data.read()
		if err != nil {
			return err
		}
		x, p, source = t.X, t.Width(), *data.input
	}
	ks, err := parseKs(*kFlag, p)
	if err != nil {
		return err
	}
	var progress func(int, fit.Progress)
	if !*quiet {
		last := 0
		progress = func(k int, pr fit.Progress) {
			if k != last {
				fmt.Fprintf(os.Stderr, "sweep-k: fitting k=%d\n", k)
				last = k
			}
		}
	}
	sw, err := fit.RunSweep(ctx, cfg, x, p, ks, progress)
	if err != nil {
		return err
	}
	kind := "linear autoencoder (PCA reference)"
	if !linear {
		kind = fmt.Sprintf("%v autoencoder, %v activations", spec.Variant, spec.Activation)
	}
	fmt.Printf("sweep-k: %s on %s: %d rows x %d features, %.0f%% held out, standardized on training rows\n",
		kind, source, len(x)/p, p, 100*cfg.Holdout)
	if linear {
		fmt.Printf("%3s %12s %12s %8s %12s %12s %10s\n", "k", "train err", "PCA closed", "ratio", "held-out", "PCA held-out", "angle deg")
		fmt.Printf("%3d %12s %12s %8s %12.5f %12.5f %10s\n", 0, "", "", "", sw.Total, sw.Total, "")
		for _, r := range sw.Rows {
			fmt.Printf("%3d %12.5f %12.5f %8.4f %12.5f %12.5f %10.3f\n", r.K, r.Train, r.Closed, r.Train/r.Closed, r.HeldOut, r.PCATest, r.AngleDeg)
		}
	} else {
		fmt.Printf("%3s %12s %12s %7s\n", "k", "train err", "held-out", "epochs")
		fmt.Printf("%3d %12s %12.5f\n", 0, "", sw.Total)
		for _, r := range sw.Rows {
			fmt.Printf("%3d %12.5f %12.5f %7d\n", r.K, r.Train, r.HeldOut, r.Epochs)
		}
	}
	fmt.Printf("suggested k = %d (the elbow: held-out error falls steeply up to it and flattens after)\n", sw.Elbow)
	if *plotPath != "" {
		if err := fit.PlotSweep(sw, fmt.Sprintf("recon sweep-k: %s", source), *plotPath); err != nil {
			return err
		}
		fmt.Printf("plot written to %s\n", *plotPath)
	}
	return nil
}

// parseKs parses "1-9" or "2,4,8"; empty means 1..min(p-1, 10).
func parseKs(s string, p int) ([]int, error) {
	var ks []int
	switch {
	case s == "":
		for k := 1; k <= min(p-1, 10); k++ {
			ks = append(ks, k)
		}
		if len(ks) == 0 {
			return nil, cli.Usagef("data has %d feature: nothing to sweep", p)
		}
		return ks, nil
	case strings.Contains(s, "-"):
		a, b, _ := strings.Cut(s, "-")
		lo, err1 := strconv.Atoi(a)
		hi, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || lo < 1 || hi < lo {
			return nil, cli.Usagef("--k %q: want a range like 1-9", s)
		}
		for k := lo; k <= hi; k++ {
			ks = append(ks, k)
		}
	default:
		for _, f := range strings.Split(s, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || k < 1 || (len(ks) > 0 && k <= ks[len(ks)-1]) {
				return nil, cli.Usagef("--k %q: want increasing positive widths like 2,4,8", s)
			}
			ks = append(ks, k)
		}
	}
	return ks, nil
}

func runWorker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trainer run", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: trainer run --coordinator host:port (--source synth | --source csv --input shard.csv) [flags]

A training worker: joins the coordinator, sends feature statistics of its first records
for the normalizer, then for every round the gradient of a batch of its records at the
round's parameters, with a sketch of held-out scores. Reconnects with backoff when the
coordinator goes away. A CSV shard is read in a loop.`)
	addr := fs.String("coordinator", cli.DefaultCoordinator, "coordinator gRPC `address`")
	id := fs.String("id", "", "worker `id`: must be unique per process (a second live process with the same id is refused, exit 2) and, if set, stable across restarts (default: trainer@hostname/pid)")
	source := fs.String("source", "synth", "where records come from: synth (generated), csv (--input) or kafka (--brokers, --topic)")
	features := fs.String("features", "", "kafka: the feature `names` in model order, comma-separated (or the width for json-array and csv)")
	wcfg, kcfg := trainer.DefaultConfig(), trainer.DefaultKafkaConfig()
	addWorkerFlags(fs, &wcfg, &kcfg)
	data := addDataFlags(fs)
	synthP := fs.Int("synth-features", 30, "synth: record width")
	synthRank := fs.Int("synth-rank", 3, "synth: rank of the subspace records lie near")
	synthNoise := fs.Float64("synth-noise", 0.4, "synth: noise standard deviation")
	synthAnom := fs.Float64("synth-anomalies", 0.01, "synth: fraction of injected anomalies")
	basisSeed := fs.Uint64("synth-basis-seed", 1, "synth: seed of the subspace (the same for every worker of a stream)")
	seed := fs.Uint64("seed", 0, "seed of this worker's records, held-out choice and noise (default: from the id)")
	metricsAddr := fs.String("metrics-listen", "127.0.0.1:7073", "`address` for Prometheus /metrics, /livez and /readyz (\"\" to disable)")
	client := cli.AddClientFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, creds, sec, err := client.Setup(fs)
	if err != nil {
		return err
	}
	if *id == "" {
		host, _ := os.Hostname()
		*id = fmt.Sprintf("trainer@%s/%d", host, os.Getpid()) // unique per process, as pkg/stream names its clients
	}
	if !(wcfg.Replay >= 0 && wcfg.Replay < 1) || wcfg.ReplaySize < 1 {
		return cli.Usagef("--replay %v, --replay-size %d: want a fraction in [0, 1) and at least 1 record", wcfg.Replay, wcfg.ReplaySize)
	}
	if *seed == 0 {
		for _, c := range *id {
			*seed = *seed*31 + uint64(c)
		}
	}
	var src trainer.Source
	var (
		schema     []string // feature names sent at join (nil: positional)
		formatName string
	)
	reg := cli.Registry()
	wm := trainer.NewMetrics(reg)
	switch *source {
	case "synth":
		if *synthP < 2 || *synthRank < 1 || *synthRank >= *synthP || *synthNoise < 0 || *synthAnom < 0 || *synthAnom >= 1 {
			return cli.Usagef("synth: want features >= 2, 1 <= rank < features, noise >= 0, anomalies in [0,1)")
		}
		src = trainer.NewSynth(*basisSeed, *seed, *synthP, *synthRank, *synthNoise, *synthAnom)
	case "csv":
		if *data.input == "-" {
			return cli.Usagef("--source csv needs --input: the shard to read in a loop")
		}
		t, err := data.read()
		if err != nil {
			return err
		}
		src = trainer.NewSlice(t.X, t.Width(), true)
	case "kafka":
		f := kcfg.Format
		names := strings.Split(*features, ",")
		if n, err := strconv.Atoi(*features); err == nil && n > 0 && !f.Named() {
			names = names[:0]
			for i := 0; i < n; i++ {
				names = append(names, "f"+strconv.Itoa(i))
			}
		}
		if *features == "" {
			return cli.Usagef("--source kafka needs --features: the feature names (or, for json-array and csv, the width)")
		}
		codec, err := stream.NewCodec(f, names)
		if err != nil {
			return cli.Usagef("%v", err)
		}
		rd, err := stream.NewReader(stream.ReaderConfig{Brokers: kcfg.Brokers, Topic: kcfg.Topic, Group: kcfg.Group, StartFirst: true, Logger: log, Security: sec})
		if err != nil {
			return err
		}
		defer rd.Close()
		rd.Monitor(stream.MonitorConfig{}) // a log that went back is read again from its start
		k := trainer.NewKafkaSource(ctx, rd, codec, log, wm)
		if _, err := strconv.Atoi(*features); err != nil {
			schema = names // named: the coordinator checks them against its model's
		}
		formatName = f.String()
		k.WatchStuck(kcfg.StuckAfter)
		src = k
	default:
		return cli.Usagef("--source %q: want synth, csv or kafka", *source)
	}
	conn, err := grpc.NewClient(*addr, cli.CoordinatorDialOptions(creds)...)
	if err != nil {
		return cli.Usagef("--coordinator %q: %v", *addr, err)
	}
	defer conn.Close()
	wcfg.ID, wcfg.Conn, wcfg.Source, wcfg.Log, wcfg.Seed, wcfg.Metrics = *id, conn, src, log, *seed, wm
	wcfg.Features, wcfg.Format = schema, formatName
	w, err := trainer.New(wcfg)
	if err != nil {
		return err
	}
	// /readyz: in a session the coordinator welcomed, and fetching.
	if _, err := cli.Serve(ctx, *metricsAddr, reg, log, w.Ready); err != nil {
		return err
	}
	log.Info("worker starting", "id", *id, "coordinator", *addr, "source", *source)
	err = w.Run(ctx)
	if errors.Is(err, trainer.ErrRefused) {
		err = cli.Permanent(err) // exit 2: restarting would be refused again
	}
	if k, ok := src.(*trainer.KafkaSource); ok {
		// Commit the offsets of every accepted gradient's records.
		if !k.Drain(3 * time.Second) {
			log.Warn("stopping with commits still queued; those records will be re-delivered")
		}
		c, sk := k.Stats()
		log.Info("kafka source", "committed", c, "undecodable", sk)
	}
	st := w.Stats()
	log.Info("worker stopped", "id", *id, "rounds", st.Rounds, "rejected", st.Rejected, "sessions", st.Sessions, "skipped", st.Skipped)
	return err
}

// addWorkerFlags registers the flags that set a training worker's config
// and its Kafka source's, each starting from the value cfg and kafka hold
// (trainer.DefaultConfig, trainer.DefaultKafkaConfig): every default is
// written once, in the component.
func addWorkerFlags(fs *flag.FlagSet, cfg *trainer.Config, kafka *trainer.KafkaConfig) {
	fs.Var((*cli.Strings)(&kafka.Brokers), "brokers", "kafka: bootstrap `addresses`, comma-separated")
	fs.StringVar(&kafka.Topic, "topic", kafka.Topic, "kafka: `topic` to train on")
	fs.StringVar(&kafka.Group, "group", kafka.Group, "kafka: consumer `group` (offsets are committed after the coordinator accepts the gradient that used them)")
	fs.TextVar(&kafka.Format, "format", kafka.Format, "kafka: record `format`: json-object, json-array or csv")
	fs.DurationVar(&kafka.StuckAfter, "stuck-after", kafka.StuckAfter, "kafka: while rounds are being accepted, rejoin the group when a partition's committed offset has not moved for this `long` while records wait in it (negative: never)")
	fs.Float64Var(&cfg.Replay, "replay", cfg.Replay, "`fraction` of each round's batch drawn from recent training records rather than new ones (0: each record once); lets the model learn a stream from less of it")
	fs.IntVar(&cfg.ReplaySize, "replay-size", cfg.ReplaySize, "recent training `records` replay draws from")
	fs.DurationVar(&cfg.RoundDelay, "round-delay", cfg.RoundDelay, "delay every gradient by this long (to test slow workers)")
}
