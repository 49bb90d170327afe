package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/recon-ad/recon/internal/adbench"
	"github.com/recon-ad/recon/internal/auc"
	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
	"gonum.org/v1/gonum/stat/distuv"
)

// The streaming evaluation (--sets adbench-stream) runs the contaminated
// protocol through the real binaries on the embedded broker: devkafka, a
// coordinator at its default model and threshold flags, two trainers
// reading the stream, one scorer writing every score. loadgen replays the
// training rows until the coordinator sets its first threshold and a
// scorer runs a checkpoint holding it; then the trainers stop (the model
// stays fixed), loadgen replays the test rows once and the scores topic is
// read back and joined with the labels by record key.

// testIDOffset is added to a test row's index in its set to make its
// record key; a training row's key is its index. The keys of the two files
// cannot collide for sets of fewer rows.
const testIDOffset = 1_000_000

const (
	eventsTopic = "recon-events"
	scoresTopic = "recon-scores"
	// stepTimeout bounds each wait after the first threshold: a checkpoint
	// reaching the scorer, the model settling after the trainers stop.
	stepTimeout = time.Minute
	pollEvery   = 250 * time.Millisecond
	stopGrace   = 5 * time.Second
	// finalQuiet is how long the coordinator's checkpoint version must
	// stay put after the trainers stop: more than its round deadline.
	finalQuiet = 6 * time.Second
)

// streamConfig is the streaming evaluation's flags.
type streamConfig struct {
	seeds         int
	rate          float64
	bin, dir      string
	firstTimeout  time.Duration
	scoresTimeout time.Duration
}

// addStreamFlags defines the streaming evaluation's own flags on fs.
func addStreamFlags(fs *flag.FlagSet) *streamConfig {
	c := &streamConfig{}
	fs.IntVar(&c.seeds, "stream-seeds", 3, "with --sets adbench-stream: seeds to average over (each a full pipeline run)")
	fs.Float64Var(&c.rate, "rate", 2000, "with --sets adbench-stream: records per second loadgen replays")
	fs.StringVar(&c.bin, "bin", "bin", "with --sets adbench-stream: `directory` of the recon binaries (make build)")
	fs.StringVar(&c.dir, "dir", "eval-run", "with --sets adbench-stream: `directory` for the runs' files and logs, one sub-directory per set and seed")
	fs.DurationVar(&c.firstTimeout, "first-timeout", 5*time.Minute, "with --sets adbench-stream: how long to wait for the coordinator's first threshold")
	fs.DurationVar(&c.scoresTimeout, "scores-timeout", 2*time.Minute, "with --sets adbench-stream: how long to wait for every test record's score")
	return c
}

func (c *streamConfig) validate() error {
	if c.seeds < 1 || c.rate <= 0 || c.firstTimeout <= 0 || c.scoresTimeout <= 0 {
		return errors.New("want --stream-seeds >= 1, --rate > 0, --first-timeout > 0, --scores-timeout > 0")
	}
	for _, b := range []string{"devkafka", "coordinator", "trainer", "scorer", "loadgen"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s (run make build, or pass --bin)", b, c.bin)
		}
	}
	return nil
}

// streamEval runs the streaming evaluation on every set of dir (those
// matching only) and prints its table.
func streamEval(ctx context.Context, c *streamConfig, dir, python, peers, only string) error {
	if err := c.validate(); err != nil {
		return err
	}
	sets, err := adbench.LoadDir(dir, "label")
	if err != nil {
		return err
	}
	sets = filterSets(sets, only)
	if len(sets) == 0 {
		return fmt.Errorf("%s: no set matches --only %q", dir, only)
	}
	var splits []adbench.Split
	for _, s := range sets {
		if s.Rows() >= testIDOffset {
			return fmt.Errorf("%s: %d rows; record keys allow fewer than %d", s.Name, s.Rows(), testIDOffset)
		}
		for seed := 1; seed <= c.seeds; seed++ {
			splits = append(splits, adbench.NewSplit(s, adbench.Contaminated, uint64(seed)))
		}
	}
	peerScores, err := adbench.Peers(ctx, python, peers, splits)
	if err != nil {
		return err
	}
	rows := make([]streamResult, len(splits))
	for i, sp := range splits {
		start := time.Now()
		r, err := streamSplit(ctx, c, sp, peerScores[i])
		if err != nil {
			return err
		}
		r.wall = time.Since(start)
		rows[i] = r
		fmt.Fprintf(os.Stderr, "  %-18s seed %d: %s (%v)\n", sp.Set.Name, sp.Seed, r.progress(), r.wall.Round(time.Second))
	}
	printStream(sets, splits, rows, c.seeds)
	return nil
}

