package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/testkit"
)

// TestFullDisk runs the coordinator with its file size capped (prlimit
// --fsize: every write past the cap fails, as on a full disk) and --keep
// 0, so that its store soon cannot grow: training goes on, the failures
// are counted and shown by recon_coordinator_checkpoint_failing, one
// warning says so (not one per try), and SIGTERM ends it with exit 1 and a
// line saying the final checkpoint was not written. Restarted without the
// cap, it resumes from the last checkpoint that was written.
func TestFullDisk(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed to cap the file size: %v", err)
	}
	dir := t.TempDir()
	grpcAddr, metricsAddr := freePort(t), freePort(t)
	args := []string{"--listen", grpcAddr, "--metrics-listen", metricsAddr, "--store", "c.db", "--features", "10",
		"--deadline", "400ms", "--warmup-records", "200", "--batch", "64", "--keep", "0", "--checkpoint-interval", "50ms"}
	coord := start(t, dir, prlimit, "coordinator.log", append([]string{"--fsize=262144", "--", filepath.Join(binDir, "coordinator")}, args...)...)
	start(t, dir, "trainer", "w1.log", "run", "--coordinator", grpcAddr, "--id", "w1", "--source", "synth", "--synth-features", "10", "--metrics-listen", "")
	failures := func() float64 { return metric(metricsAddr, "recon_coordinator_checkpoint_write_failures_total") }
	round := func() float64 { return metric(metricsAddr, "recon_coordinator_round") }
	waitFor(t, 60*time.Second, "a failed checkpoint write", func() bool { return failures() > 0 })
	written := metric(metricsAddr, "recon_coordinator_checkpoint_version")
	r0 := round()
	// Training goes on, and the write is retried (1 s after the failure):
	// wait for both, or for the coordinator to stop.
	testkit.Within(30*time.Second, func() bool {
		return coord.cmd.ProcessState != nil || round() >= r0+20 && failures() >= 2
	})
	if coord.cmd.ProcessState != nil || round() < r0+20 {
		t.Fatalf("training stopped on a full disk (round %v -> %v):\n%s", r0, round(), coord.logText())
	}
	if f := metric(metricsAddr, "recon_coordinator_checkpoint_failing"); f != 1 {
		t.Errorf("recon_coordinator_checkpoint_failing = %v while writes fail", f)
	}
	if v := metric(metricsAddr, "recon_coordinator_checkpoint_version"); v != written {
		t.Errorf("version went from %v to %v while no write succeeded", written, v)
	}
	if n := strings.Count(coord.logText(), "cannot write a checkpoint"); n != 1 || failures() < 2 {
		t.Errorf("%d warnings for %v failed writes; want 1 warning and retries (1 s, then 2 s apart)", n, failures())
	}
	t.Logf("version %v written, then %v failed writes; round %v -> %v", written, failures(), r0, round())

	if err := coord.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = coord.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("SIGTERM with the disk full: %v, want exit status 1", err)
	}
	if !strings.Contains(coord.logText(), "the final checkpoint was not written") {
		t.Errorf("no line about the final checkpoint:\n%s", tailOf(coord.logText(), 2000))
	}

	again := start(t, dir, "coordinator", "coordinator-2.log", args...)
	waitFor(t, 20*time.Second, "the resumed coordinator", func() bool { return strings.Contains(again.logText(), "resumed from checkpoint") })
	if !strings.Contains(again.logText(), "version="+strconv.Itoa(int(written))) {
		t.Errorf("did not resume from version %v:\n%s", written, tailOf(again.logText(), 2000))
	}
	waitFor(t, 20*time.Second, "a new checkpoint without the cap", func() bool {
		return metric(metricsAddr, "recon_coordinator_checkpoint_version") > written
	})
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
