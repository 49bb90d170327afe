package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// serveCoordinator runs the coordinator command itself (run, as main
// does) in this process on a free port with a fresh store, until the test
// ends, and returns its gRPC address once it answers health checks.
func serveCoordinator(t *testing.T, args ...string) string {
	t.Helper()
	addr := freePort(t)
	store := filepath.Join(t.TempDir(), "c.db")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", addr, "--store", store, "--log-level", "warn"}, args...))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("coordinator: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("coordinator still running 30 s after it was told to stop")
		}
	})
	health := healthpb.NewHealthClient(dial(t, addr))
	waitFor(t, 20*time.Second, "the coordinator serving", func() bool {
		select {
		case err := <-done:
			t.Fatalf("coordinator exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "recon.v1.Coordinator"})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	return addr
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// command runs an operator command as main does (admin) and returns what
// it printed.
func command(name string, args ...string) (string, error) {
	var out bytes.Buffer
	err := admin(context.Background(), name, args, &out)
	return out.String(), err
}

// TestCheckpointsRollbackSwapsScorer runs the coordinator command in this
// process with a trainer worker and a scorer replica watching it (on the
// in-process broker). Once training has stopped (the worker gone, so
// nothing else publishes), `checkpoints list` shows the versions,
// `checkpoints rollback N` reports a new version holding N's parameters,
// and the running scorer swaps to that version; `checkpoints show` and the
// list then describe it and N pinned.
func TestCheckpointsRollbackSwapsScorer(t *testing.T) {
	const p = 6
	features := "cpu,mem,disk_read,disk_write,net_in,net_out"
	log := testkit.Quiet()
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 1, "alerts": 1, "dlq": 1}); err != nil {
		t.Fatal(err)
	}
	metricsAddr := freePort(t)
	addr := serveCoordinator(t, "--features", features, "--metrics-listen", metricsAddr, "--warmup-records", "200", "--batch", "64",
		"--deadline", "400ms", "--checkpoint-rounds", "20", "--checkpoint-interval", "50ms", "--checkpoint-change", "-1")
	at := []string{"--coordinator", addr}
	conn := dial(t, addr)
	client := reconv1.NewCoordinatorClient(conn)

	// The scorer: a replica following the coordinator's checkpoints.
	cache, err := checkpoint.Open(filepath.Join(t.TempDir(), "s.db"), checkpoint.Options{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	rep, err := scorer.NewReplica(scorer.ReplicaConfig{Brokers: brokers, Topic: "events", AlertsTopic: "alerts", DLQTopic: "dlq",
		Format: stream.JSONArray, Coordinator: dial(t, addr), Cache: cache, Log: log, MaxWait: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	repCtx, stopRep := context.WithCancel(ctx)
	repDone := make(chan error, 1)
	go func() { repDone <- rep.Run(repCtx) }()
	defer func() {
		stopRep()
		if err := <-repDone; err != nil {
			t.Errorf("scorer: %v", err)
		}
	}()

	// Training until a few versions are stored, then no more: with the
	// worker's session over no round starts. The round open when it left
	// may still end (completed, or abandoned at its deadline) and be
	// checkpointed, with the same parameters, before or after the rollback.
	w, err := trainer.New(trainer.Config{ID: "w1", Conn: conn, Log: log, Source: trainer.NewSynth(1, 1, p, 2, 0.2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	wCtx, stopWorker := context.WithCancel(ctx)
	wDone := make(chan struct{})
	go func() {
		if err := w.Run(wCtx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(wDone)
	}()
	waitFor(t, 60*time.Second, "5 checkpoints", func() bool { return len(listCheckpoints(t, addr)) >= 5 })
	stopWorker()
	<-wDone
	var latest *reconv1.CheckpointInfo
	waitFor(t, 20*time.Second, "the worker gone and the scorer on the newest version", func() bool {
		l := listCheckpoints(t, addr)
		latest = l[len(l)-1]
		return metric(metricsAddr, "recon_coordinator_workers") == 0 && rep.Version() == latest.GetVersion()
	})

	// checkpoints list: every stored version, the newest last.
	list, err := command("checkpoints", append([]string{"list"}, at...)...)
	if err != nil {
		t.Fatalf("checkpoints list: %v", err)
	}
	var listed []uint64
	for _, m := range regexp.MustCompile(`(?m)^\s+(\d+)\s+\d{4}-\d\d-\d\dT\S+Z\s+\d+\s`).FindAllStringSubmatch(list, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		listed = append(listed, v)
	}
	if len(listed) < 5 || listed[len(listed)-1] != latest.GetVersion() {
		t.Fatalf("checkpoints list shows versions %v; want at least 5, the newest %d:\n%s", listed, latest.GetVersion(), list)
	}
	target := listed[len(listed)/2]
	get := func(v uint64) *reconv1.Checkpoint {
		t.Helper()
		c, err := client.GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{Version: v})
		if err != nil {
			t.Fatalf("get version %d: %v", v, err)
		}
		return c
	}
	old, newest := get(target), get(latest.GetVersion())
	if slices.Equal(old.GetParams(), newest.GetParams()) {
		t.Fatalf("versions %d and %d hold the same parameters: a rollback between them would show nothing", target, latest.GetVersion())
	}

	// checkpoints rollback N: a new version with N's parameters, which the
	// running scorer takes.
	out, err := command("checkpoints", append([]string{"rollback", strconv.FormatUint(target, 10)}, at...)...)
	m := regexp.MustCompile(`^rolled back to version (\d+): published as version (\d+); (\d+) is pinned\n$`).FindStringSubmatch(out)
	if err != nil || m == nil || m[1] != strconv.FormatUint(target, 10) {
		t.Fatalf("checkpoints rollback %d: %v\n%s", target, err, out)
	}
	published, _ := strconv.ParseUint(m[2], 10, 64)
	if published <= latest.GetVersion() {
		t.Fatalf("rollback reported version %d, not newer than %d", published, latest.GetVersion())
	}
	waitFor(t, 20*time.Second, "the scorer on the rollback's version", func() bool { return rep.Version() >= published })
	c := get(published)
	for _, v := range []uint64{published, rep.Version()} {
		if c := get(v); !slices.Equal(c.GetParams(), old.GetParams()) || c.GetThreshold() != old.GetThreshold() {
			t.Errorf("version %d (threshold %v) does not hold version %d's parameters and threshold (%v)", v, c.GetThreshold(), target, old.GetThreshold())
		}
	}
	if rep.Threshold() != old.GetThreshold() {
		t.Errorf("the scorer's threshold is %v, not version %d's %v", rep.Threshold(), target, old.GetThreshold())
	}
	if c.GetRound() < newest.GetRound() {
		t.Errorf("version %d is of round %d, before version %d's %d: rounds only grow", published, c.GetRound(), latest.GetVersion(), newest.GetRound())
	}

	// The list shows N pinned and the new version; show describes them.
	list, err = command("checkpoints", at...) // no verb: list
	if err != nil || !regexp.MustCompile(`(?m)^\s+`+m[1]+`\s.*\spinned`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^\s+`+m[2]+`\s`).MatchString(list) {
		t.Errorf("after the rollback, the list does not show %s pinned and %s (%v):\n%s", m[1], m[2], err, list)
	}
	out, err = command("checkpoints", append([]string{"show", m[1]}, at...)...)
	for _, want := range []string{"version      " + m[1] + "\n", "pinned       true\n", "features     " + features + "\n",
		"normalizer   width 6,", "spec         plain 6-", "lineage      " + c.GetLineage() + "\n"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("checkpoints show %s (%v): no %q in\n%s", m[1], err, want, out)
		}
	}
	out, err = command("checkpoints", append([]string{"show", m[2], "--json"}, at...)...)
	var d struct {
		Version   uint64
		Pinned    bool
		Round     uint64
		CreatedAt time.Time `json:"created_at"`
		Features  []string
		Spec      struct{ Input int }
		Params    int
	}
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.Version != published || d.Pinned || d.Round != c.GetRound() ||
		d.CreatedAt.IsZero() || strings.Join(d.Features, ",") != features || d.Spec.Input != p || d.Params != len(c.GetParams()) {
		t.Errorf("checkpoints show %s --json (%v): %+v from\n%s", m[2], err, d, out)
	}
	out, err = command("checkpoints", append([]string{"show", "latest"}, at...)...)
	if v, _ := strconv.ParseUint(strings.Fields(out + " 0 0")[1], 10, 64); err != nil || v < published {
		t.Errorf("checkpoints show latest (%v): not version %d or newer:\n%s", err, published, out)
	}
	var entries []listEntry
	out, err = command("checkpoints", append([]string{"list", "--json"}, at...)...)
	if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) < len(listed)+1 ||
		!slices.ContainsFunc(entries, func(e listEntry) bool { return e.Version == target && e.Pinned && e.CreatedAt != nil }) {
		t.Errorf("checkpoints list --json (%v): %+v from\n%s", err, entries, out)
	}
	for _, verb := range []string{"show", "rollback"} {
		_, err = command("checkpoints", append([]string{verb, "999999"}, at...)...)
		if !errors.Is(err, cli.ErrPermanent) || !strings.Contains(err.Error(), "version 999999 is not stored") {
			t.Errorf("checkpoints %s 999999: %v, want a permanent error: not stored", verb, err)
		}
	}
	t.Logf("rolled back to %d (of %d): published as %d; the scorer on %d", target, latest.GetVersion(), published, rep.Version())
}

// TestCheckpointsCommandErrors: a bad verb, version or argument is a
// one-line usage error (exit 2); a coordinator that does not answer within
// --timeout, or has no checkpoint to show yet, is a one-line error saying
// so (exit 1).
func TestCheckpointsCommandErrors(t *testing.T) {
	nobody := []string{"--coordinator", freePort(t), "--timeout", "300ms"}
	empty := []string{"--coordinator", serveCoordinator(t, "--features", "4", "--metrics-listen", "")}
	if out, err := command("checkpoints", append([]string{"list"}, empty...)...); err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("checkpoints list of a coordinator with none: %v, want the header only:\n%s", err, out)
	}
	for _, tc := range []struct {
		cmd   string
		args  []string
		usage bool
		want  string
	}{
		{"checkpoints", []string{"bogus"}, true, `unknown verb "bogus" (want list, show N or rollback N`},
		{"checkpoints", []string{"show"}, true, "show: which version?"},
		{"checkpoints", []string{"rollback"}, true, "rollback: which version?"},
		{"checkpoints", []string{"show", "x"}, true, `show "x": want a version number (1 or more) or latest`},
		{"checkpoints", []string{"rollback", "0"}, true, `rollback "0": want a version number (1 or more)`},
		{"checkpoints", []string{"rollback", "latest"}, true, `rollback "latest": want a version number`},
		{"checkpoints", []string{"show", "1", "2"}, true, `show: unexpected argument "2"`},
		{"checkpoints", []string{"list", "--no-such-flag"}, true, "flag provided but not defined: -no-such-flag"},
		{"checkpoints", []string{"--timeout", "x", "list"}, true, `invalid value "x" for flag -timeout`},
		{"rollback", nil, true, "--version is required"},
		{"rollback", []string{"3"}, true, `unexpected argument "3" (the version goes in --version)`},
		{"checkpoints", nobody, false, "did not answer within 300ms"},
		{"checkpoints", append([]string{"show", "3"}, nobody...), false, "did not answer within 300ms"},
		{"checkpoints", append([]string{"rollback", "3"}, nobody...), false, "did not answer within 300ms"},
		{"rollback", append([]string{"--version", "3"}, nobody...), false, "did not answer within 300ms"},
		{"status", nobody, false, "did not answer within 300ms"},
		{"status", []string{"now"}, true, `unexpected argument "now" (coordinator status takes flags only)`},
		{"status", []string{"--json=maybe"}, true, `invalid boolean value "maybe" for -json`},
		{"checkpoints", append([]string{"show", "latest"}, empty...), false, "show latest: the coordinator has no checkpoint yet"},
	} {
		out, err := command(tc.cmd, tc.args...)
		if err == nil || out != "" || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") ||
			errors.Is(err, cli.ErrUsage) != tc.usage || errors.Is(err, cli.ErrPermanent) {
			t.Errorf("coordinator %s %q: %v (usage %v), printed %q; want one line with %q (usage %v)",
				tc.cmd, tc.args, err, errors.Is(err, cli.ErrUsage), out, tc.want, tc.usage)
		}
	}
}

// TestParseInterspersed: flags stand anywhere among the verb and N, a
// value flag takes the next argument, and "--" ends the flags.
func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		addr string
		json bool
	}{
		{nil, nil, "127.0.0.1:7070", false},
		{[]string{"show", "3", "--json", "--coordinator", "c:1"}, []string{"show", "3"}, "c:1", true},
		{[]string{"--coordinator=c:2", "rollback", "-json", "4"}, []string{"rollback", "4"}, "c:2", true},
		{[]string{"-coordinator", "c:3", "list", "--json=false"}, []string{"list"}, "c:3", false},
		{[]string{"show", "--", "--json"}, []string{"show", "--json"}, "127.0.0.1:7070", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		addr, asJSON := fs.String("coordinator", "127.0.0.1:7070", ""), fs.Bool("json", false, "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *addr != tc.addr || *asJSON != tc.json {
			t.Errorf("%q: %q, --coordinator %s, --json %v, %v; want %q, %s, %v", tc.args, pos, *addr, *asJSON, err, tc.pos, tc.addr, tc.json)
		}
	}
}