// filterSets keeps the sets whose names contain one of only's
// comma-separated parts (all of them for "").
func filterSets(sets []*adbench.Set, only string) []*adbench.Set {
	if only == "" {
		return sets
	}
	var keep []*adbench.Set
	for _, s := range sets {
		for _, o := range strings.Split(only, ",") {
			if o != "" && strings.Contains(s.Name, o) {
				keep = append(keep, s)
				break
			}
		}
	}
	return keep
}

// streamResult is one split's figures: the stream's (NaN without a
// threshold) and the offline fit's and peers' on the same test rows.
type streamResult struct {
	status               string // "" when the stream reached a threshold; else why not
	roc, pr              float64
	far, recall          float64
	ifRecall             float64
	offRoc, ifRoc, knnRc float64
	records              float64 // stream records behind the first threshold
	recordsFrom          string  // which count records is
	missing              int     // test records with no score
	stale                int     // test scores not by the final checkpoint
	normals              int     // normal test rows scored
	final                uint64  // the final checkpoint's version
	firstAfter           time.Duration
	wall                 time.Duration
}

func (r streamResult) progress() string {
	s := fmt.Sprintf("offline %.4f iforest %.4f knn %.4f", r.offRoc, r.ifRoc, r.knnRc)
	if r.status != "" {
		return r.status + "; " + s
	}
	return fmt.Sprintf("threshold after %.0f records (%v); stream %.4f pr %.4f far %.4f recall %.4f if-rec %.4f; missing %d, %d not by the final version %d; %s",
		r.records, r.firstAfter.Round(100*time.Millisecond), r.roc, r.pr, r.far, r.recall, r.ifRecall, r.missing, r.stale, r.final, s)
}

// streamSplit runs one split through the pipeline and offline.
func streamSplit(ctx context.Context, c *streamConfig, sp adbench.Split, peer adbench.PeerScores) (streamResult, error) {
	labels := sp.Labels(sp.Test)
	r := streamResult{roc: math.NaN(), pr: math.NaN(), far: math.NaN(), recall: math.NaN(), ifRecall: math.NaN(), records: math.NaN()}
	r.ifRoc, _ = auc.ROC(peer.IForest, labels)
	r.knnRc, _ = auc.ROC(peer.KNN, labels)
	cfg := fit.Default()
	cfg.Seed = sp.Seed
	res, err := fit.Fit(ctx, cfg, sp.Rows(sp.Train), sp.Set.Width(), nil)
	if err != nil {
		return r, fmt.Errorf("%s seed %d: offline fit: %w", sp.Set.Name, sp.Seed, err)
	}
	if r.offRoc, err = auc.ROC(res.Score(sp.Rows(sp.Test)), labels); err != nil {
		return r, fmt.Errorf("%s seed %d: %w", sp.Set.Name, sp.Seed, err)
	}
	dir := filepath.Join(c.dir, fmt.Sprintf("%s-seed%d", sp.Set.Name, sp.Seed))
	run, err := runPipeline(ctx, c, sp, dir)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.records, r.recordsFrom, r.firstAfter = run.records, run.recordsFrom, run.firstAfter
	if err != nil {
		r.status = "failed: " + err.Error()
		return r, nil
	}
	if r.status = run.status; r.status != "" {
		r.records = math.NaN()
		return r, nil
	}
	scores, alerts, lab, missing, stale := run.join.collect(labels, run.final)
	r.missing, r.stale, r.final = missing, stale, run.final
	if r.roc, err = auc.ROC(scores, lab); err != nil {
		r.status = "no stream ROC: " + err.Error()
		return r, nil
	}
	r.pr, _ = auc.PR(scores, lab)
	r.far, r.recall = alarmShares(alerts, lab)
	for _, a := range lab {
		if !a {
			r.normals++
		}
	}
	if !math.IsNaN(r.far) {
		r.ifRecall = adbench.RecallAt(peer.IForest, labels, r.far)
	}
	return r, nil
}

