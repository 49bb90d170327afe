// Command demo runs the whole recon pipeline on one machine and shows it
// working: devkafka, a coordinator, two trainers, two scorers and the
// console as separate processes on loopback ports, and loadgen streaming records near a low-rank
// subspace with injected anomalies (off-subspace points, single-feature
// spikes, scaled records). A live view shows records in, the training round
// and loss, the model version and threshold, alerts, the newest alerts, and
// precision and recall against the injected truth; the console's URL is
// printed first. Ctrl-C (or --seconds)
// stops every process cleanly and prints a summary; `make demo` runs it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
)

func main() {
	cli.Exit("demo", run(cli.Signals("demo"), os.Args[1:], os.Stdout))
}

// config is the demo's flags.
type config struct {
	bin, dir        string
	seconds         int
	rate, anomalies float64
	features        int
	interval        time.Duration
	minQuality      float64
	alertRate       float64
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	cli.SetUsage(fs, `usage: demo [flags]

Starts devkafka, a coordinator, two trainers, two scorers, the console and loadgen
as separate processes on loopback ports and shows the pipeline learning the stream
and raising alerts, with precision and recall against the injected truth; the
console's URL (a web page of the same) is printed first. Ctrl-C stops every
process cleanly; --seconds N (DEMO_SECONDS=N with make demo) gives a bounded run
that ends with a summary and exits 0 only if precision and recall reach
--min-quality. Each process logs to a file in --dir.`)
	var c config
	fs.StringVar(&c.bin, "bin", "", "`directory` holding the recon binaries (default: the demo binary's own; make build puts them all in bin/)")
	fs.StringVar(&c.dir, "dir", "demo-run", "`directory` for logs, checkpoint stores and broker data (emptied at start)")
	fs.IntVar(&c.seconds, "seconds", 0, "stop after this many `seconds` and print the summary (0: run until Ctrl-C)")
	fs.Float64Var(&c.rate, "rate", 4000, "records per second loadgen produces")
	fs.Float64Var(&c.anomalies, "anomalies", 0.01, "`fraction` of injected anomalies")
	fs.IntVar(&c.features, "features", 30, "record width")
	fs.DurationVar(&c.interval, "interval", 2*time.Second, "live view refresh `interval`")
	fs.Float64Var(&c.minQuality, "min-quality", 0.9, "a bounded run fails unless precision and recall both reach this")
	fs.Float64Var(&c.alertRate, "alert-rate", 0.0002, "the coordinator's --alert-rate: the `share` of normal records that may alert")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if c.bin == "" {
		exe, _ := os.Executable()
		c.bin = filepath.Dir(exe)
	}
	if c.seconds < 0 || c.rate <= 0 || c.features < 4 || c.interval <= 0 || !(c.anomalies > 0 && c.anomalies < 0.5) || !(c.alertRate > 0 && c.alertRate < 0.5) {
		return cli.Usagef("want --seconds >= 0, --rate > 0, --features >= 4, --interval > 0, --anomalies and --alert-rate in (0, 0.5)")
	}
	for _, b := range []string{"devkafka", "coordinator", "trainer", "scorer", "console", "loadgen"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s (run make build, or pass --bin)", b, c.bin)
		}
	}
	d, err := start(c)
	if err != nil {
		if d != nil {
			if serr := procs.StopAll(5*time.Second, d.all...); serr != nil {
				fmt.Fprintln(stdout, "demo:", serr)
			}
		}
		return err
	}
	return d.watch(ctx, stdout)
}

// demo is a running pipeline and what the view knows of it.
type demo struct {
	cfg           config
	kafka         string
	coordMetrics  string
	scorerMetrics []string
	consoleAddr   string // the console's HTTP address
	tokenFile     string // the console's rollback token
	console       *procs.Proc
	consoleRSS    []int64 // the console's resident bytes, sampled each view refresh after the first threshold
	// consoleAlerts and consoleScores are the alert and score records the
	// console read, at the end (-1: unknown)
	consoleAlerts, consoleScores float64
	devkafka, coord              *procs.Proc
	loadgen                      *procs.Proc
	all                          []*procs.Proc // in start order
	started, firstAlert          time.Time
	truth                        *tally
	prevIn, prevAlerts           float64
	prevAt                       time.Time
	stopTimes                    map[string]time.Duration
	finalRound, finalVer         float64
	// CPU time of each process (by d.all's order) when the first threshold
	// was seen and when loadgen was stopped, and those times.
	cpuAt, cpuEnd     []time.Duration
	cpuFrom, cpuUntil time.Time
}

