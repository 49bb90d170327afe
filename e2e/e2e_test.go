//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
)

var binDir string

func TestMain(m *testing.M) { procs.RunWithBinaries(m, &binDir, "../cmd/...", "../tools/...") }

func addr(t *testing.T) string {
	t.Helper()
	a, err := procs.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// scrape reads one sample (labels included in the name) from /metrics; -1
// when the endpoint is down or the sample absent.
func scrape(addr, name string) float64 {
	if v, ok := procs.Metric(addr, name); ok {
		return v
	}
	return -1
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !testkit.Within(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// pipeline is the whole recon pipeline as processes.
type pipeline struct {
	t                      *testing.T
	dir, kafka, coordGRPC  string
	coordMetrics           string
	trainerMetrics         []string
	scorerMetrics          []string
	devkafka, coord, load  *procs.Proc
	trainers, scorers, all []*procs.Proc
}

func startPipeline(t *testing.T, rate, count int) *pipeline {
	return startPipelineWith(t, rate, count)
}

// startPipelineWith is startPipeline with extra arguments for each scorer.
func startPipelineWith(t *testing.T, rate, count int, scorerArgs ...string) *pipeline {
	return startPipelineArgs(t, rate, count, scorerArgs, nil)
}

// startPipelineArgs is startPipeline with extra arguments for each scorer
// and for loadgen.
func startPipelineArgs(t *testing.T, rate, count int, scorerArgs, loadArgs []string) *pipeline {
	dir := t.TempDir()
	p := &pipeline{t: t, dir: dir, kafka: addr(t), coordGRPC: addr(t), coordMetrics: addr(t)}
	p.devkafka = procs.New(binDir, dir, "devkafka", "devkafka", "--listen", p.kafka, "--data-dir", filepath.Join(dir, "kafka-data"))
	p.coord = procs.New(binDir, dir, "coordinator", "coordinator", "--features", "30", "--listen", p.coordGRPC, "--metrics-listen", p.coordMetrics,
		"--store", filepath.Join(dir, "coordinator.db"), "--checkpoint-interval", "1s", "--lease", "3s", "--deadline", "1s",
		"--output", "linear", // unbounded Gaussian records with one-feature spikes; see tools/demo
		"--log-level", "debug") // each checkpoint written, which the version check reads
	for i := 1; i <= 2; i++ {
		m := addr(t)
		p.trainerMetrics = append(p.trainerMetrics, m)
		p.trainers = append(p.trainers, procs.New(binDir, dir, fmt.Sprintf("trainer-%d", i), "trainer", "run", "--source", "kafka",
			"--brokers", p.kafka, "--features", "30", "--coordinator", p.coordGRPC, "--id", fmt.Sprintf("trainer-%d", i), "--metrics-listen", m))
	}
	for i := 1; i <= 2; i++ {
		m := addr(t)
		p.scorerMetrics = append(p.scorerMetrics, m)
		args := append([]string{"run", "--brokers", p.kafka,
			"--coordinator", p.coordGRPC, "--cache", filepath.Join(dir, fmt.Sprintf("scorer-%d.db", i)), "--scores-topic", "recon-scores", "--metrics-listen", m,
			"--log-level", "debug"}, scorerArgs...) // debug: kafka-go's account of the group, should a partition stall
		p.scorers = append(p.scorers, procs.New(binDir, dir, fmt.Sprintf("scorer-%d", i), "scorer", args...))
	}
	p.load = procs.New(binDir, dir, "loadgen", "loadgen", append([]string{"--brokers", p.kafka, "--rate", strconv.Itoa(rate), "--count", strconv.Itoa(count)}, loadArgs...)...)
	p.all = append([]*procs.Proc{p.devkafka, p.coord}, append(p.trainers, p.scorers...)...)
	t.Cleanup(func() {
		for _, pr := range append(p.all, p.load) {
			pr.Kill()
		}
		if keep := os.Getenv("RECON_E2E_KEEP"); keep != "" {
			if err := os.MkdirAll(keep, 0o755); err != nil {
				t.Errorf("RECON_E2E_KEEP: %v", err)
			}
			for _, pr := range append(p.all, p.load) {
				if err := os.WriteFile(filepath.Join(keep, pr.Name+".log"), []byte(pr.LogText()), 0o644); err != nil {
					t.Errorf("RECON_E2E_KEEP: %v", err)
				}
			}
		}
		if t.Failed() {
			for _, pr := range append(p.all, p.load) {
				t.Logf("---- %s log (last 4000 bytes):\n%s", pr.Name, tail(pr.LogText(), 4000))
			}
		}
	})
	for _, pr := range append(p.all, p.load) {
		if err := pr.Start(); err != nil {
			t.Fatal(err)
		}
		if pr == p.devkafka {
			waitFor(t, 15*time.Second, "devkafka to print its address", func() bool { return strings.Contains(pr.LogText(), "bootstrap") })
		}
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// restart kills (or, for devkafka, stops with SIGTERM) a process, waits a
// moment and starts it again.
func (p *pipeline) restart(pr *procs.Proc, graceful bool, down time.Duration) {
	p.t.Helper()
	if graceful {
		if d, err := pr.Stop(5 * time.Second); err != nil {
			p.t.Errorf("%s did not stop cleanly on SIGTERM: %v after %v", pr.Name, err, d)
		}
	} else {
		pr.Kill()
	}
	time.Sleep(down) // simulates the process staying down this long
	if err := pr.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("%s: %s, restarted after %v", pr.Name, map[bool]string{true: "SIGTERM", false: "kill -9"}[graceful], down)
}

// readAll consumes topic from the start in a fresh group until f says stop
// or ctx ends.
func readAll(ctx context.Context, brokers []string, topic string, f func(stream.Record) bool) error {
	r, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: topic, Group: "e2e-check-" + topic + strconv.FormatInt(time.Now().UnixNano(), 36),
		StartFirst: true, MaxWait: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		b, err := r.Batch(ctx)
		if err != nil {
			return err
		}
		for _, m := range b {
			if !f(m) {
				return nil
			}
		}
	}
}

func header(m stream.Record, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

var versionRE = regexp.MustCompile(`version=(\d+)`)

// versions returns the version= values of log lines containing msg.
func versions(log, msg string) []uint64 {
	var out []uint64
	for _, ln := range strings.Split(log, "\n") {
		if !strings.Contains(ln, msg) {
			continue
		}
		if m := versionRE.FindStringSubmatch(ln); m != nil {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			out = append(out, v)
		}
	}
	return out
}

// accounting is what became of loadgen's records.
type accounting struct {
	missing, ready, anomalies, missed, falseAlarms, ids int
	dead                                                map[string]string // key -> dead-letter reason
}

// account reads the events, scores, dead-letter and alerts topics until
// each of loadgen's count records is scored or dead-lettered (or 90 s
// pass), checks that each record's alerts share one id, and counts.
func (p *pipeline) account(count int) accounting {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	brokers := []string{p.kafka}
	t := p.t
	truth := map[string]string{}
	if err := readAll(ctx, brokers, "recon-events", func(m stream.Record) bool {
		truth[string(m.Key)] = header(m, "recon-truth")
		return len(truth) < count
	}); err != nil {
		t.Errorf("reading the events topic: %v", err)
	}
	if len(truth) != count {
		t.Fatalf("the events topic holds %d distinct records, loadgen produced %d", len(truth), count)
	}
	var mu sync.Mutex
	scored := map[string]scorer.ScoreRecord{}
	dead := map[string]string{}
	alerts := map[string]map[string]bool{} // record key -> alert ids
	done := func() bool { return len(scored)+len(dead) >= count }
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := readAll(ctx, brokers, "recon-scores", func(m stream.Record) bool {
			var s scorer.ScoreRecord
			if err := json.Unmarshal(m.Value, &s); err != nil {
				t.Errorf("score record %s: %v: %q", m.Key, err, m.Value)
			}
			mu.Lock()
			defer mu.Unlock()
			scored[string(m.Key)] = s
			return !done()
		}); err != nil && ctx.Err() == nil {
			t.Errorf("reading the scores topic: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := readAll(ctx, brokers, "recon-dlq", func(m stream.Record) bool {
			mu.Lock()
			defer mu.Unlock()
			dead[string(m.Key)] = header(m, scorer.HeaderReason)
			return !done()
		}); err != nil && ctx.Err() == nil {
			t.Errorf("reading the dead-letter topic: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := readAll(ctx, brokers, "recon-alerts", func(m stream.Record) bool {
			var a scorer.Alert
			if err := json.Unmarshal(m.Value, &a); err != nil {
				t.Errorf("alert %s: %v: %q", m.Key, err, m.Value)
			}
			mu.Lock()
			defer mu.Unlock()
			if alerts[string(m.Key)] == nil {
				alerts[string(m.Key)] = map[string]bool{}
			}
			alerts[string(m.Key)][a.ID] = true
			return true
		}); err != nil && ctx.Err() == nil {
			t.Errorf("reading the alerts topic: %v", err)
		}
	}()
	testkit.Until(ctx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return done()
	})
	// A record's alert is written before its score but read on another
	// topic: wait until every alerting score's alert is in too (what is
	// still missing after 10 s is the accounting's to report).
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	testkit.Until(actx, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k, s := range scored {
			if s.Alert && len(alerts[k]) == 0 {
				return false
			}
		}
		return true
	})
	acancel()
	cancel()
	wg.Wait()

	var r accounting
	ids := map[string]string{}
	for k, tr := range truth {
		s, ok := scored[k]
		if _, d := dead[k]; !ok && !d {
			r.missing++
			continue
		}
		for id := range alerts[k] {
			if other, dup := ids[id]; dup && other != k {
				t.Errorf("alert id %s names records %s and %s", id, other, k)
			}
			ids[id] = k
		}
		if len(alerts[k]) > 1 {
			t.Errorf("record %s has %d different alert ids", k, len(alerts[k]))
		}
		if !ok || s.Threshold == 0 {
			continue
		}
		r.ready++
		switch {
		case tr != "normal":
			r.anomalies++
			if !s.Alert || len(alerts[k]) == 0 {
				r.missed++
				if r.missed <= 5 {
					t.Errorf("anomaly %s (%s) scored %.3f against threshold %.3f by version %d: no alert", k, tr, s.Score, s.Threshold, s.Version)
				}
			}
		case s.Alert:
			r.falseAlarms++
		}
	}
	r.dead, r.ids = dead, len(ids)
	t.Logf("%d records: %d missing, %d dead-lettered; %d scored with a threshold, %d anomalies among them, %d missed, %d false alarms; %d alert ids",
		count, r.missing, len(dead), r.ready, r.anomalies, r.missed, r.falseAlarms, len(ids))
	return r
}

// TestFaults streams records through the whole pipeline while it injects,
// at random moments, kill -9 of a scorer, a trainer and the coordinator,
// and a devkafka restart. Afterwards every produced record must be scored
// or dead-lettered, every anomaly scored with a threshold must have an
// alert, each record's alerts share one id, checkpoint versions never go
// down, every process must have come back, and every process must stop
// within 5 s of SIGTERM.
func TestFaults(t *testing.T) {
	const rate, count = 2500, 100_000 // 40 s of stream
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("RECON_E2E_SEED"), 10, 64); err == nil {
		seed = s // replay a run's fault timing
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("fault timing seed %d", seed)
	p := startPipeline(t, rate, count)
	pause := func(lo, hi float64) {
		time.Sleep(time.Duration((lo + (hi-lo)*rng.Float64()) * float64(time.Second))) // simulates the time between faults
	}

	waitFor(t, 60*time.Second, "a threshold", func() bool { return scrape(p.coordMetrics, "recon_coordinator_threshold") > 0 })
	t.Logf("threshold %.3f at version %.0f", scrape(p.coordMetrics, "recon_coordinator_threshold"), scrape(p.coordMetrics, "recon_coordinator_checkpoint_version"))
	faults := []func(){
		func() { p.restart(p.scorers[rng.IntN(2)], false, 500*time.Millisecond) },
		func() { p.restart(p.trainers[rng.IntN(2)], false, 500*time.Millisecond) },
		func() { p.restart(p.coord, false, time.Second) },
		func() { p.restart(p.devkafka, true, time.Second) },
	}
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	for _, f := range faults {
		pause(1, 4)
		f()
	}
	// Every process came back: each serves again.
	waitFor(t, 30*time.Second, "the coordinator to train again after the faults", func() bool {
		return scrape(p.coordMetrics, "recon_coordinator_round") > 0 && scrape(p.coordMetrics, "recon_coordinator_workers") == 2
	})
	for i, m := range p.scorerMetrics {
		waitFor(t, 30*time.Second, fmt.Sprintf("scorer-%d to score again", i+1), func() bool { return scrape(m, "recon_scorer_records_total") > 0 })
	}
	for i, m := range p.trainerMetrics {
		waitFor(t, 30*time.Second, fmt.Sprintf("trainer-%d to send gradients again", i+1), func() bool { return scrape(m, "recon_worker_gradients_total") > 0 })
	}
	waitFor(t, 90*time.Second, "loadgen to finish", func() bool { return !p.load.Running() })
	if !strings.Contains(p.load.LogText(), fmt.Sprintf("loadgen: %d records", count)) {
		t.Fatalf("loadgen did not produce %d records: %s", count, p.load.LogText())
	}

	r := p.account(count)
	missing, ready := r.missing, r.ready
	if missing > 0 {
		t.Errorf("%d records neither scored nor dead-lettered", missing)
		if os.Getenv("RECON_E2E_DUMP") != "" { // group assignments and goroutine dumps, to debug a stall
			cl := &kafka.Client{Addr: kafka.TCP(p.kafka)}
			resp, err := cl.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{"recon-scorer"}})
			if err != nil {
				t.Logf("describe group: %v", err)
			} else {
				for _, g := range resp.Groups {
					t.Logf("group %s state %s error %v", g.GroupID, g.GroupState, g.Error)
					for _, m := range g.Members {
						t.Logf("  member %s client %s host %s assignments %+v", m.MemberID, m.ClientID, m.ClientHost, m.MemberAssignments.Topics)
					}
				}
			}
			for _, s := range p.scorers {
				if err := s.Signal(syscall.SIGQUIT); err != nil {
					t.Logf("%s: %v", s.Name, err)
				}
			}
			// Let the goroutine dumps reach the logs shown below.
			testkit.Within(2*time.Second, func() bool {
				for _, s := range p.scorers {
					if s.Running() {
						return false
					}
				}
				return true
			})
		}
	}
	if ready < count/3 {
		t.Errorf("only %d records scored with a threshold", ready)
	}

	// Checkpoint versions never go down: written by the coordinator
	// across its restart, and as each scorer swapped them in.
	check := func(name string, vs []uint64, strict bool) {
		for i := 1; i < len(vs); i++ {
			if vs[i] < vs[i-1] || strict && vs[i] == vs[i-1] {
				t.Errorf("%s: checkpoint version went from %d to %d", name, vs[i-1], vs[i])
			}
		}
		if len(vs) == 0 {
			t.Errorf("%s: no checkpoint versions logged", name)
		}
	}
	check("coordinator", versions(p.coord.LogText(), "checkpoint written"), true)
	for _, s := range p.scorers {
		check(s.Name, versions(s.LogText(), "new checkpoint"), false)
	}
	if !strings.Contains(p.coord.LogText(), "resumed from checkpoint") {
		t.Error("the restarted coordinator did not resume from its checkpoint")
	}

	// Every process is up and stops within 5 s of SIGTERM, exiting 0.
	for _, pr := range p.all {
		if !pr.Running() {
			t.Errorf("%s is not running", pr.Name)
		}
	}
	// A second SIGTERM during shutdown is acknowledged, and the graceful
	// work still finishes.
	for _, pr := range append(p.all[1:], p.devkafka) {
		start := time.Now()
		if err := pr.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("%s: %v", pr.Name, err)
		}
		time.Sleep(10 * time.Millisecond) // simulates an impatient operator: a second SIGTERM during shutdown
		_ = pr.Signal(syscall.SIGTERM)    // may find it gone already
		select {
		case <-pr.Exited():
		case <-time.After(5 * time.Second):
			t.Errorf("%s still running 5 s after SIGTERM", pr.Name)
			pr.Kill()
		}
		t.Logf("%s stopped in %v (SIGTERM twice)", pr.Name, time.Since(start).Round(time.Millisecond))
		if err := pr.ExitErr(); err != nil {
			t.Errorf("%s on SIGTERM: %v", pr.Name, err)
		}
	}
	if !strings.Contains(p.coord.LogText(), "coordinator stopped") {
		t.Error("the coordinator did not log its final checkpoint and stop")
	}
}
