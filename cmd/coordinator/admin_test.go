package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRollbackCommand: `coordinator checkpoints` lists a running
// coordinator's versions; `coordinator rollback --version N` publishes N's
// model as a new version and pins N, which the list then shows and
// retention never prunes (--keep 5 here); a version not stored is one line
// and exit 2.
func TestRollbackCommand(t *testing.T) {
	dir := t.TempDir()
	grpcAddr, metricsAddr := freePort(t), freePort(t)
	start(t, dir, "coordinator", "coordinator.log", "--listen", grpcAddr, "--metrics-listen", metricsAddr, "--store", "c.db", "--features", "10",
		"--deadline", "400ms", "--warmup-records", "200", "--batch", "64", "--keep", "5", "--keep-all", "0", "--keep-hourly", "0", "--keep-daily", "0",
		"--checkpoint-rounds", "200", "--checkpoint-interval", "50ms")
	start(t, dir, "trainer", "w1.log", "run", "--coordinator", grpcAddr, "--id", "w1", "--source", "synth", "--synth-features", "10", "--metrics-listen", "")
	version := func() float64 { return metric(metricsAddr, "recon_coordinator_checkpoint_version") }
	waitFor(t, 60*time.Second, "checkpoint 3", func() bool { return version() >= 3 })
	admin := func(args ...string) (string, error) {
		out, err := exec.Command(filepath.Join(binDir, "coordinator"), append(args, "--coordinator", grpcAddr)...).CombinedOutput()
		return string(out), err
	}
	list, err := admin("checkpoints")
	if err != nil || !strings.Contains(list, "version") {
		t.Fatalf("checkpoints: %v\n%s", err, list)
	}
	// The newest version listed: with --keep 5 it would go five
	// checkpoints later.
	ms := regexp.MustCompile(`(?m)^\s+(\d+)\s+\d+`).FindAllStringSubmatch(list, -1)
	if ms == nil {
		t.Fatalf("no version in the list:\n%s", list)
	}
	target := ms[len(ms)-1][1]
	out, err := admin("rollback", "--version", target)
	if err != nil || !strings.Contains(out, "rolled back to version "+target) {
		t.Fatalf("rollback --version %s: %v\n%s", target, err, out)
	}
	v0 := version()
	waitFor(t, 30*time.Second, "8 more checkpoints", func() bool { return version() >= v0+8 })
	list, err = admin("checkpoints")
	if err != nil || !regexp.MustCompile(`(?m)^\s+`+target+`\s+.*pinned`).MatchString(list) {
		t.Fatalf("after the rollback and 8 more checkpoints, version %s is not listed pinned (%v):\n%s", target, err, list)
	}
	out, err = admin("rollback", "--version", "999999")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "not stored") {
		t.Errorf("rollback to a missing version: %v, want one line and exit 2:\n%s", err, out)
	}
	t.Logf("rolled back to %s; list now:\n%s", target, list)
}