// start launches every process in order, waiting for each to listen.
func start(c config) (*demo, error) {
	if err := os.RemoveAll(c.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	dir, _ := filepath.Abs(c.dir)
	addrs := make([]string, 8) // devkafka, coordinator gRPC and metrics, 2 trainers, 2 scorers, the console
	for i := range addrs {
		a, err := procs.FreeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	d := &demo{cfg: c, kafka: addrs[0], coordMetrics: addrs[2], scorerMetrics: addrs[5:7], consoleAddr: addrs[7], started: time.Now(), truth: newTally(), stopTimes: map[string]time.Duration{}}
	p := strconv.Itoa(c.features)
	d.devkafka = procs.New(c.bin, dir, "devkafka", "devkafka", "--listen", addrs[0], "--data-dir", filepath.Join(dir, "devkafka-data"))
	// The demo configures the coordinator for its stream, as a user would:
	// it injects 1% anomalies (--anomalies), so for precision 0.9 the normal
	// records may raise fewer than 0.1% of false alarms; in a young stream
	// false alarms run above a small configured rate (0.07% here at 0.02%,
	// 90 s runs), so it asks for 0.02%. Its records are unbounded Gaussian mixtures and a spike moves
	// one feature 6 to 8 standard deviations: a linear output reconstructs
	// the ordinary records' large values, where the default bounded (tanh)
	// output, chosen on real data, leaves them in the scores' tail and
	// hides spikes there (recall 0.95 against 0.99 in internal/pipeline).
	// The code width is the default's, chosen from the stream's spectrum.
	d.coord = procs.New(c.bin, dir, "coordinator", "coordinator", "--features", p, "--listen", addrs[1], "--metrics-listen", addrs[2],
		"--store", filepath.Join(dir, "coordinator.db"), "--alert-rate", strconv.FormatFloat(c.alertRate, 'f', -1, 64), "--output", "linear")
	trainers := []*procs.Proc{}
	for i := 1; i <= 2; i++ {
		trainers = append(trainers, procs.New(c.bin, dir, fmt.Sprintf("trainer-%d", i), "trainer", "run", "--source", "kafka", "--brokers", addrs[0],
			"--features", p, "--coordinator", addrs[1], "--id", fmt.Sprintf("trainer-%d", i), "--metrics-listen", addrs[2+i]))
	}
	scorers := []*procs.Proc{}
	for i := 1; i <= 2; i++ {
		scorers = append(scorers, procs.New(c.bin, dir, fmt.Sprintf("scorer-%d", i), "scorer", "run", "--brokers", addrs[0],
			"--coordinator", addrs[1], "--cache", filepath.Join(dir, fmt.Sprintf("scorer-%d.db", i)), "--scores-topic", "recon-scores",
			"--metrics-listen", addrs[4+i], "--id", fmt.Sprintf("scorer-%d", i)))
	}
	// The records are keyed by 50 devices, so that an alert's page shows
	// its device's scores around it.
	d.loadgen = procs.New(c.bin, dir, "loadgen", "loadgen", "--brokers", addrs[0], "--rate", strconv.FormatFloat(c.rate, 'f', -1, 64),
		"--features", p, "--anomalies", strconv.FormatFloat(c.anomalies, 'f', -1, 64), "--keys", "50")
	// The console, with the rollback action on: its token is a file in
	// the run's directory.
	d.tokenFile = filepath.Join(dir, "console.token")
	tok := make([]byte, 18)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.tokenFile, []byte(base64.RawURLEncoding.EncodeToString(tok)+"\n"), 0o600); err != nil {
		return nil, err
	}
	d.console = procs.New(c.bin, dir, "console", "console", "--listen", addrs[7], "--brokers", addrs[0], "--coordinator", addrs[1],
		"--rollback-token-file", d.tokenFile)
	d.all = append([]*procs.Proc{d.devkafka, d.coord}, append(trainers, scorers...)...)
	d.all = append(d.all, d.console, d.loadgen)
	if err := d.devkafka.Start(); err != nil {
		return d, err
	}
	if err := waitListening(addrs[0], d.devkafka); err != nil {
		return d, err
	}
	if err := d.coord.Start(); err != nil {
		return d, err
	}
	if err := waitListening(addrs[1], d.coord); err != nil {
		return d, err
	}
	for _, pr := range d.all[2:] {
		if err := pr.Start(); err != nil {
			return d, err
		}
	}
	return d, nil
}

// waitListening waits up to 15 s for addr to accept connections.
func waitListening(addr string, p *procs.Proc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("%s exited at start; see %s", p.Name, p.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s is not listening on %s after 15 s; see %s", p.Name, addr, p.Log)
}

// watch consumes the topics, refreshes the view until the run ends, stops
// everything and prints the summary.
func (d *demo) watch(ctx context.Context, stdout io.Writer) error {
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var wg sync.WaitGroup
	group := "recon-demo-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, topic := range []string{"recon-events", "recon-scores", "recon-alerts", "recon-dlq"} {
		rd, err := stream.NewReader(stream.ReaderConfig{Brokers: []string{d.kafka}, Topic: topic, Group: group, StartFirst: true, MaxWait: 10 * time.Millisecond})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rd.Close()
			for {
				b, err := rd.Batch(wctx)
				if err != nil {
					return
				}
				d.truth.add(topic, b)
			}
		}()
	}
	fmt.Fprintf(stdout, "demo: the console is at http://%s/ (its rollback token is in %s)\n", d.consoleAddr, d.tokenFile)
	var deadline <-chan time.Time
	if d.cfg.seconds > 0 {
		deadline = time.After(time.Duration(d.cfg.seconds) * time.Second)
	}
	tick := time.NewTicker(d.cfg.interval)
	defer tick.Stop()
	tty := isTerminal(stdout)
	interrupted := false
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-deadline:
			break loop
		case <-tick.C:
			d.render(stdout, tty)
			for _, p := range d.all {
				if !p.Running() {
					fmt.Fprintf(stdout, "demo: %s exited unexpectedly; see %s\n", p.Name, p.Log)
					if err := procs.StopAll(5*time.Second, d.all...); err != nil {
						fmt.Fprintln(stdout, "demo:", err)
					}
					return fmt.Errorf("%s exited", p.Name)
				}
			}
		}
	}
	fmt.Fprintln(stdout, "demo: stopping loadgen, letting the scorers catch up, then stopping every process (SIGTERM)")
	d.cpuEnd, d.cpuUntil = d.cpuTimes(), time.Now()
	d.stop(d.loadgen)
	d.finalRound, d.finalVer = scrape(d.coordMetrics, "recon_coordinator_round"), scrape(d.coordMetrics, "recon_coordinator_checkpoint_version")
	catchUp := time.Now().Add(10 * time.Second)
	for time.Now().Before(catchUp) && !d.truth.caughtUp() {
		time.Sleep(100 * time.Millisecond)
	}
	var wg2 sync.WaitGroup
	for _, p := range d.all[2:6] { // trainers and scorers at once
		wg2.Add(1)
		go func() { defer wg2.Done(); d.stop(p) }()
	}
	wg2.Wait()
	d.stop(d.coord)
	stopWatch()
	wg.Wait()
	d.readConsole()
	d.stop(d.console)
	d.stop(d.devkafka)
	ok := d.summary(stdout)
	switch {
	case interrupted:
		return nil
	case !ok:
		return fmt.Errorf("precision or recall below %.2f (see the summary)", d.cfg.minQuality)
	}
	return nil
}