// alarmShares returns the share of normal rows alerted on and the share of
// anomalies alerted on (NaN for none of a kind).
func alarmShares(alert, anomaly []bool) (far, recall float64) {
	var nn, na, fa, tp int
	for i, a := range alert {
		switch {
		case anomaly[i]:
			na++
			if a {
				tp++
			}
		default:
			nn++
			if a {
				fa++
			}
		}
	}
	share := func(a, b int) float64 {
		if b == 0 {
			return math.NaN()
		}
		return float64(a) / float64(b)
	}
	return share(fa, nn), share(tp, na)
}

// pipelineRun is what one pipeline run found.
type pipelineRun struct {
	status      string // "" or "no threshold"
	records     float64
	recordsFrom string
	firstAfter  time.Duration
	final       uint64 // the coordinator's checkpoint version after the trainers stopped
	join        *scoreJoin
}

// runPipeline starts the processes in dir, trains on the split's training
// rows until the first threshold is in a checkpoint the scorer runs, and
// scores its test rows with the model fixed. Every process is stopped
// before it returns, and the broker's data removed.
func runPipeline(ctx context.Context, c *streamConfig, sp adbench.Split, dir string) (run pipelineRun, err error) {
	if err := os.RemoveAll(dir); err != nil {
		return run, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return run, err
	}
	trainCSV, testCSV := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	if err := writeSplitCSV(trainCSV, sp, sp.Train, 0); err != nil {
		return run, err
	}
	if err := writeSplitCSV(testCSV, sp, sp.Test, testIDOffset); err != nil {
		return run, err
	}
	addrs := make([]string, 6) // devkafka, coordinator gRPC and metrics, two trainers' metrics, the scorer's
	for i := range addrs {
		if addrs[i], err = procs.FreeAddr(); err != nil {
			return run, err
		}
	}
	broker, coordMetrics, scorerMetrics := addrs[0], addrs[2], addrs[5]
	names := strings.Join(sp.Set.Names, ",")
	rate := strconv.FormatFloat(c.rate, 'f', -1, 64)
	kafkaData := filepath.Join(dir, "devkafka-data")
	devkafka := procs.New(c.bin, dir, "devkafka", "devkafka", "--listen", broker, "--data-dir", kafkaData)
	// Only what the pipeline needs: every model and threshold flag stays
	// at its default, which is what this evaluation measures.
	coord := procs.New(c.bin, dir, "coordinator", "coordinator", "--features", names, "--listen", addrs[1],
		"--metrics-listen", coordMetrics, "--store", filepath.Join(dir, "coordinator.db"), "--checkpoint-interval", "1s")
	var trainers []*procs.Proc
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("trainer-%d", i)
		trainers = append(trainers, procs.New(c.bin, dir, id, "trainer", "run", "--source", "kafka", "--brokers", broker,
			"--format", "json-object", "--features", names, "--coordinator", addrs[1], "--id", id, "--metrics-listen", addrs[2+i]))
	}
	sc := procs.New(c.bin, dir, "scorer", "scorer", "run", "--brokers", broker, "--format", "json-object",
		"--coordinator", addrs[1], "--cache", filepath.Join(dir, "scorer.db"), "--scores-topic", scoresTopic, "--metrics-listen", scorerMetrics)
	replay := func(name, file, passes string) *procs.Proc {
		return procs.New(c.bin, dir, name, "loadgen", "--brokers", broker, "--topic", eventsTopic, "--input", file,
			"--format", "json-object", "--rate", rate, "--passes", passes, "--key-column", "id", "--label", "label", "--columns", names)
	}
	trainGen, testGen := replay("loadgen-train", trainCSV, "0"), replay("loadgen-test", testCSV, "1")
	services := append([]*procs.Proc{coord, sc}, trainers...)
	defer func() {
		stopErr := procs.StopAll(stopGrace, append(services, trainGen, testGen)...)
		if _, e := devkafka.Stop(stopGrace); e != nil {
			stopErr = errors.Join(stopErr, fmt.Errorf("devkafka: %w", e))
		}
		if stopErr != nil {
			fmt.Fprintf(os.Stderr, "eval: %s seed %d: stopping: %v\n", sp.Set.Name, sp.Seed, stopErr)
		}
		os.RemoveAll(kafkaData)
	}()
	if err := devkafka.Start(); err != nil {
		return run, err
	}
	if err := waitListening(ctx, broker, devkafka); err != nil {
		return run, err
	}
	if err := coord.Start(); err != nil {
		return run, err
	}
	if err := waitListening(ctx, addrs[1], coord); err != nil {
		return run, err
	}
	for _, p := range append(trainers, sc) {
		if err := p.Start(); err != nil {
			return run, err
		}
	}
	if err := trainGen.Start(); err != nil {
		return run, err
	}
	running := append([]*procs.Proc{devkafka, trainGen}, services...)

	// The first threshold, and the stream records it took.
	started := time.Now()
	var v0 float64
	err = poll(ctx, c.firstTimeout, running, func() bool {
		if t, ok := procs.Metric(coordMetrics, "recon_coordinator_threshold"); !ok || t <= 0 {
			return false
		}
		run.firstAfter = time.Since(started)
		v0, _ = procs.Metric(coordMetrics, "recon_coordinator_checkpoint_version")
		if n, ok := procs.Metric(coordMetrics, "recon_coordinator_first_threshold_records"); ok && n > 0 {
			run.records, run.recordsFrom = n, "recon_coordinator_first_threshold_records"
		} else if n, ok := procs.Metric(coordMetrics, "recon_coordinator_records_total"); ok {
			run.records, run.recordsFrom = n, "recon_coordinator_records_total"
		} else {
			run.records, run.recordsFrom = float64(produced(ctx, broker)), "recon-events end offsets"
		}
		return true
	})
	if errors.Is(err, errTimeout) {
		run.status = "no threshold"
		return run, nil
	}
	if err != nil {
		return run, fmt.Errorf("waiting for the first threshold: %w", err)
	}
	// A checkpoint written after the threshold holds it; wait for the
	// scorer to run it.
	var vt float64
	err = poll(ctx, stepTimeout, running, func() bool {
		v, ok := procs.Metric(coordMetrics, "recon_coordinator_checkpoint_version")
		vt = v
		return ok && v > v0
	})
	if err != nil {
		return run, fmt.Errorf("waiting for a checkpoint after version %.0f: %w", v0, err)
	}
	err = poll(ctx, stepTimeout, running, func() bool {
		v, ok := procs.Metric(scorerMetrics, "recon_scorer_model_version")
		return ok && v >= vt
	})
	if err != nil {
		return run, fmt.Errorf("waiting for the scorer to run version %.0f: %w", vt, err)
	}
	// Fix the model: no more records, no more gradients.
	if _, err := trainGen.Stop(stopGrace); errors.Is(err, procs.ErrKilled) {
		return run, fmt.Errorf("loadgen-train: %w", err)
	}
	if err := procs.StopAll(stopGrace, trainers...); err != nil {
		fmt.Fprintf(os.Stderr, "eval: %s seed %d: stopping the trainers: %v\n", sp.Set.Name, sp.Seed, err)
	}
	running = []*procs.Proc{devkafka, coord, sc}
	// The coordinator checkpoints only after rounds, the last one at most
	// a round deadline (5 s by default) after the trainers leave, when it
	// abandons the round they were in. Once its version has not moved for
	// longer than that the model is final. The scorer's version gauge
	// moves only with records scored, so whether the scorer runs the final
	// version is read from the test records' scores instead.
	last := -1.0
	lastAt := time.Now()
	err = poll(ctx, stepTimeout, running, func() bool {
		v, ok := procs.Metric(coordMetrics, "recon_coordinator_checkpoint_version")
		if !ok {
			return false
		}
		if v != last {
			last, lastAt = v, time.Now()
		}
		return time.Since(lastAt) >= finalQuiet
	})
	if err != nil {
		return run, fmt.Errorf("waiting for the coordinator's final checkpoint: %w", err)
	}
	run.final = uint64(last)
	if err := testGen.Start(); err != nil {
		return run, err
	}
	select {
	case <-testGen.Exited():
	case <-ctx.Done():
		return run, ctx.Err()
	}
	if err := testGen.ExitErr(); err != nil {
		return run, fmt.Errorf("loadgen-test: %w; see %s", err, testGen.Log)
	}
	run.join = newScoreJoin(sp.Test)
	if err := readScores(ctx, broker, c.scoresTimeout, run.join); err != nil {
		return run, err
	}
	return run, nil
}

