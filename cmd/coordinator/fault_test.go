package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/testkit"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

var binDir string

func TestMain(m *testing.M) { procs.RunWithBinaries(m, &binDir, ".", "../trainer", "../scorer") }

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc is a binary started by a test; ended by PID at cleanup.
type proc struct {
	cmd *exec.Cmd
	log string
}

// start runs binary name (from binDir unless an absolute path) in dir.
func start(t *testing.T, dir, name, logName string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, logName)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bin := name
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(binDir, name)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// metric scrapes one sample from a /metrics endpoint (labels included in
// name): -1 when the endpoint does not answer, 0 when the sample is absent.
func metric(addr, name string) float64 {
	v, ok := procs.Metric(addr, name)
	if !ok {
		if _, up := procs.Metric(addr, "go_goroutines"); !up {
			return -1
		}
	}
	return v
}

// waitFor waits until cond holds, failing the test if it does not within
// timeout, and returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !testkit.Within(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	return time.Since(start)
}

func listCheckpoints(t *testing.T, addr string) []*reconv1.CheckpointInfo {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := reconv1.NewCoordinatorClient(conn).ListCheckpoints(ctx, &reconv1.ListCheckpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetCheckpoints()
}

// TestFaults runs real binaries: a worker killed with SIGKILL costs at most a
// deadline and rejoins when restarted; the coordinator killed with SIGKILL
// and restarted resumes from its newest checkpoint with round and version
// only growing, the workers reconnecting on their own; a delayed worker's
// late gradients are discarded and counted.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level fault test")
	}
	dir := t.TempDir()
	grpcAddr, metricsAddr := freePort(t), freePort(t)
	const deadline = 400 * time.Millisecond
	coordArgs := []string{"--listen", grpcAddr, "--metrics-listen", metricsAddr, "--store", "c.db", "--features", "10",
		"--deadline", deadline.String(), "--lease", "1500ms", "--warmup-records", "200", "--batch", "64",
		"--checkpoint-rounds", "200", "--checkpoint-interval", "500ms"}
	coord := start(t, dir, "coordinator", "coordinator.log", coordArgs...)
	worker := func(id string, extra ...string) *proc {
		args := append([]string{"run", "--coordinator", grpcAddr, "--id", id, "--source", "synth", "--synth-features", "10", "--metrics-listen", ""}, extra...)
		return start(t, dir, "trainer", id+".log", args...)
	}
	round := func() float64 { return metric(metricsAddr, "recon_coordinator_round") }
	workers := func() float64 { return metric(metricsAddr, "recon_coordinator_workers") }
	w1, w2, w3 := worker("w1"), worker("w2"), worker("w3")
	waitFor(t, 20*time.Second, "round 50 with 3 workers", func() bool { return round() >= 50 && workers() == 3 })

	// (a) A worker killed mid-training: training goes on within a deadline.
	r0 := round()
	w3.kill()
	took := waitFor(t, 10*time.Second, "10 more rounds after killing w3", func() bool { return round() >= r0+10 })
	t.Logf("worker w3 killed at round %.0f: 10 more rounds in %v (deadline %v)", r0, took.Round(time.Millisecond), deadline)
	if took > deadline+time.Second {
		t.Errorf("training stalled %v after a worker died, more than one deadline (%v) plus 1 s", took, deadline)
	}
	waitFor(t, 5*time.Second, "2 workers", func() bool { return workers() == 2 })
	w3 = worker("w3")
	waitFor(t, 10*time.Second, "w3 back", func() bool { return workers() == 3 })
	r1 := round()
	waitFor(t, 10*time.Second, "rounds with w3 back", func() bool { return round() >= r1+20 })
	if n := strings.Count(coord.logText(), "worker joined\" worker=w3") + strings.Count(coord.logText(), "msg=\"worker joined\" worker=w3"); n < 2 {
		t.Errorf("w3 joined %d times, want 2 (first start and restart)", n)
	}

	// (b) The coordinator killed and restarted resumes from its newest checkpoint.
	waitFor(t, 10*time.Second, "a checkpoint", func() bool { return len(listCheckpoints(t, grpcAddr)) >= 2 })
	before := listCheckpoints(t, grpcAddr)
	coord.kill()
	coord = start(t, dir, "coordinator", "coordinator.log", coordArgs...)
	waitFor(t, 10*time.Second, "the restarted coordinator", func() bool { return metric(metricsAddr, "recon_coordinator_workers") >= 0 })
	var resumedVersion, resumedRound uint64
	for _, ln := range strings.Split(coord.logText(), "\n") {
		if strings.Contains(ln, "resumed from checkpoint") {
			for _, f := range strings.Fields(ln) {
				if v, ok := strings.CutPrefix(f, "version="); ok {
					resumedVersion, _ = strconv.ParseUint(v, 10, 64)
				}
				if v, ok := strings.CutPrefix(f, "round="); ok {
					resumedRound, _ = strconv.ParseUint(v, 10, 64)
				}
			}
		}
	}
	last := before[len(before)-1]
	if resumedVersion < last.GetVersion() || resumedRound < last.GetRound() {
		t.Fatalf("resumed from version %d round %d; the store had version %d round %d before the kill",
			resumedVersion, resumedRound, last.GetVersion(), last.GetRound())
	}
	took = waitFor(t, 20*time.Second, "workers reconnecting and training past the resumed round",
		func() bool { return workers() == 3 && round() >= float64(resumedRound)+20 })
	t.Logf("coordinator killed; restarted from version %d round %d; 3 workers back and 20 rounds on in %v",
		resumedVersion, resumedRound, took.Round(time.Millisecond))
	waitFor(t, 10*time.Second, "a new checkpoint", func() bool {
		l := listCheckpoints(t, grpcAddr)
		return l[len(l)-1].GetVersion() > resumedVersion
	})
	after := listCheckpoints(t, grpcAddr)
	for i := 1; i < len(after); i++ {
		if after[i].GetVersion() <= after[i-1].GetVersion() || after[i].GetRound() < after[i-1].GetRound() {
			t.Errorf("checkpoint %d (round %d) follows %d (round %d): versions and rounds must grow",
				after[i].GetVersion(), after[i].GetRound(), after[i-1].GetVersion(), after[i-1].GetRound())
		}
	}

	// (c) A delayed worker misses rounds; its late gradients are discarded and counted.
	slow := worker("slow", "--round-delay", "700ms")
	waitFor(t, 15*time.Second, "late gradients rejected", func() bool {
		return metric(metricsAddr, `recon_coordinator_gradients_rejected_total{reason="wrong_round"}`) >= 2
	})
	r2 := round()
	waitFor(t, 10*time.Second, "training going on beside the slow worker", func() bool { return round() >= r2+3 })
	if !strings.Contains(slow.logText(), "gradient rejected") {
		t.Errorf("the slow worker was not told its gradients were rejected")
	}
	for _, p := range []*proc{coord, w1, w2, w3, slow} {
		if strings.Contains(p.logText(), "panic") {
			t.Errorf("%s: panic in log", p.log)
		}
	}
	// SIGTERM: the coordinator writes a final checkpoint and exits 0.
	l := listCheckpoints(t, grpcAddr)
	lastVersion := l[len(l)-1].GetVersion()
	rTerm := round()
	if err := coord.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := coord.cmd.Wait(); err != nil {
		t.Errorf("coordinator exit after SIGTERM: %v", err)
	}
	s, err := checkpoint.Open(filepath.Join(dir, "c.db"), checkpoint.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	final, err := s.Latest()
	if err != nil {
		t.Fatal(err)
	}
	if final.GetVersion() <= lastVersion || float64(final.GetRound()) < rTerm {
		t.Errorf("after SIGTERM the newest checkpoint is version %d round %d; before it, version %d round %.0f",
			final.GetVersion(), final.GetRound(), lastVersion, rTerm)
	}
}
