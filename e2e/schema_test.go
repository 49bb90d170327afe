//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/procs"
)

// refused runs pr to its end (at most 60 s) and checks it exited with
// status 2 and said why in one line, starting with prefix (the command's
// name and a colon), holding every string of want.
func refused(t *testing.T, pr *procs.Proc, prefix string, want ...string) {
	t.Helper()
	if err := pr.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pr.Exited():
	case <-time.After(60 * time.Second):
		t.Fatalf("%s was not refused within 60 s:\n%s", pr.Name, tail(pr.LogText(), 2000))
	}
	var ee *exec.ExitError
	if err := pr.ExitErr(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("%s exited with %v, want exit status 2:\n%s", pr.Name, pr.ExitErr(), tail(pr.LogText(), 2000))
	}
	var lines []string
	for _, ln := range strings.Split(pr.LogText(), "\n") {
		if strings.HasPrefix(ln, prefix) {
			lines = append(lines, ln)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%s: %d final error lines, want 1:\n%s", pr.Name, len(lines), tail(pr.LogText(), 2000))
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("%s's line lacks %q: %s", pr.Name, w, lines[0])
		}
	}
	t.Logf("%s: %s", pr.Name, lines[0])
}

// startInOrder starts ps in order, waiting for the first (devkafka) to
// print its address. At cleanup it kills them, and any process the test
// appends to the returned list, and on failure logs the tail of each log.
func startInOrder(t *testing.T, ps ...*procs.Proc) *[]*procs.Proc {
	t.Helper()
	running := &ps
	t.Cleanup(func() {
		for _, pr := range *running {
			pr.Kill()
		}
		if t.Failed() {
			for _, pr := range *running {
				t.Logf("---- %s log (last 3000 bytes):\n%s", pr.Name, tail(pr.LogText(), 3000))
			}
		}
	})
	for i, pr := range ps {
		if err := pr.Start(); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			waitFor(t, 15*time.Second, pr.Name+" to print its address", func() bool { return strings.Contains(pr.LogText(), "bootstrap") })
		}
	}
	return running
}

// TestSchemaRefusals runs a named json-object stream with one good
// trainer, then starts a trainer whose --features name the same features
// in another order and one with the wrong --format: both exit 2 with one
// line (the first refused by the coordinator at join, naming both lists;
// the second by its own check of the records before it joins), and the
// rounds go on at the same speed. Then the coordinator is restarted on its
// store with the features reordered: it refuses to start, naming both.
func TestSchemaRefusals(t *testing.T) {
	const p = 8
	names := make([]string, p)
	for i := range names {
		names[i] = fmt.Sprintf("f%d", i)
	}
	reordered := append([]string{names[1], names[0]}, names[2:]...)
	dir := t.TempDir()
	kafkaAddr, grpcAddr, metrics := addr(t), addr(t), addr(t)
	store := filepath.Join(dir, "coordinator.db")
	devkafka := procs.New(binDir, dir, "devkafka", "devkafka", "--listen", kafkaAddr, "--data-dir", filepath.Join(dir, "kafka-data"))
	coordArgs := func(features []string) []string {
		return []string{"--features", strings.Join(features, ","), "--listen", grpcAddr, "--metrics-listen", metrics,
			"--store", store, "--checkpoint-interval", "1s", "--deadline", "1s", "--lease", "3s",
			// Training at full speed throughout: the test compares rounds/s
			// before and while the refused trainers run, and the budget's
			// move to maintenance would slow it on its own.
			"--presentations-maintain", "0"}
	}
	coord := procs.New(binDir, dir, "coordinator", "coordinator", coordArgs(names)...)
	trainer := func(name string, args ...string) *procs.Proc {
		return procs.New(binDir, dir, name, "trainer", append([]string{"run", "--source", "kafka", "--brokers", kafkaAddr,
			"--coordinator", grpcAddr, "--id", name, "--metrics-listen", ""}, args...)...)
	}
	good := trainer("trainer-good", "--format", "json-object", "--features", strings.Join(names, ","))
	load := procs.New(binDir, dir, "loadgen", "loadgen", "--brokers", kafkaAddr, "--format", "json-object", "--features", fmt.Sprint(p), "--rate", "3000")
	running := startInOrder(t, devkafka, coord, good, load)
	rounds := func() float64 { return scrape(metrics, "recon_coordinator_round") }
	waitFor(t, 90*time.Second, "rounds", func() bool { return rounds() > 50 })
	// Rounds/s over a span that ends once at least 1,000 more rounds are done
	// (and after span, when given, has returned): no fixed window.
	pace := func(span func()) float64 {
		r0, t0 := rounds(), time.Now()
		if span != nil {
			span()
		}
		waitFor(t, 90*time.Second, "1,000 more rounds", func() bool { return rounds() >= r0+1000 })
		return (rounds() - r0) / time.Since(t0).Seconds()
	}
	before := pace(nil)
	during := pace(func() {
		refused(t, trainer("trainer-reordered", "--format", "json-object", "--features", strings.Join(reordered, ",")), "trainer run: ",
			"refused by the coordinator", "[f1 f0 f2", "the same names in another order", "[f0 f1 f2")
		refused(t, trainer("trainer-csv", "--format", "csv", "--features", strings.Join(names, ",")), "trainer run: ",
			"none of the first", "csv", "--format")
	})
	t.Logf("rounds/s: %.1f before, %.1f while the two were refused", before, during)
	if during < before/2 {
		t.Errorf("training slowed from %.1f to %.1f rounds/s while the refused trainers ran", before, during)
	}
	// The csv trainer refuses its own records; only the reordered one
	// reaches the coordinator, once.
	if n := scrape(metrics, "recon_coordinator_joins_refused_total"); n != 1 {
		t.Errorf("coordinator refused %v joins, want 1 (the reordered trainer, once)", n)
	}

	// The coordinator restarted on its store with the features reordered.
	if _, err := coord.Stop(30 * time.Second); err != nil {
		t.Fatalf("coordinator stop: %v", err)
	}
	again := procs.New(binDir, dir, "coordinator-reordered", "coordinator", coordArgs(reordered)...)
	*running = append(*running, again)
	refused(t, again, "coordinator: ", "--features gives 8 features [f1 f0 f2", "the same names in another order", "[f0 f1 f2", "checkpoint")
}