// errTimeout is returned by poll when its time is up.
var errTimeout = errors.New("timed out")

// poll calls done every pollEvery until it reports true, for at most
// timeout; it fails as soon as one of alive has exited.
func poll(ctx context.Context, timeout time.Duration, alive []*procs.Proc, done func() bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if done() {
			return nil
		}
		for _, p := range alive {
			if !p.Running() {
				return fmt.Errorf("%s exited (%v); see %s", p.Name, p.ExitErr(), p.Log) //nolint:errorlint // nil after exit status 0, which %w would print as %!w(<nil>); printed, not branched on
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", errTimeout, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// waitListening waits up to 15 s for addr to accept connections.
func waitListening(ctx context.Context, addr string, p *procs.Proc) error {
	err := poll(ctx, 15*time.Second, []*procs.Proc{p}, func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("%s not listening on %s: %w", p.Name, addr, err)
	}
	return nil
}

// produced returns the records in the events topic (the sum of its
// partitions' end offsets; -1 when the broker does not answer).
func produced(ctx context.Context, broker string) int64 {
	a := stream.Security{}.Admin([]string{broker})
	defer a.Close()
	prog, err := a.GroupProgress(ctx, "recon-trainer", eventsTopic)
	if err != nil {
		return -1
	}
	var n int64
	for _, p := range prog {
		n += p.End
	}
	return n
}

// readScores reads the scores topic from its start into j until j has
// every test record's score or timeout has passed (not an error: the
// missing ones are counted).
func readScores(ctx context.Context, broker string, timeout time.Duration, j *scoreJoin) error {
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: []string{broker}, Topic: scoresTopic,
		Group: "recon-eval-" + strconv.FormatInt(time.Now().UnixNano(), 36), StartFirst: true, MaxWait: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !j.complete() {
		b, err := rd.Batch(rctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return nil // timed out: what is missing is reported
		}
		for _, m := range b {
			j.add(string(m.Key), m.Value)
		}
	}
	return nil
}

// scoreJoin collects the newest score of each test record by key.
type scoreJoin struct {
	pos  map[string]int // record key -> position in the split's Test
	got  []scorer.ScoreRecord
	have []bool
	n    int // positions with a score
}

func newScoreJoin(test []int) *scoreJoin {
	j := &scoreJoin{pos: make(map[string]int, len(test)), got: make([]scorer.ScoreRecord, len(test)), have: make([]bool, len(test))}
	for i, r := range test {
		j.pos[strconv.Itoa(testIDOffset+r)] = i
	}
	return j
}

// add keeps the score record value if key is a test record's; a later one
// replaces an earlier.
func (j *scoreJoin) add(key string, value []byte) {
	i, ok := j.pos[key]
	if !ok {
		return
	}
	var s scorer.ScoreRecord
	if json.Unmarshal(value, &s) != nil {
		return
	}
	if !j.have[i] {
		j.have[i] = true
		j.n++
	}
	j.got[i] = s
}

func (j *scoreJoin) complete() bool { return j.n == len(j.have) }

// collect returns the scores, alert flags and labels of the test records
// that have a score, how many have none and how many of the scores are by
// a checkpoint other than version final.
func (j *scoreJoin) collect(labels []bool, final uint64) (scores []float64, alerts, lab []bool, missing, stale int) {
	for i, ok := range j.have {
		if !ok {
			missing++
			continue
		}
		scores = append(scores, j.got[i].Score)
		alerts = append(alerts, j.got[i].Alert)
		lab = append(lab, labels[i])
		if j.got[i].Version != final {
			stale++
		}
	}
	return scores, alerts, lab, missing, stale
}

// writeSplitCSV writes rows idx of the split's set as CSV with the header
// id,<feature names>,label; a row's id is idOffset plus its index in the set.
func writeSplitCSV(path string, sp adbench.Split, idx []int, idOffset int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	p := sp.Set.Width()
	w.WriteString("id," + strings.Join(sp.Set.Names, ",") + ",label\n")
	for _, r := range idx {
		w.WriteString(strconv.Itoa(idOffset + r))
		for _, v := range sp.Set.X[r*p : (r+1)*p] {
			w.WriteByte(',')
			w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		}
		if sp.Set.Anomaly[r] {
			w.WriteString(",1\n")
		} else {
			w.WriteString(",0\n")
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// printStream prints one row per set (means over seeds; the stream's over
// the seeds that reached a threshold) and a mean row.
func printStream(sets []*adbench.Set, splits []adbench.Split, rows []streamResult, seeds int) {
	from := "recon_coordinator_records_total"
	for _, r := range rows {
		if r.recordsFrom != "" {
			from = r.recordsFrom
		}
	}
	fmt.Printf("streaming, contaminated protocol, %d seeds: the binaries on devkafka at their defaults (stream ROC-AUC, PR-AUC;\n"+
		"offline fit, IForest and KNN ROC-AUC on the same split; FAR and recall at the scorer's alerts; IForest's recall at that FAR;\n"+
		"stream records behind the first threshold (%s); test records with no score, and scored by other than the final checkpoint)\n", seeds, from)
	const hdr = "  %-20s %7s %7s %7s %7s %7s %7s %7s %7s %8s %7s %7s\n"
	fmt.Printf(hdr, "set", "stream", "pr", "offline", "iforest", "knn", "far", "recall", "if-rec", "records", "missing", "stale")
	var means [][11]float64
	outside, low := 0, 0
	var outsideNames, chanceNames []string
	chanceAll := 1.0
	for k, s := range sets {
		rs := rows[k*seeds : (k+1)*seeds]
		var m [11]float64
		var notes []string
		for j := range m {
			var vals []float64
			for _, r := range rs {
				v := r.vec()[j]
				if j >= 2 && j <= 4 || r.status == "" {
					vals = append(vals, v)
				}
			}
			m[j] = nanMean(vals)
		}
		for i, r := range rs {
			if r.status != "" {
				notes = append(notes, fmt.Sprintf("seed %d: %s", splits[k*seeds+i].Seed, r.status))
			}
		}
		means = append(means, m)
		fmt.Printf("  %-20s %s %s %s %s %s %s %s %s %s %s %s", s.Name, f7(m[0]), f7(m[1]), f7(m[2]), f7(m[3]), f7(m[4]),
			f7(m[5]), f7(m[6]), f7(m[7]), f8r(m[8]), f7r(m[9]), f7r(m[10]))
		if len(notes) > 0 {
			fmt.Printf("   (%s)", strings.Join(notes, "; "))
		}
		fmt.Println()
		share := 0
		for _, a := range s.Anomaly {
			if a {
				share++
			}
		}
		if float64(share) < 0.2*float64(s.Rows()) {
			low++
			normals := 0
			for _, r := range rs {
				if r.status == "" {
					normals += r.normals
				}
			}
			p := bandChance(normals, calib.DefaultAlertRate, farLow, farHigh)
			chanceAll *= p
			if p < 0.95 {
				chanceNames = append(chanceNames, fmt.Sprintf("%s %.2f (%d normal rows)", s.Name, p, normals))
			}
			switch {
			case math.IsNaN(m[5]):
				outside++
				outsideNames = append(outsideNames, s.Name+" no FAR")
			case m[5] < farLow || m[5] > farHigh:
				outside++
				outsideNames = append(outsideNames, fmt.Sprintf("%s %.4f", s.Name, m[5]))
			}
		}
	}
	var mean [11]float64
	for j := range mean {
		var vals []float64
		for _, m := range means {
			vals = append(vals, m[j])
		}
		mean[j] = nanMean(vals)
	}
	fmt.Printf("  %-20s %s %s %s %s %s %s %s %s %s %s %s\n", "mean", f7(mean[0]), f7(mean[1]), f7(mean[2]), f7(mean[3]), f7(mean[4]),
		f7(mean[5]), f7(mean[6]), f7(mean[7]), f8r(mean[8]), f7r(mean[9]), f7r(mean[10]))
	fmt.Printf("  stream FAR outside [%g, %g] on %d of %d sets with < 20%% anomalies", farLow, farHigh, outside, low)
	if outside > 0 {
		fmt.Printf(" (%s)", strings.Join(outsideNames, ", "))
	}
	fmt.Println()
	// How much of that is chance: a threshold that let exactly the alert
	// rate of normal records through would still see a binomial count of
	// them alert among the few normal test rows of a small set.
	fmt.Printf("  a threshold letting exactly %g of normal rows through lands in that band with probability %.2f on all %d sets",
		calib.DefaultAlertRate, chanceAll, low)
	if len(chanceNames) > 0 {
		fmt.Printf("; below 0.95 on %s", strings.Join(chanceNames, ", "))
	}
	fmt.Print("\n\n")
}

// farLow and farHigh bound the false-alarm rate the streaming eval expects
// at the default alert rate on sets with under 20% anomalies.
const (
	farLow  = 0.001
	farHigh = 0.02
)

// bandChance returns the probability that, of n normal rows each alerting
// with probability rate, a share in [lo, hi] alerts: how often a threshold
// with exactly that false-alarm rate would be seen to hold the band on n
// rows. It is 0 for no rows.
func bandChance(n int, rate, lo, hi float64) float64 {
	if n == 0 {
		return 0
	}
	b := distuv.Binomial{N: float64(n), P: rate}
	kLo, kHi := math.Ceil(lo*float64(n)-1e-9), math.Floor(hi*float64(n)+1e-9)
	if kLo > kHi {
		return 0
	}
	p := b.CDF(kHi)
	if kLo > 0 {
		p -= b.CDF(kLo - 1)
	}
	return p
}

// vec returns the table's columns: stream ROC and PR, offline, IForest and
// KNN ROC, FAR, recall, IForest recall, records, missing, stale.
func (r streamResult) vec() [11]float64 {
	return [11]float64{r.roc, r.pr, r.offRoc, r.ifRoc, r.knnRc, r.far, r.recall, r.ifRecall, r.records, float64(r.missing), float64(r.stale)}
}

// nanMean returns the mean of the values that are not NaN (NaN for none).
func nanMean(vals []float64) float64 {
	var sum float64
	n := 0
	for _, v := range vals {
		if !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

func f7(v float64) string {
	if math.IsNaN(v) {
		return fmt.Sprintf("%7s", "-")
	}
	return fmt.Sprintf("%7.4f", v)
}

func f7r(v float64) string {
	if math.IsNaN(v) {
		return fmt.Sprintf("%7s", "-")
	}
	return fmt.Sprintf("%7.0f", v)
}

func f8r(v float64) string {
	if math.IsNaN(v) {
		return fmt.Sprintf("%8s", "-")
	}
	return fmt.Sprintf("%8.0f", v)
}
