// Command console is recon's operator console: a web page that watches the
// stream (records in, alerts, dead letters by reason, the scorer and trainer
// groups' lag, training rounds and loss, model version and threshold), shows
// each alert's features against the model's reconstruction, draws the score
// distribution with the threshold, and lists the model versions, with a
// rollback action when a token enables it.
//
// It reads what exists already: the coordinator's gRPC (Status,
// ListCheckpoints, Rollback) and the alerts, dead-letter and scores topics,
// every partition, without a consumer group. It keeps no state of its own
// and may run as many replicas as wanted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/console"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

func main() {
	cli.Exit("console", run(cli.Signals("console"), os.Args[1:], nil))
}

// run parses args and serves until ctx ends; bound, when not nil, receives
// the address the console listens on.
func run(ctx context.Context, args []string, bound chan<- string) error {
	fs := flag.NewFlagSet("console", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: console [flags]

Serves recon's operator console over HTTP: overview (rates, lag, training,
model version and threshold, trainers and scorers), the live alerts with each
alert's features against the model's reconstruction, the score distribution,
and the model versions. It reads the coordinator's gRPC and the alerts,
dead-letter and scores topics (every partition, no consumer group, nothing
committed). Rollback is off unless --rollback-token-file names a token, and
--read-only keeps it off. Every flag can also be set by an environment
variable: RECON_ and its name in capitals, dashes as underscores.`)
	listen := fs.String("listen", "127.0.0.1:7074", "HTTP `address` to serve the console on")
	prefix := fs.String("prefix", "", "serve under this URL `path` (for example /recon behind a reverse proxy that forwards it unchanged)")
	feedCfg := console.DefaultFeedConfig()
	addFeedFlags(fs, &feedCfg)
	format := stream.JSONArray // as the scorers' default
	fs.TextVar(&format, "format", format, "the records' `format`, as the scorers read them (json-object, json-array or csv): an opened alert's record is read again to show every feature")
	coord := fs.String("coordinator", cli.DefaultCoordinator, "coordinator gRPC `address` (\"\": no training, models or rollback)")
	tokenFile := fs.String("rollback-token-file", "", "`file` holding the token that enables the rollback action (sent as Authorization: Bearer TOKEN); unset: no rollback")
	readOnly := fs.Bool("read-only", false, "offer no action at all, even with --rollback-token-file")
	client := cli.AddClientFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *prefix != "" && (!strings.HasPrefix(*prefix, "/") || strings.HasSuffix(*prefix, "/")) {
		return cli.Usagef("--prefix %q: want /name, without a trailing slash", *prefix)
	}
	if feedCfg.Lookback <= 0 || feedCfg.ScoresLookback <= 0 {
		return cli.Usagef("--lookback and --scores-lookback must be positive")
	}
	var token string
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return cli.Usagef("--rollback-token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
		if len(token) < 16 {
			return cli.Usagef("--rollback-token-file %s: the token must be at least 16 characters (for example: head -c 24 /dev/urandom | base64)", *tokenFile)
		}
	}
	if *coord == "" && *tokenFile != "" && !*readOnly {
		return cli.Usagef("--rollback-token-file needs --coordinator: rollback is the coordinator's")
	}
	log, creds, sec, err := client.Setup(fs)
	if err != nil {
		return err
	}
	reg := cli.Registry()
	metrics := console.NewMetrics(reg)
	state := console.NewState(console.Limits{})
	feedCfg.Security, feedCfg.Log, feedCfg.Metrics = sec, log, metrics
	srvCfg := console.ServerConfig{Prefix: *prefix, Token: token, ReadOnly: *readOnly, Log: log, Registry: reg, Metrics: metrics}
	if *coord != "" {
		conn, err := grpc.NewClient(*coord, cli.CoordinatorDialOptions(creds)...)
		if err != nil {
			return cli.Usagef("--coordinator %q: %v", *coord, err)
		}
		defer conn.Close()
		cl := reconv1.NewCoordinatorClient(conn)
		feedCfg.Coordinator = cl
		srvCfg.Explainer = &console.Explainer{Brokers: feedCfg.Brokers, Security: sec, Format: format, Coordinator: cl}
		if token != "" {
			srvCfg.Rollback = console.GRPCRollback{Client: cl}
		}
	}
	feed, err := console.NewFeed(feedCfg, state)
	if err != nil {
		return err
	}
	srvCfg.Ready = feed.Ready
	srv, err := console.NewServer(state, srvCfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("console listener: %w", err)
	}
	// Requests live in ctx: the event streams end when the console stops.
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(lis) }()
	url := fmt.Sprintf("http://%s%s/", lis.Addr(), *prefix)
	rollback := "off (read-only)"
	if srvCfg.Rollback != nil && !*readOnly {
		rollback = "on, with the token"
	}
	log.Info("console serving", "url", url, "rollback", rollback, "brokers", strings.Join(feedCfg.Brokers, ","), "coordinator", *coord)
	if bound != nil {
		bound <- lis.Addr().String()
	}
	ferr := make(chan error, 1)
	go func() { ferr <- feed.Run(ctx, srv.Broadcast) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("console server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("console server shutdown", "err", err)
	}
	if err := <-ferr; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("console stopped")
	return nil
}

// addFeedFlags registers the flags that set the console's feed, each
// starting from the value cfg holds (console.DefaultFeedConfig): every
// default is written once, in the component.
func addFeedFlags(fs *flag.FlagSet, cfg *console.FeedConfig) {
	fs.Var((*cli.Strings)(&cfg.Brokers), "brokers", "Kafka bootstrap `addresses`, comma-separated")
	fs.StringVar(&cfg.RecordsTopic, "topic", cfg.RecordsTopic, "the scored records' `topic`: its end offsets give the rate in and the groups' lag")
	fs.StringVar(&cfg.AlertsTopic, "alerts-topic", cfg.AlertsTopic, "`topic` of the alerts")
	fs.StringVar(&cfg.DLQTopic, "dlq-topic", cfg.DLQTopic, "`topic` of the dead letters")
	fs.StringVar(&cfg.ScoresTopic, "scores-topic", cfg.ScoresTopic, "`topic` the scorers write every score to (their --scores-topic; \"\": none, and no score distribution, neighbours or scorer versions)")
	fs.StringVar(&cfg.ScorerGroup, "scorer-group", cfg.ScorerGroup, "the scorers' consumer `group`, whose lag is shown (\"\": none)")
	fs.StringVar(&cfg.TrainerGroup, "trainer-group", cfg.TrainerGroup, "the trainers' consumer `group`, whose lag is shown (\"\": none)")
	fs.DurationVar(&cfg.Lookback, "lookback", cfg.Lookback, "how far back the alerts and dead-letter topics are read at start")
	fs.DurationVar(&cfg.ScoresLookback, "scores-lookback", cfg.ScoresLookback, "how far back the scores topic is read at start")
}
