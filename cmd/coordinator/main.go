// Command coordinator owns one recon model and trains it with trainer
// workers over gRPC: synchronous rounds of averaged gradients, Adam, a
// warm-up that fixes the normalizer, a threshold from merged held-out score
// sketches, and versioned checkpoints in bbolt streamed to scorers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/fit"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "checkpoints" || os.Args[1] == "rollback" || os.Args[1] == "status") {
		name := os.Args[1]
		cli.Exit("coordinator "+name, admin(cli.Signals("coordinator"), name, os.Args[2:], os.Stdout))
	}
	cli.Exit("coordinator", run(cli.Signals("coordinator"), os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: coordinator --features N|names [flags]
       coordinator checkpoints [list | show N | rollback N] [flags]   (operate a running coordinator; -h for more)
       coordinator rollback --version N [flags]                        (the same as checkpoints rollback N)
       coordinator status [--json] [flags]                             (a running coordinator's round, loss, state and workers)

Owns one autoencoder and trains it with trainer workers ('trainer run') over gRPC.
Rounds are synchronous: a round completes when every member has sent its gradient,
or at the deadline with at least --min-workers; the sample-weighted average is
applied with Adam. Checkpoints go to the --store bbolt file when the model has
changed materially, looked for every --checkpoint-interval, and on SIGTERM; on
start the coordinator resumes from the newest valid one. Every flag can also be set by
RECON_<NAME> (dashes as underscores). The gRPC server offers server reflection, so
grpcurl and the like need no proto files (grpcurl -plaintext 127.0.0.1:7070 list).`)
	listen := fs.String("listen", cli.DefaultCoordinator, "gRPC `address` to serve workers and scorers on")
	metricsAddr := fs.String("metrics-listen", "127.0.0.1:7071", "`address` for Prometheus /metrics (\"\" to disable)")
	storePath := fs.String("store", "coordinator.db", "checkpoint store `file` (bbolt); the coordinator is its only writer")
	features := fs.String("features", "", "record width as a number, or the feature `names` comma-separated (required unless --spec-file)")
	specFile := fs.String("spec-file", "", "JSON `file` holding a recon.v1.ModelSpec (instead of the model flags)")
	model := cli.AddModelFlagsWith(fs, coordinator.DefaultSpec)
	cfg, ret := coordinator.DefaultConfig(), checkpoint.DefaultRetention()
	addConfigFlags(fs, &cfg, &ret)
	logFlags := cli.AddLogFlags(fs)
	tlsFlags := cli.AddServerTLSFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := logFlags.Logger(fs)
	if err != nil {
		return err
	}
	if *specFile != "" {
		b, err := os.ReadFile(*specFile)
		if err != nil {
			return err
		}
		var ps reconv1.ModelSpec
		if err := protojson.Unmarshal(b, &ps); err != nil {
			return fmt.Errorf("%s: %w", *specFile, err)
		}
		if cfg.Spec, err = checkpoint.SpecFromProto(&ps); err != nil {
			return fmt.Errorf("%s: %w", *specFile, err)
		}
		cfg.Features = ps.GetFeatures()
	} else {
		p, names, err := parseFeatures(*features)
		if err != nil {
			return err
		}
		spec, auto, err := model.Spec()
		if err != nil {
			return err
		}
		spec.Input = p
		cfg.AutoCode = spec.Code == 0 // chosen from the stream's spectrum at the end of warm-up
		if auto {
			spec = fit.AutoSpec(spec, p, nil)
		}
		cfg.Spec, cfg.Features = spec.Normalize(), names
	}
	if err := cfg.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	if ret.Min < 0 {
		return cli.Usagef("--keep %d: must not be negative", ret.Min)
	}
	for _, f := range []struct {
		name string
		age  time.Duration
	}{{"keep-all", ret.All}, {"keep-hourly", ret.Hourly}, {"keep-daily", ret.Daily}} {
		if f.age < 0 {
			return cli.Usagef("--%s %v: must not be negative", f.name, f.age)
		}
	}
	storeOpts := checkpoint.Options{Logger: log} // --keep 0: every checkpoint
	if ret.Min > 0 {
		storeOpts.Retention = &ret
	}

	store, err := checkpoint.Open(*storePath, storeOpts)
	if err != nil {
		return err
	}
	defer store.Close()
	reg := cli.Registry()
	srv, err := coordinator.New(cfg, store, log, coordinator.NewMetrics(reg))
	if errors.Is(err, coordinator.ErrSchema) {
		return cli.Permanent(err) // exit 2: the store's model takes other features
	}
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	maddr, err := cli.ServeMetrics(ctx, *metricsAddr, reg, log)
	if err != nil {
		return err
	}
	serverOpts, err := tlsFlags.Options()
	if err != nil {
		return err
	}
	gs := grpc.NewServer(append(serverOpts, coordinator.ServerOptions(cfg.Spec)...)...)
	reconv1.RegisterCoordinatorServer(gs, srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("recon.v1.Coordinator", healthpb.HealthCheckResponse_SERVING)
	reflection.Register(gs) // grpcurl and the like list and call the services without proto files
	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	s := cfg.Spec
	log.Info("coordinator serving", "grpc", lis.Addr().String(), "metrics", maddr, "store", *storePath,
		"model", fmt.Sprintf("%v %d-%v-%d", s.Variant, s.Input, s.Hidden, s.Code), "status", fmt.Sprintf("%+v", srv.Snapshot()))

	runErr := srv.Run(ctx) // returns after the final checkpoint on SIGTERM or at --max-rounds
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(3 * time.Second):
		gs.Stop()
	}
	st := srv.Snapshot()
	log.Info("coordinator stopped", "round", st.Round, "version", st.Version, "rejected", fmt.Sprint(st.Rejected))
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return runErr
}

// parseFeatures reads --features: a width, or names.
func parseFeatures(s string) (int, []string, error) {
	if s == "" {
		return 0, nil, cli.Usagef("--features is required: the record width, or the feature names comma-separated")
	}
	if p, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		if p < 1 {
			return 0, nil, cli.Usagef("--features %d: must be at least 1", p)
		}
		return p, nil, nil
	}
	names := strings.Split(s, ",")
	for i, n := range names {
		names[i] = strings.TrimSpace(n)
		if names[i] == "" {
			return 0, nil, cli.Usagef("--features %q: empty name", s)
		}
	}
	return len(names), names, nil
}

// addConfigFlags registers the flags that set the coordinator's config and
// the store's retention, each starting from the value cfg and ret hold
// (coordinator.DefaultConfig, checkpoint.DefaultRetention): every default
// is written once, in the component.
func addConfigFlags(fs *flag.FlagSet, cfg *coordinator.Config, ret *checkpoint.Retention) {
	fs.IntVar(&ret.Min, "keep", ret.Min, "also keep at least the newest `N` checkpoints, whatever their age (0: keep every checkpoint, ignoring the --keep-* ages)")
	fs.DurationVar(&ret.All, "keep-all", ret.All, "keep every checkpoint younger than this `age`, so that every alert's model version stays readable that long (0: none by this rule); at most one a --checkpoint-interval")
	fs.DurationVar(&ret.Hourly, "keep-hourly", ret.Hourly, "and the newest checkpoint of each UTC hour younger than this `age` (0: none)")
	fs.DurationVar(&ret.Daily, "keep-daily", ret.Daily, "and the newest checkpoint of each UTC day younger than this `age` (0: none); pinned ones are always kept")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "Adam learning `rate`")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "parameter initialization `seed`")
	fs.IntVar(&cfg.Batch, "batch", cfg.Batch, "records per worker per round")
	fs.Float64Var(&cfg.Holdout, "holdout", cfg.Holdout, "`fraction` of each worker's records held out to set the threshold")
	fs.BoolVar(&cfg.SkipAnomalies, "skip-anomalies", cfg.SkipAnomalies, "workers skip training records scored above the threshold")
	c := &cfg.Calib
	fs.Float64Var(&c.AlertRate, "alert-rate", c.AlertRate, "alert threshold: the `share` of held-out records scored above it (the 1 - share quantile of their whitened scores)")
	fs.IntVar(&c.Window, "calibration-window", c.Window, "the whitening and threshold are calibrated on this many of the newest held-out `records` (fewer for wide records: at most 2^21 values)")
	fs.Int64Var(&c.MaxRecords, "first-threshold-records", c.MaxRecords, "set the first threshold once this many stream `records` have been read, settled or not")
	p := &cfg.Pace
	fs.Float64Var(&p.Learn, "presentations-learn", p.Learn, "training budget until training plateaus: the most times, on average, a new record is trained on, replay included (0: no bound, train at the speed of computing)")
	fs.Float64Var(&p.Maintain, "presentations-maintain", p.Maintain, "training budget once training has plateaued after the first threshold, until drift, so that training costs what the stream brings (0: no bound)")
	fs.Uint64Var(&p.Patience, "plateau-rounds", p.Patience, "training has plateaued when neither the median nor the tail (90th percentile) of the held-out errors has fallen 2% in this many `rounds`")
	fs.Float64Var(&p.Drift, "drift", p.Drift, "a rise of the median or the tail held-out error by this `fraction` over its plateau (or features drifting out of the normalizer) counts as drift and resumes learning")
	fs.Float64Var(&c.Settle, "settle", c.Settle, "before --first-threshold-records, no threshold (no alerts) until the median held-out error falls by less than this `fraction` between checks 200 rounds apart (negative: at the first check)")
	fs.IntVar(&cfg.WarmupRecords, "warmup-records", cfg.WarmupRecords, "records each worker summarizes for the normalizer before training (0: no standardization)")
	fs.IntVar(&cfg.MinWorkers, "min-workers", cfg.MinWorkers, "gradients needed to complete a round at its deadline")
	fs.DurationVar(&cfg.Deadline, "deadline", cfg.Deadline, "round `deadline`")
	fs.DurationVar(&cfg.Lease, "lease", cfg.Lease, "a worker silent this long is dropped")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", cfg.CheckpointInterval, "look for a material change of the model this often while training, and write at most one checkpoint each `interval`")
	fs.Float64Var(&cfg.CheckpointChange, "checkpoint-change", cfg.CheckpointChange, "a checkpoint is written when the threshold or the median held-out error has moved by this `fraction` since the last one, or the training state changed (negative: every interval)")
	fs.DurationVar(&cfg.CheckpointMaxAge, "checkpoint-max-age", cfg.CheckpointMaxAge, "and at least this often while rounds complete, changed or not (a restart loses at most this much training)")
	fs.IntVar(&cfg.CheckpointRounds, "checkpoint-rounds", cfg.CheckpointRounds, "also checkpoint every this many rounds, changed or not (0: off; for tests and short runs)")
	fs.Uint64Var(&cfg.MaxRounds, "max-rounds", cfg.MaxRounds, "stop after this round (0: never)")
}
