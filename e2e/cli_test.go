//go:build e2e

package e2e

import (
	"encoding/csv"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/pkg/synth"
)

// commands are every binary and subcommand with flags.
var commands = [][]string{
	{"coordinator"}, {"trainer", "run"}, {"trainer", "fit"}, {"trainer", "sweep-k"},
	{"scorer", "run"}, {"scorer", "score"}, {"devkafka"}, {"loadgen"}, {"demo"},
	{"benchscore"}, {"benchtrain"}, {"eval"},
}

// helpFlags parses flag.PrintDefaults output: each flag's name and usage.
func helpFlags(help string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(help, "\n")
	for i, ln := range lines {
		if !strings.HasPrefix(ln, "  -") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(ln, "  -"))
		name := f[0]
		usage := ""
		if j := strings.Index(ln, "\t"); j >= 0 { // a short name: usage on the same line
			usage = strings.TrimSpace(ln[j:])
		}
		for k := i + 1; k < len(lines) && strings.HasPrefix(lines[k], "    \t"); k++ {
			usage += " " + strings.TrimSpace(lines[k])
		}
		out[name] = strings.TrimSpace(usage)
	}
	return out
}

// TestEveryFlagHasHelp: -h of every command exits 0 and gives every flag
// a description; a bad flag is one line on stderr and exit status 2.
func TestEveryFlagHasHelp(t *testing.T) {
	for _, c := range commands {
		name := strings.Join(c, " ")
		cmd := exec.Command(filepath.Join(binDir, c[0]), append(c[1:], "-h")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s -h: %v\n%s", name, err, out)
			continue
		}
		flags := helpFlags(string(out))
		if len(flags) == 0 {
			t.Errorf("%s -h lists no flags:\n%s", name, out)
		}
		for f, usage := range flags {
			if len(usage) < 8 {
				t.Errorf("%s -%s: help text %q", name, f, usage)
			}
		}
		cmd = exec.Command(filepath.Join(binDir, c[0]), append(c[1:], "--no-such-flag")...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err = cmd.Run()
		var ee *exec.ExitError
		ok := errors.As(err, &ee)
		if !ok || ee.ExitCode() != 2 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("%s --no-such-flag: %v, stderr %q; want exit 2 and one line", name, err, stderr.String())
		}
	}
}

// TestUnreachableBroker: a scorer (with a cached model) and loadgen whose
// broker is not there keep retrying with backoff, log one warning per
// burst of attempts (not one per attempt), never crash, and stop cleanly
// on SIGTERM.
func TestUnreachableBroker(t *testing.T) {
	dir := t.TempDir()
	// A model to score with: trainer fit on synthetic rows.
	rng := rand.New(rand.NewPCG(1, 2))
	x := synth.LowRank(rng, 600, 8, 2, 0.2)
	f, err := os.Create(filepath.Join(dir, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	for r := 0; r < 600; r++ {
		row := make([]string, 8)
		for j := range row {
			row[j] = strconv.FormatFloat(x[r*8+j], 'g', -1, 64)
		}
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(filepath.Join(binDir, "trainer"), "fit", "--input", filepath.Join(dir, "train.csv"),
		"--out", filepath.Join(dir, "model.db"), "--epochs", "5", "--quiet").CombinedOutput(); err != nil {
		t.Fatalf("trainer fit: %v\n%s", err, out)
	}
	dead := addr(t)
	sc := procs.New(binDir, dir, "scorer", "scorer", "run", "--brokers", dead, "--coordinator", "", "--cache", filepath.Join(dir, "model.db"),
		"--metrics-listen", "")
	lg := procs.New(binDir, dir, "loadgen", "loadgen", "--brokers", dead, "--rate", "100")
	for _, p := range []*procs.Proc{sc, lg} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Kill)
	}
	time.Sleep(8 * time.Second) // simulates 8 s of a broker that is not there: both must still be running after it
	for _, p := range []*procs.Proc{sc, lg} {
		if !p.Running() {
			t.Fatalf("%s exited with the broker down:\n%s", p.Name, p.LogText())
		}
		d, err := p.Stop(5 * time.Second)
		if err != nil {
			t.Errorf("%s on SIGTERM: %v after %v", p.Name, err, d)
		}
		log := p.LogText()
		warns := strings.Count(log, " kind=unreachable ")
		t.Logf("%s: %d outage warnings in 8 s; stopped in %v", p.Name, warns, d.Round(time.Millisecond))
		if warns < 1 || warns > 3 {
			t.Errorf("%s: %d outage warnings in 8 s, want 1 to 3 (one per burst, at 0 s and 5 s):\n%s", p.Name, warns, log)
		}
		if strings.Contains(log, "panic") || strings.Contains(log, "goroutine ") {
			t.Errorf("%s crashed:\n%s", p.Name, log)
		}
		for _, ln := range strings.Split(strings.TrimSpace(log), "\n") {
			if strings.Contains(ln, "level=WARN") && !strings.Contains(ln, dead) {
				t.Errorf("%s: a warning that does not name the broker: %s", p.Name, ln)
			}
		}
	}
}