// stop stops one process with a 5 s grace and notes how long it took.
func (d *demo) stop(p *procs.Proc) {
	t, err := p.Stop(5 * time.Second)
	d.stopTimes[p.Name] = t
	if err != nil {
		d.stopTimes[p.Name] = -1
	}
}

// cpuTimes returns each process's CPU time so far, -1 where unknown.
func (d *demo) cpuTimes() []time.Duration {
	out := make([]time.Duration, len(d.all))
	for i, p := range d.all {
		if t, ok := p.CPUTime(); ok {
			out[i] = t
		} else {
			out[i] = -1
		}
	}
	return out
}

// trainingState names the coordinator's training state from its metrics.
func trainingState(addr string) string {
	for _, st := range pace.States() {
		if v, ok := procs.Metric(addr, fmt.Sprintf("recon_coordinator_training_state{state=%q}", st)); ok && v == 1 {
			return st.String()
		}
	}
	return "state unknown"
}

// render draws the live view.
func (d *demo) render(w io.Writer, tty bool) {
	now := time.Now()
	s := d.truth.snapshot()
	round := scrape(d.coordMetrics, "recon_coordinator_round")
	loss := scrape(d.coordMetrics, "recon_coordinator_loss")
	version := scrape(d.coordMetrics, "recon_coordinator_checkpoint_version")
	threshold := scrape(d.coordMetrics, "recon_coordinator_threshold")
	if threshold > 0 && d.cpuAt == nil {
		d.cpuAt, d.cpuFrom = d.cpuTimes(), now
	}
	if d.cpuAt != nil {
		if r, ok := d.console.RSS(); ok {
			d.consoleRSS = append(d.consoleRSS, r)
		}
	}
	var scored, alerts float64
	for _, a := range d.scorerMetrics {
		scored += max(scrape(a, "recon_scorer_records_total"), 0)
		alerts += max(scrape(a, "recon_scorer_alerts_total"), 0)
	}
	inRate, alertRate := 0.0, 0.0
	if !d.prevAt.IsZero() {
		dt := now.Sub(d.prevAt).Seconds()
		inRate, alertRate = (float64(s.produced)-d.prevIn)/dt, (alerts-d.prevAlerts)/dt
	}
	d.prevIn, d.prevAlerts, d.prevAt = float64(s.produced), alerts, now
	if d.firstAlert.IsZero() && s.alerts > 0 {
		d.firstAlert = now
	}
	var b strings.Builder
	if tty {
		b.WriteString("\033[H\033[2J")
	}
	fmt.Fprintf(&b, "recon demo  %5.0fs   broker %s   console http://%s/   (Ctrl-C stops every process; logs in %s)\n", now.Sub(d.started).Seconds(), d.kafka, d.consoleAddr, d.cfg.dir)
	fmt.Fprintf(&b, "  records in   %8.0f/s   produced %d, scored %.0f, dead-lettered %d\n", inRate, s.produced, scored, s.dead)
	fmt.Fprintf(&b, "  training     round %.0f, loss %.4g, %s, %.1f presentations per record\n", round, loss,
		trainingState(d.coordMetrics), scrape(d.coordMetrics, "recon_coordinator_presentations_per_record"))
	if threshold > 0 {
		fmt.Fprintf(&b, "  model        version %.0f, threshold %.4g\n", version, threshold)
	} else {
		fmt.Fprintf(&b, "  model        version %.0f, no threshold yet (training has not settled: no alerts)\n", version)
	}
	fmt.Fprintf(&b, "  alerts       %8.1f/s   total %d\n", alertRate, s.alerts)
	if s.readyScored > 0 {
		fmt.Fprintf(&b, "  quality      precision %.3f  recall %.3f   over %d records scored with a threshold (%d anomalies)\n",
			s.precision(), s.recall(), s.readyScored, s.tp+s.fn)
	}
	if len(s.newest) > 0 {
		b.WriteString("  newest alerts:\n")
		for _, a := range s.newest {
			top := ""
			if len(a.alert.Features) > 0 {
				f := a.alert.Features[0]
				top = fmt.Sprintf("%s=%.3g (expected %.3g)", f.Name, f.Value, f.Reconstruction)
			}
			fmt.Fprintf(&b, "    %-22s score %8.3g  top %-28s truth %s\n", a.alert.ID, a.alert.Score, top, a.truth)
		}
	}
	if !tty {
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// summary prints the final table and reports whether quality was reached.
func (d *demo) summary(w io.Writer) bool {
	s := d.truth.snapshot()
	ok := s.readyScored > 0 && s.precision() >= d.cfg.minQuality && s.recall() >= d.cfg.minQuality
	fmt.Fprintf(w, "\nrecon demo summary (%.0f s)\n", time.Since(d.started).Seconds())
	row := func(k string, v any) { fmt.Fprintf(w, "  %-34s %v\n", k, v) }
	row("records produced", s.produced)
	row("records scored", s.scored)
	row("records dead-lettered", s.dead)
	row("injected anomalies", s.anomalies)
	row("scored with a threshold", s.readyScored)
	row("  anomalies among them", s.tp+s.fn)
	row("  alerts (true / false)", fmt.Sprintf("%d / %d", s.tp, s.fp))
	row("  precision", fmt.Sprintf("%.3f", s.precision()))
	row("  recall", fmt.Sprintf("%.3f", s.recall()))
	for _, k := range slices.Sorted(maps.Keys(s.byKind)) {
		c := s.byKind[k]
		row("    recall of "+k, fmt.Sprintf("%.3f (%d of %d)", float64(c.tp)/float64(max(c.tp+c.fn, 1)), c.tp, c.tp+c.fn))
	}
	row("distinct alert ids / alert records", fmt.Sprintf("%d / %d", s.alertIDs, s.alerts))
	if !d.firstAlert.IsZero() {
		row("first alert after", fmt.Sprintf("%v (%s, model version %d)", d.firstAlert.Sub(d.started).Round(time.Second), s.first.ID, s.first.Model.Version))
	}
	row("training rounds, checkpoint version", fmt.Sprintf("%.0f, %.0f", d.finalRound, d.finalVer))
	if d.cpuAt != nil && d.cpuEnd != nil && d.cpuUntil.Sub(d.cpuFrom) > 0 {
		el := d.cpuUntil.Sub(d.cpuFrom)
		fmt.Fprintf(w, "  CPU after the first threshold (%.0f s), share of one core:\n", el.Seconds())
		for i, p := range d.all {
			if d.cpuAt[i] >= 0 && d.cpuEnd[i] >= 0 {
				fmt.Fprintf(w, "    %-12s %5.1f%%\n", p.Name, 100*(d.cpuEnd[i]-d.cpuAt[i]).Seconds()/el.Seconds())
			}
		}
	}
	d.consoleSummary(w, s)
	fmt.Fprintln(w, "  shutdown (SIGTERM to exit):")
	for _, p := range d.all {
		t := d.stopTimes[p.Name]
		st := t.Round(time.Millisecond).String()
		if t < 0 {
			st = "FAILED (killed or error)"
		}
		fmt.Fprintf(w, "    %-12s %-10s log %s\n", p.Name, st, p.Log)
	}
	if ok {
		fmt.Fprintf(w, "precision and recall at least %.2f: ok\n", d.cfg.minQuality)
	} else {
		fmt.Fprintf(w, "precision or recall below %.2f\n", d.cfg.minQuality)
	}
	return ok
}

// tally joins the events' truth headers with scores and alerts.
type tally struct {
	mu       sync.Mutex
	truth    map[string]string // record id (topic/partition/offset) -> truth
	scores   map[string]scorer.ScoreRecord
	ids      map[string]bool
	produced int
	// scoreRecords counts the scores topic's records (a re-scored record
	// twice)
	scoreRecords int
	dead         int
	alerts       int
	first        scorer.Alert // the first alert read
	newest       []shownAlert
}

type shownAlert struct {
	key   string // the record's key
	alert scorer.Alert
	truth string
}

func newTally() *tally {
	return &tally{truth: map[string]string{}, scores: map[string]scorer.ScoreRecord{}, ids: map[string]bool{}}
}

func (t *tally) add(topic string, b []stream.Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range b {
		k := string(m.Key)
		switch topic {
		case "recon-events":
			k = fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset) // as scores and alerts name it
			if _, dup := t.truth[k]; !dup {
				t.produced++
			}
			t.truth[k] = "normal"
			for _, h := range m.Headers {
				if h.Key == "recon-truth" {
					t.truth[k] = string(h.Value)
				}
			}
		case "recon-scores":
			var s scorer.ScoreRecord
			t.scoreRecords++
			if json.Unmarshal(m.Value, &s) == nil {
				t.scores[s.ID] = s
			}
		case "recon-dlq":
			t.dead++
		case "recon-alerts":
			var a scorer.Alert
			if json.Unmarshal(m.Value, &a) != nil {
				continue
			}
			if t.alerts == 0 {
				t.first = a
			}
			t.alerts++
			t.ids[a.ID] = true
			t.newest = append(t.newest, shownAlert{key: k, alert: a})
			if len(t.newest) > 5 {
				t.newest = t.newest[1:]
			}
		}
	}
}

// consoleSummary prints what the console cost and whether it kept up,
// against the aims: under 10% of a core, resident memory flat (from the
// second minute after the first threshold, when its windows of alerts and
// scores are full, at most 1.2 times that minute's), every alert and
// score read.
func (d *demo) consoleSummary(w io.Writer, s stats) {
	i := slices.Index(d.all, d.console)
	if d.cpuAt == nil || d.cpuEnd == nil || d.cpuAt[i] < 0 || d.cpuEnd[i] < 0 {
		return
	}
	el := d.cpuUntil.Sub(d.cpuFrom)
	cpu := (d.cpuEnd[i] - d.cpuAt[i]).Seconds() / el.Seconds()
	met := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "NOT MET"
	}
	fmt.Fprintf(w, "  console: %.1f%% of a core over %.0f s (aim < 10%%: %s)\n", 100*cpu, el.Seconds(), met(cpu < 0.10))
	if n := len(d.consoleRSS); n > 0 {
		// Resident memory each minute; the aim is judged from the second
		// minute on, when its windows (5,000 alerts, 20,000 scores: about
		// two minutes at the demo's rates) are full.
		per := max(int(time.Minute/d.cfg.interval), 1)
		var mins []string
		for i := 0; i < n; i += per {
			mins = append(mins, fmt.Sprintf("%.0f", float64(d.consoleRSS[i])/(1<<20)))
		}
		fmt.Fprintf(w, "  console: resident MiB each minute after the first threshold: %s; at the end %.0f\n", strings.Join(mins, " "), float64(d.consoleRSS[n-1])/(1<<20))
		if n > 3*per { // flatness needs a few minutes past the windows' filling
			from := d.consoleRSS[2*per]
			top := slices.Max(d.consoleRSS[2*per:])
			fmt.Fprintf(w, "  console: from the second minute at most %.0f MiB, %.2fx the second minute's (aim: flat, at most 1.2x: %s)\n",
				float64(top)/(1<<20), float64(top)/float64(from), met(float64(top) <= 1.2*float64(from)))
		}
	}
	if d.consoleAlerts >= 0 && d.consoleScores >= 0 {
		fmt.Fprintf(w, "  console: read %.0f of %d alert records and %.0f of %d score records (aim: all: %s)\n",
			d.consoleAlerts, s.alerts, d.consoleScores, s.scoreRecords, met(int(d.consoleAlerts) >= s.alerts && int(d.consoleScores) >= s.scoreRecords))
	}
}

