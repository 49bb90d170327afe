// Command scorer applies recon checkpoints to records. run is a scorer
// replica on Kafka: it scores every record of a topic with the latest
// checkpoint and writes alerts and dead letters. Offline, score reads a CSV
// file and writes one row per record: its score, the threshold, the anomaly
// flag and the features that contribute most.
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/table"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

const usage = `usage: scorer <command> [flags]

Commands:
  run     a scorer replica: consume a Kafka topic, write alerts and dead letters
  score   score the records of a CSV file with a checkpoint

Run 'scorer <command> -h' for a command's flags. Every flag can also be set
by an environment variable: RECON_ and its name in capitals, dashes as
underscores (--model: RECON_MODEL).
`

func main() {
	cli.Dispatch("scorer", usage,
		cli.Command{Name: "run", Run: runReplica},
		cli.Command{Name: "score", Run: func(ctx context.Context, args []string) error {
			return runScore(ctx, args, os.Stdin, os.Stdout)
		}})
}

func runScore(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("scorer score", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: scorer score --model model.db [flags] < data.csv > scores.csv

Scores every record of a CSV file with a checkpoint and writes CSV with one row per
record: row (1-based), line, score (squared reconstruction error of the standardized
record), threshold, anomaly (1 when score > threshold), the top contributing
features as name:error pairs, and the label column when --label names one.
Columns are matched to the model's features by header name; without a header the
file must hold exactly the model's features in order (plus --label).`)
	modelPath := fs.String("model", "", "checkpoint store `file` (bbolt) to read (required)")
	version := fs.Uint64("version", 0, "checkpoint `version` to use (0: the newest valid one)")
	input := fs.String("input", "-", "CSV `file` to score, - for standard input")
	output := fs.String("output", "-", "CSV `file` to write, - for standard output")
	header := fs.String("header", "auto", "whether the first input line names the columns: auto, yes, no")
	label := fs.String("label", "", "label `column` (name or index) to copy to the output, never scored")
	top := fs.Int("top", scorer.DefaultReplicaConfig().TopK, "contributing features to list per record (as alerts list)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *modelPath == "" {
		return cli.Usagef("--model is required: the checkpoint store to read")
	}
	if *top < 0 {
		return cli.Usagef("--top %d: must not be negative", *top)
	}
	h, err := table.ParseHeader(*header)
	if err != nil {
		return cli.Usagef("--header: %v", err)
	}
	// A corrupt newest checkpoint is skipped, with a warning on stderr.
	warn := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := checkpoint.Open(*modelPath, checkpoint.Options{ReadOnly: true, Logger: warn})
	if err != nil {
		return err
	}
	var c *reconv1.Checkpoint
	if *version == 0 {
		c, err = store.Latest()
	} else {
		c, err = store.Get(*version)
	}
	store.Close()
	if err != nil {
		return err
	}
	l, err := checkpoint.Load(c)
	if err != nil {
		return err
	}
	if _, _, err := ae.ChooseKernels(l.Model.Spec(), 256, ae.TaskScore); err != nil {
		return err
	}
	p := l.Model.Spec().Input

	in, name := stdin, "standard input"
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, *input
	}
	opts := table.Options{Header: h, Label: *label, ColumnsIfHeader: l.Features}
	t, err := table.Read(in, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if t.Width() != p {
		return fmt.Errorf("%s: %d feature columns, the model (version %d) expects %d%s", name, t.Width(), c.GetVersion(), p, featureHint(l.Features))
	}
	names := l.Features
	if names == nil {
		names = t.Names
	}
	x := t.X
	if l.Normalizer != nil {
		l.Normalizer.Transform(x, x)
	}
	scores := make([]float64, t.Rows)
	contrib := make([]float64, t.Rows*p)
	// The streaming scorer's own core, so that an alert's score and
	// features are reproduced here.
	l.Score(scores, contrib, make([]float64, len(x)), x)

	out, closeOut := stdout, func() error { return nil }
	if *output != "-" {
		f, err := os.Create(*output)
		if err != nil {
			return err
		}
		out, closeOut = f, f.Close
	}
	bw := bufio.NewWriter(out)
	w := csv.NewWriter(bw)
	fail := func(err error) error {
		_ = closeOut() // the write's error is the one to report
		return fmt.Errorf("write scores: %w", err)
	}
	hdr := []string{"row", "line", "score", "threshold", "anomaly", "top_features"}
	if *label != "" {
		hdr = append(hdr, "label")
	}
	if err := w.Write(hdr); err != nil {
		return fail(err)
	}
	th := c.GetThreshold()
	idx := make([]int, p)
	anomalies := 0
	for r := 0; r < t.Rows; r++ {
		row := contrib[r*p : (r+1)*p]
		idx = checkpoint.TopFeatures(idx, row, *top)
		var tops []string
		for _, i := range idx {
			tops = append(tops, names[i]+":"+strconv.FormatFloat(row[i], 'g', 6, 64))
		}
		flag := "0"
		if th > 0 && scores[r] > th {
			flag = "1"
			anomalies++
		}
		rec := []string{strconv.Itoa(r + 1), strconv.Itoa(t.Lines[r]), strconv.FormatFloat(scores[r], 'g', -1, 64),
			strconv.FormatFloat(th, 'g', -1, 64), flag, strings.Join(tops, " ")}
		if *label != "" {
			rec = append(rec, t.Labels[r])
		}
		if err := w.Write(rec); err != nil {
			return fail(err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := closeOut(); err != nil {
		return fmt.Errorf("write scores: %w", err)
	}
	how := "plain squared error"
	if l.Whitening != nil {
		how = "whitened residuals"
	}
	fmt.Fprintf(os.Stderr, "scorer score: %d records scored with version %d (%s, %s); %d above the threshold %.5g\n",
		t.Rows, c.GetVersion(), c.GetSpec().GetVariant(), how, anomalies, th)
	return nil
}

func featureHint(names []string) string {
	if names == nil {
		return ""
	}
	return " (" + strings.Join(names, ",") + ")"
}

func runReplica(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("scorer run", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: scorer run --brokers host:port [flags]

A scorer replica: a member of the --group consumer group on --topic. It follows the
coordinator's checkpoints (keeping the latest in --cache, so it starts without the
coordinator), scores every record, writes one JSON alert per record above the
threshold to --alerts-topic and undecodable records to --dlq-topic with reason
headers, optionally every score to --scores-topic, and commits offsets only after
that output is acknowledged. With no model at all it consumes nothing.`)
	cfg := scorer.DefaultReplicaConfig()
	addReplicaFlags(fs, &cfg)
	coord := fs.String("coordinator", cli.DefaultCoordinator, "coordinator gRPC `address` to follow checkpoints from (\"\": the cache only)")
	cache := fs.String("cache", "scorer.db", "this replica's checkpoint cache `file` (bbolt)")
	metricsAddr := fs.String("metrics-listen", "127.0.0.1:7072", "`address` for Prometheus /metrics (\"\" to disable)")
	client := cli.AddClientFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, creds, sec, err := client.Setup(fs)
	if err != nil {
		return err
	}
	if err := cfg.Sinks.Validate(); err != nil {
		return cli.Usagef("alert sinks: %v", err)
	}
	// The cache is only a fallback: a damaged one is set aside (with a
	// warning) and the model comes from the coordinator.
	store, err := checkpoint.Open(*cache, checkpoint.Options{Keep: 2, SetAsideDamaged: true, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()
	reg := cli.Registry()
	cfg.Cache, cfg.Log, cfg.Metrics, cfg.Security = store, log, scorer.NewMetrics(reg), sec
	if *coord != "" {
		conn, err := grpc.NewClient(*coord, cli.CoordinatorDialOptions(creds)...)
		if err != nil {
			return cli.Usagef("--coordinator %q: %v", *coord, err)
		}
		defer conn.Close()
		cfg.Coordinator = conn
	}
	rep, err := scorer.NewReplica(cfg)
	if err != nil {
		return err
	}
	// /readyz: a model, consuming, fetches and output writes working.
	if _, err := cli.Serve(ctx, *metricsAddr, reg, log, rep.Ready); err != nil {
		return err
	}
	log.Info("scorer starting", "brokers", strings.Join(cfg.Brokers, ","), "topic", cfg.Topic, "group", cfg.Group, "version", rep.Version())
	err = rep.Run(ctx)
	log.Info("scorer stopped", "processed", rep.Processed.Load(), "version", rep.Version())
	if errors.Is(err, scorer.ErrMissingTopic) {
		return cli.Permanent(err)
	}
	return err
}

// urlList is a repeatable flag of comma-separated URLs.
type urlList []string

func (l *urlList) String() string { return strings.Join(*l, ",") }

func (l *urlList) Set(v string) error {
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			*l = append(*l, u)
		}
	}
	return nil
}

// addReplicaFlags registers the flags that set a replica's config, each
// starting from the value cfg holds (scorer.DefaultReplicaConfig): every
// default is written once, in the component.
func addReplicaFlags(fs *flag.FlagSet, cfg *scorer.ReplicaConfig) {
	fs.Var((*cli.Strings)(&cfg.Brokers), "brokers", "Kafka bootstrap `addresses`, comma-separated")
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "`topic` of records to score")
	fs.StringVar(&cfg.Group, "group", cfg.Group, "consumer `group`")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "this replica's `name` in score records, as the console shows it (\"\": host name and process id)")
	fs.StringVar(&cfg.AlertsTopic, "alerts-topic", cfg.AlertsTopic, "`topic` for alerts")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", cfg.DLQTopic, "`topic` for records that cannot be scored")
	fs.StringVar(&cfg.ScoresTopic, "scores-topic", cfg.ScoresTopic, "`topic` for every score (\"\": none)")
	fs.TextVar(&cfg.Format, "format", cfg.Format, "record `format`: json-object, json-array or csv")
	fs.IntVar(&cfg.TopK, "top", cfg.TopK, "features listed per alert")
	fs.IntVar(&cfg.MaxBatch, "max-batch", cfg.MaxBatch, "most records per batch")
	fs.DurationVar(&cfg.MaxWait, "max-wait", cfg.MaxWait, "how long a batch waits to fill")
	fs.DurationVar(&cfg.StuckAfter, "stuck-after", cfg.StuckAfter, "rejoin the group when a partition's committed offset has not moved for this `long` while records wait in it (negative: never)")
	sk := &cfg.Sinks
	fs.Var((*urlList)(&sk.Alertmanager), "alertmanager-url", "also send alerts to this Alertmanager (`URL`, POST URL/api/v2/alerts); repeatable or comma-separated: the instances of one cluster, one acknowledging is enough")
	fs.Var((*urlList)(&sk.Webhooks), "webhook-url", "also POST alerts' JSON, as a batch array, to this `URL`; repeatable or comma-separated, each its own sink")
	fs.Float64Var(&sk.Rate, "sink-rate", sk.Rate, "most alerts a second (`rate`) sent to each alert sink, in requests of at most one second's worth (0: no limit)")
	fs.DurationVar(&sk.Timeout, "sink-timeout", sk.Timeout, "timeout of each request to an alert sink")
	fs.DurationVar(&sk.ResolveTimeout, "alertmanager-resolve-timeout", sk.ResolveTimeout, "an Alertmanager alert resolves this `long` after its record's time (its endsAt)")
}
