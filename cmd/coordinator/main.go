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

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/schedule"
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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: coordinator --features N|names [flags]\n"+
			"       coordinator checkpoints [list | show N | rollback N] [flags]   (operate a running coordinator; -h for more)\n"+
			"       coordinator rollback --version N [flags]                        (the same as checkpoints rollback N)\n"+
			"       coordinator status [--json] [flags]                             (a running coordinator's round, loss, state and workers)\n\n"+
			"Owns one autoencoder and trains it with trainer workers ('trainer run') over gRPC.\n"+
			"Rounds are synchronous: a round completes when every member has sent its gradient,\n"+
			"or at the deadline with at least --min-workers; the sample-weighted average is\n"+
			"applied with Adam. Checkpoints go to the --store bbolt file when the model has\n"+
			"changed materially, looked for every --checkpoint-interval, and on SIGTERM; on\n"+
			"start the coordinator resumes from the newest valid one. Every flag can also be set by\n"+
			"RECON_<NAME> (dashes as underscores). The gRPC server offers server reflection, so\n"+
			"grpcurl and the like need no proto files (grpcurl -plaintext 127.0.0.1:7070 list).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:7070", "gRPC `address` to serve workers and scorers on")
	metricsAddr := fs.String("metrics-listen", "127.0.0.1:7071", "`address` for Prometheus /metrics (\"\" to disable)")
	storePath := fs.String("store", "coordinator.db", "checkpoint store `file` (bbolt); the coordinator is its only writer")
	rd := checkpoint.DefaultRetention()
	keep := fs.Int("keep", 20, "also keep at least the newest `N` checkpoints, whatever their age (0: keep every checkpoint, ignoring the --keep-* ages)")
	keepAll := fs.Duration("keep-all", rd.All, "keep every checkpoint younger than this `age`, so that every alert's model version stays readable that long (0: none by this rule); at most one a --checkpoint-interval")
	keepHourly := fs.Duration("keep-hourly", rd.Hourly, "and the newest checkpoint of each UTC hour younger than this `age` (0: none)")
	keepDaily := fs.Duration("keep-daily", rd.Daily, "and the newest checkpoint of each UTC day younger than this `age` (0: none); pinned ones are always kept")
	features := fs.String("features", "", "record width as a number, or the feature `names` comma-separated (required unless --spec-file)")
	specFile := fs.String("spec-file", "", "JSON `file` holding a recon.v1.ModelSpec (instead of the model flags)")
	model := cli.AddModelFlagsWith(fs, coordinator.DefaultSpec)
	lr := fs.Float64("lr", 1e-3, "Adam learning `rate`")
	seed := fs.Uint64("seed", 1, "parameter initialization `seed`")
	batch := fs.Int("batch", 256, "records per worker per round")
	holdout := fs.Float64("holdout", 0.1, "`fraction` of each worker's records held out to set the threshold")
	skip := fs.Bool("skip-anomalies", true, "workers skip training records scored above the threshold")
	cd := calib.DefaultConfig()
	alertRate := fs.Float64("alert-rate", cd.AlertRate, "alert threshold: the `share` of held-out records scored above it (the 1 - share quantile of their whitened scores)")
	window := fs.Int("calibration-window", cd.Window, "the whitening and threshold are calibrated on this many of the newest held-out `records` (fewer for wide records: at most 2^21 values)")
	firstBy := fs.Int64("first-threshold-records", cd.MaxRecords, "set the first threshold once this many stream `records` have been read, settled or not")
	learnBudget := fs.Float64("presentations-learn", 0, "training budget until training plateaus: the most times, on average, a new record is trained on, replay included (0: no bound, train at the speed of computing)")
	maintainBudget := fs.Float64("presentations-maintain", pace.DefaultMaintain, "training budget once training has plateaued after the first threshold, until drift, so that training costs what the stream brings (0: no bound)")
	plateau := fs.Uint64("plateau-rounds", pace.DefaultPatience, "training has plateaued when neither the median nor the tail (90th percentile) of the held-out errors has fallen 2% in this many `rounds`")
	drift := fs.Float64("drift", pace.DefaultDrift, "a rise of the median or the tail held-out error by this `fraction` over its plateau (or features drifting out of the normalizer) counts as drift and resumes learning")
	settle := fs.Float64("settle", cd.Settle, "before --first-threshold-records, no threshold (no alerts) until the median held-out error falls by less than this `fraction` between checks 200 rounds apart (negative: at the first check)")
	warmup := fs.Int("warmup-records", 1000, "records each worker summarizes for the normalizer before training (0: no standardization)")
	minWorkers := fs.Int("min-workers", 1, "gradients needed to complete a round at its deadline")
	deadline := fs.Duration("deadline", 5*time.Second, "round `deadline`")
	lease := fs.Duration("lease", 15*time.Second, "a worker silent this long is dropped")
	ckInterval := fs.Duration("checkpoint-interval", schedule.DefaultInterval, "look for a material change of the model this often while training, and write at most one checkpoint each `interval`")
	ckChange := fs.Float64("checkpoint-change", schedule.DefaultChange, "a checkpoint is written when the threshold or the median held-out error has moved by this `fraction` since the last one, or the training state changed (negative: every interval)")
	ckMaxAge := fs.Duration("checkpoint-max-age", schedule.DefaultMaxAge, "and at least this often while rounds complete, changed or not (a restart loses at most this much training)")
	ckRounds := fs.Int("checkpoint-rounds", 0, "also checkpoint every this many rounds, changed or not (0: off; for tests and short runs)")
	maxRounds := fs.Uint64("max-rounds", 0, "stop after this round (0: never)")
	logFlags := cli.AddLogFlags(fs)
	tlsFlags := cli.AddServerTLSFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	log, err := logFlags.Logger(fs)
	if err != nil {
		return err
	}
	cfg := coordinator.Config{LR: *lr, Seed: *seed, Batch: *batch, Holdout: *holdout, SkipAnomalies: *skip,
		Calib: calib.Config{AlertRate: *alertRate, Window: *window, MaxRecords: *firstBy, Settle: *settle}, WarmupRecords: *warmup, MinWorkers: *minWorkers, Deadline: *deadline, Lease: *lease,
		CheckpointRounds: *ckRounds, CheckpointInterval: *ckInterval, CheckpointChange: *ckChange, CheckpointMaxAge: *ckMaxAge, MaxRounds: *maxRounds,
		Pace: pace.Config{Learn: *learnBudget, Maintain: *maintainBudget, Patience: *plateau, Drift: *drift}}
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
	if *keep < 0 {
		return cli.Usagef("--keep %d: must not be negative", *keep)
	}
	for _, f := range []struct {
		name string
		age  time.Duration
	}{{"keep-all", *keepAll}, {"keep-hourly", *keepHourly}, {"keep-daily", *keepDaily}} {
		if f.age < 0 {
			return cli.Usagef("--%s %v: must not be negative", f.name, f.age)
		}
	}
	storeOpts := checkpoint.Options{Logger: log} // --keep 0: every checkpoint
	if *keep > 0 {
		storeOpts.Retention = &checkpoint.Retention{All: *keepAll, Hourly: *keepHourly, Daily: *keepDaily, Min: *keep}
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