// readConsole reads, once the scorers have stopped, how many alert and
// score records the console has read, waiting up to 5 s for it to read
// as many as the demo did (-1: it does not answer).
func (d *demo) readConsole() {
	s := d.truth.snapshot()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.consoleAlerts = scrape(d.consoleAddr, `recon_console_records_read_total{topic="recon-alerts"}`)
		d.consoleScores = scrape(d.consoleAddr, `recon_console_records_read_total{topic="recon-scores"}`)
		if (int(d.consoleAlerts) >= s.alerts && int(d.consoleScores) >= s.scoreRecords) || time.Now().After(deadline) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// caughtUp reports whether every produced record has been scored or
// dead-lettered.
func (t *tally) caughtUp() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.produced > 0 && len(t.scores)+t.dead >= t.produced
}

// stats is a snapshot of the tally.
type stats struct {
	produced, scored, dead, alerts, alertIDs, anomalies, scoreRecords int
	readyScored, tp, fp, fn                                           int
	first                                                             scorer.Alert
	newest                                                            []shownAlert
	byKind                                                            map[string]kindCount // anomalies scored with a threshold, by kind
}

// kindCount is one anomaly kind's alerted (tp) and missed (fn) records.
type kindCount struct{ tp, fn int }

func (s stats) precision() float64 { return float64(s.tp) / float64(max(s.tp+s.fp, 1)) }
func (s stats) recall() float64    { return float64(s.tp) / float64(max(s.tp+s.fn, 1)) }

func (t *tally) snapshot() stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := stats{produced: t.produced, scored: len(t.scores), scoreRecords: t.scoreRecords, dead: t.dead, alerts: t.alerts, alertIDs: len(t.ids), first: t.first, newest: slices.Clone(t.newest),
		byKind: map[string]kindCount{}}
	for k, tr := range t.truth {
		if tr != "normal" {
			s.anomalies++
		}
		sc, ok := t.scores[k]
		if !ok || sc.Threshold == 0 {
			continue
		}
		s.readyScored++
		if tr == "normal" {
			if sc.Alert {
				s.fp++
			}
			continue
		}
		c := s.byKind[tr]
		if sc.Alert {
			s.tp++
			c.tp++
		} else {
			s.fn++
			c.fn++
		}
		s.byKind[tr] = c
	}
	for i := range s.newest {
		s.newest[i].truth = t.truth[s.newest[i].alert.ID]
	}
	return s
}

// scrape reads one unlabelled sample from a /metrics endpoint (-1: none).
func scrape(addr, name string) float64 {
	if v, ok := procs.Metric(addr, name); ok {
		return v
	}
	return -1
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
