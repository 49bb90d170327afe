package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelpExplainsEveryFlag: --help exits 0 and describes every flag; a bad
// flag is one line and exit 2.
func TestHelpExplainsEveryFlag(t *testing.T) {
	for _, tc := range []struct {
		bin   string
		args  []string
		flags []string
	}{
		{"coordinator", nil, []string{"listen", "metrics-listen", "store", "keep", "features", "spec-file", "variant", "hidden", "code",
			"activation", "lr", "seed", "batch", "holdout", "skip-anomalies", "alert-rate", "calibration-window", "first-threshold-records", "settle", "warmup-records", "min-workers", "deadline",
			"lease", "checkpoint-rounds", "checkpoint-interval", "max-rounds", "log-level"}},
		{"coordinator", []string{"checkpoints"}, []string{"coordinator", "timeout", "json", "tls-ca", "tls-cert", "tls-key", "tls-server-name"}},
		{"coordinator", []string{"checkpoints", "show"}, []string{"coordinator", "timeout", "json", "tls-ca"}},
		{"coordinator", []string{"rollback"}, []string{"coordinator", "version", "timeout", "tls-ca", "tls-cert", "tls-key", "tls-server-name"}},
		{"coordinator", []string{"status"}, []string{"coordinator", "timeout", "json", "tls-ca", "tls-cert", "tls-key", "tls-server-name"}},
		{"trainer", []string{"run"}, []string{"coordinator", "id", "source", "input", "synth-features", "synth-rank", "synth-noise",
			"synth-anomalies", "synth-basis-seed", "seed", "metrics-listen", "round-delay", "log-level", "brokers", "topic", "group", "format", "features"}},
		{"scorer", []string{"run"}, []string{"brokers", "topic", "group", "alerts-topic", "dlq-topic", "scores-topic", "format",
			"coordinator", "cache", "top", "max-batch", "max-wait", "metrics-listen", "log-level"}},
	} {
		cmd := exec.Command(filepath.Join(binDir, tc.bin), append(tc.args, "--help")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s --help: %v", tc.bin, err)
		}
		help := out.String()
		for _, f := range tc.flags {
			i := strings.Index(help, "  -"+f+" ")
			if i < 0 {
				i = strings.Index(help, "  -"+f+"\n")
			}
			if i < 0 {
				t.Errorf("%s --help does not list -%s", tc.bin, f)
			}
		}
		cmd = exec.Command(filepath.Join(binDir, tc.bin), append(tc.args, "--batch", "x", "--no-such-flag")...)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		ok := errors.As(err, &ee)
		if !ok || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(errOut.String()), "\n") != 0 {
			t.Errorf("%s with a bad flag: %v, stderr %q; want exit 2 and one line", tc.bin, err, errOut.String())
		}
	}
}

// TestUnreachableCoordinator: a worker whose coordinator is not there logs
// one line per attempt, backs off, and exits cleanly on SIGTERM.
func TestUnreachableCoordinator(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, "trainer", "lonely.log", "run", "--coordinator", freePort(t), "--id", "lonely", "--metrics-listen", "")
	retries := func() int { return strings.Count(p.logText(), "reconnecting") }
	waitFor(t, 15*time.Second, "two reconnect attempts", func() bool { return retries() >= 2 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	out := p.logText()
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(ln, "panic") || strings.HasPrefix(ln, "goroutine ") {
			t.Fatalf("stack trace: %s", out)
		}
		if !strings.Contains(ln, "reconnecting") && !strings.Contains(ln, "worker starting") && !strings.Contains(ln, "worker stopped") &&
			!strings.Contains(ln, "msg=configuration") {
			t.Errorf("unexpected line: %s", ln)
		}
	}
}
