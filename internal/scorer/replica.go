package scorer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/kernels"
	"github.com/recon-ad/recon/internal/summary"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// ReplicaConfig wires one scorer replica. DefaultReplicaConfig has the
// defaults; in a config built field by field, zero Group, TopK, MaxBatch,
// MaxWait, StuckAfter, DrainTimeout, CommitGiveUp and LagEvery take theirs.
type ReplicaConfig struct {
	Brokers     []string      // bootstrap addresses
	Topic       string        // records to score
	Group       string        // consumer group
	AlertsTopic string        // one JSON alert per anomalous record
	DLQTopic    string        // undecodable or invalid records
	ScoresTopic string        // every score, when set
	ID          string        // names the replica in score records (zero: host name and process id)
	Format      stream.Format // record format
	TopK        int           // features listed per alert
	MaxBatch    int           // records per batch
	MaxWait     time.Duration // batch fill wait
	// StuckAfter is how long a partition of the topic may go without its
	// committed offset moving while records wait in it before the replica
	// rejoins the group to have it reassigned (negative: never).
	StuckAfter time.Duration
	// Security is how the replica connects to Kafka (zero: plaintext).
	Security stream.Security
	// DrainTimeout bounds how long a stopping replica keeps publishing and
	// committing the batch in hand.
	DrainTimeout time.Duration
	// CommitGiveUp is how long offset commits may keep failing while the
	// replica runs before Run returns an error (negative, the default: never; no outage
	// ends a replica). Meanwhile each failure is logged and counted, the
	// replica is not ready after readyCommitFailing, and scoring goes on:
	// the records are re-delivered, never lost.
	CommitGiveUp time.Duration
	// Coordinator streams new checkpoints; nil scores with the cached one only.
	Coordinator grpc.ClientConnInterface
	// Cache is the replica's own checkpoint store: it starts from it when
	// the coordinator is unreachable.
	Cache *checkpoint.Store
	Log   *slog.Logger // where checkpoint swaps and retries are logged
	// Metrics, when set, counts the replica's work.
	Metrics *Metrics
	// LagEvery is how often the group's lag is read from the brokers (and
	// a log that went back looked for).
	LagEvery time.Duration
	// Sinks are optional HTTP alert sinks (Alertmanager, webhooks) that
	// must acknowledge a batch's alerts, too, before it is committed
	// (zero: none).
	Sinks SinkConfig
}

// DefaultReplicaConfig returns the defaults, the values scorer run's flags
// start from; the cache, log, metrics and coordinator are the caller's.
func DefaultReplicaConfig() ReplicaConfig {
	return ReplicaConfig{
		Brokers: []string{"127.0.0.1:9092"}, Topic: "recon-events", Group: "recon-scorer",
		AlertsTopic: "recon-alerts", DLQTopic: "recon-dlq", Format: stream.JSONArray,
		TopK: 3, MaxBatch: 2000, MaxWait: stream.DefaultMaxWait, StuckAfter: 20 * time.Second,
		DrainTimeout: 3 * time.Second, CommitGiveUp: -1, LagEvery: 5 * time.Second,
		Sinks: SinkConfig{Timeout: DefaultSinkTimeout, ResolveTimeout: DefaultResolveTimeout},
	}
}

// ScoreRecord is the JSON value of a scores-topic record (key: the source
// record's key): one per scored record.
type ScoreRecord struct {
	ID        string  `json:"id"`        // "topic/partition/offset" of the source record, as in alerts
	Score     float64 `json:"score"`     // its score
	Threshold float64 `json:"threshold"` // the threshold it was compared with (0: none yet)
	Alert     bool    `json:"alert"`     // whether it raised an alert
	Version   uint64  `json:"version"`   // checkpoint version that scored it
	Scorer    string  `json:"scorer"`    // the replica that scored it (ReplicaConfig.ID)
}

// Replica consumes records, scores them with the latest checkpoint and
// produces alerts, dead letters and scores; it commits a batch's offsets only
// after all of that batch's output is acknowledged. With no model at all it
// consumes nothing.
type Replica struct {
	cfg     ReplicaConfig
	model   atomic.Pointer[ScoringModel]
	kernels *kernels.Chooser // times the kernel sets on each new model spec
	// Processed counts records scored or dead-lettered and committed.
	Processed atomic.Int64
	commits   commitFailures                // used by the publisher goroutine only
	reader    atomic.Pointer[stream.Reader] // while consuming
	// commitsFailing is when the current run of failed commits began
	// (UnixNano; 0: commits work).
	commitsFailing atomic.Int64
	pub            atomic.Pointer[publisher] // while consuming
	// lineage is the model lineage of the checkpoint in use ("": unknown);
	// set before the watch starts, then by the watch goroutine only.
	lineage string
	sinks   []*httpSink // the HTTP alert sinks (none: Kafka only)
}

// NewReplica returns a replica, loading the newest cached checkpoint if any.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.AlertsTopic == "" || cfg.DLQTopic == "" || cfg.Cache == nil || cfg.Log == nil {
		return nil, errors.New("scorer: brokers, topic, alerts and dead-letter topics, cache and log are required")
	}
	d := DefaultReplicaConfig()
	if cfg.Group == "" {
		cfg.Group = d.Group
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if cfg.TopK == 0 {
		cfg.TopK = d.TopK
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = d.MaxBatch
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.CommitGiveUp == 0 {
		cfg.CommitGiveUp = d.CommitGiveUp
	}
	if cfg.StuckAfter == 0 {
		cfg.StuckAfter = d.StuckAfter
	}
	if cfg.LagEvery == 0 {
		cfg.LagEvery = d.LagEvery
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Sinks.Group == "" {
		cfg.Sinks.Group = cfg.Group
	}
	sinks, err := newSinks(cfg.Sinks, cfg.Metrics, cfg.Log)
	if err != nil {
		return nil, fmt.Errorf("scorer: %w", err)
	}
	r := &Replica{cfg: cfg, kernels: kernels.NewChooser(cfg.Log, ae.TaskScore, cfg.Metrics.kernels), sinks: sinks}
	if c, err := cfg.Cache.Latest(); err == nil {
		m, err := NewScoringModel(c)
		if err != nil {
			return nil, err
		}
		r.setModel(m)
		r.lineage = c.GetLineage()
		cfg.Log.Info("scoring with the cached checkpoint", "version", m.Version, "lineage", c.GetLineage())
	} else if !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, err
	}
	return r, nil
}

// Readiness bounds: output failing or fetches failing for longer than
// these make the replica not ready.
const (
	readyOutputFailing = 5 * time.Second
	readyFetchFailing  = 15 * time.Second
	readyCommitFailing = 30 * time.Second
)

// Ready returns nil when the replica is doing its job: it has a model, it
// is consuming, its fetches work and its output is being acknowledged; or
// else what is wrong.
func (r *Replica) Ready() error {
	if r.model.Load() == nil {
		if r.cfg.Coordinator == nil {
			return errors.New("no model: the cache is empty and no coordinator is configured, so none can come")
		}
		return errors.New("no model yet: waiting for the coordinator's first checkpoint")
	}
	rd, pub := r.reader.Load(), r.pub.Load()
	if rd == nil || pub == nil {
		return errors.New("not consuming yet")
	}
	if since, why := pub.failing(); !since.IsZero() && time.Since(since) > readyOutputFailing {
		return fmt.Errorf("writing output has failed for %v: %s", time.Since(since).Round(time.Second), why)
	}
	for _, s := range r.sinks {
		if since, why := s.failing(); !since.IsZero() && time.Since(since) > readyOutputFailing {
			return fmt.Errorf("sending alerts to sink %s has failed for %v: %s", s.name, time.Since(since).Round(time.Second), why)
		}
	}
	if ns := r.commitsFailing.Load(); ns != 0 && time.Since(time.Unix(0, ns)) > readyCommitFailing {
		return fmt.Errorf("committing offsets has failed for %v (records are scored, and re-delivered on a restart)", time.Since(time.Unix(0, ns)).Round(time.Second))
	}
	if since, why := rd.FetchFailing(); !since.IsZero() && time.Since(since) > readyFetchFailing {
		return fmt.Errorf("fetching records has failed for %v: %s", time.Since(since).Round(time.Second), why)
	}
	return nil
}

// setModel swaps m in; the version gauge follows at once, records or not.
// A model of a new spec has the kernel sets timed on it first.
func (r *Replica) setModel(m *ScoringModel) {
	r.kernels.Choose(m.loaded.Model.Spec(), 256)
	r.model.Store(m)
	r.cfg.Metrics.version.Set(float64(m.Version))
	r.cfg.Metrics.threshold.Set(m.Threshold)
}

// Version returns the version scored with (0: none yet).
func (r *Replica) Version() uint64 {
	if m := r.model.Load(); m != nil {
		return m.Version
	}
	return 0
}

// Run scores until ctx ends.
func (r *Replica) Run(ctx context.Context) error {
	if r.cfg.Coordinator != nil {
		go r.watch(ctx)
	} else if r.model.Load() == nil {
		r.cfg.Log.Error("no model: the cache holds no checkpoint and no coordinator is configured, so this replica can never score (set --coordinator)")
	}
	// No model, no consumption: records wait in Kafka.
	for r.model.Load() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	return r.consume(ctx)
}

// consume scores as a member of the group until ctx ends or an error.
// Publishing and committing the batches in hand go on for DrainTimeout
// after ctx ends (work, below).
func (r *Replica) consume(ctx context.Context) error {
	if err := r.checkTopics(ctx); err != nil {
		return err
	}
	rd, err := stream.NewReader(stream.ReaderConfig{Brokers: r.cfg.Brokers, Topic: r.cfg.Topic, Group: r.cfg.Group,
		MaxBatch: r.cfg.MaxBatch, MaxWait: r.cfg.MaxWait, StartFirst: true, Logger: r.cfg.Log, Security: r.cfg.Security})
	if err != nil {
		return err
	}
	defer rd.Close()
	r.reader.Store(rd)
	defer r.reader.Store(nil)
	rd.Watch(r.cfg.StuckAfter, nil)                        // rejoins over a stuck partition
	rd.Monitor(stream.MonitorConfig{Every: r.cfg.LagEvery, // lag from the brokers, and logs that went back
		Report: func(prog map[int]stream.PartitionProgress, err error) {
			if err == nil {
				r.cfg.Metrics.setLag(prog)
			}
		},
		WentBack: func(int) { r.cfg.Metrics.offsetResets.Inc() }})
	writer := func(topic string) (*stream.Writer, error) {
		// A batch's whole output goes in one call: nothing more is coming
		// to wait for, so the writer's batch timer is kept tiny.
		return stream.NewWriter(stream.WriterConfig{Brokers: r.cfg.Brokers, Topic: topic, Logger: r.cfg.Log, BatchTimeout: 200 * time.Microsecond,
			Security: r.cfg.Security})
	}
	alerts, err := writer(r.cfg.AlertsTopic)
	if err != nil {
		return err
	}
	defer alerts.Close()
	dlq, err := writer(r.cfg.DLQTopic)
	if err != nil {
		return err
	}
	defer dlq.Close()
	var scores *stream.Writer
	if r.cfg.ScoresTopic != "" {
		if scores, err = writer(r.cfg.ScoresTopic); err != nil {
			return err
		}
		defer scores.Close()
	}
	pub := &publisher{alerts: sink{outAlerts, alerts}, dlq: sink{outDeadLetters, dlq}, scores: sink{outScores, scores},
		metrics: r.cfg.Metrics, log: r.cfg.Log}
	r.pub.Store(pub)
	// Stopping: the batch in hand is still published and committed, for
	// up to DrainTimeout after ctx ends; only then is it abandoned (and
	// re-delivered to the group).
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		select {
		case <-time.After(r.cfg.DrainTimeout):
			cancelWork()
		case <-work.Done():
		}
	}()
	// Two stages: this loop fetches and scores batch k+1 while a publisher
	// goroutine writes batch k's output and then commits it, strictly in
	// order, so a crash still re-delivers everything not committed.
	type job struct {
		msgs    []stream.Record
		out     Output
		model   *ScoringModel
		scoring time.Duration
	}
	jobs := make(chan job, 1)
	published := make(chan error, 1) // the publisher's result, once jobs is closed
	failed := make(chan struct{})    // closed when the publisher fails
	// The batches' arrays go round: the publisher hands each back once it
	// is done with the batch (its Scores point into it), cleared so that
	// it keeps no records alive; one is fetched into, one waits, one is
	// published.
	free := make(chan []stream.Record, 3)
	recycle := func(msgs []stream.Record) {
		clear(msgs)
		select {
		case free <- msgs[:0]:
		default:
		}
	}
	go func() {
		var err error
		for j := range jobs {
			if err != nil {
				continue // a failed stage drops the rest, uncommitted
			}
			if err = r.publish(work, pub, j.out, j.model); err != nil {
				close(failed)
				continue
			}
			r.cfg.Metrics.observe(j.out, j.msgs, j.scoring, time.Now())
			// A failed commit loses nothing: the output is out, and the
			// records are re-delivered (scored again, alerts with the
			// same ids) unless a later commit on their partitions covers
			// them. It happens when the group's coordinator connection
			// breaks (a broker restart) or the generation changes, and
			// kafka-go rejoins by itself; so it is reported, not fatal,
			// whether running or stopping. Only a run of failures longer
			// than CommitGiveUp while running is: publishing on and on
			// while every restart re-delivers more would hide it.
			if cerr := rd.Commit(work, j.msgs...); cerr != nil {
				r.cfg.Metrics.commitFailures.Inc()
				r.cfg.Metrics.commitFailing.Set(1)
				giveUp := r.cfg.CommitGiveUp
				if ctx.Err() != nil {
					giveUp = 0
				}
				r.commitsFailing.CompareAndSwap(0, time.Now().UnixNano())
				if err = r.commits.failed(r.cfg.Log, len(j.msgs), cerr, giveUp); err != nil {
					close(failed)
				}
				continue
			}
			r.commits.succeeded(r.cfg.Log)
			r.commitsFailing.Store(0)
			r.cfg.Metrics.commitFailing.Set(0)
			r.Processed.Add(int64(len(j.msgs)))
			recycle(j.msgs)
		}
		if work.Err() != nil {
			err = nil // stopping: not committed, the next member scores these again
		}
		published <- err
	}()
	var b *Parallel
	var share decodeShare // across batches and model swaps
	var loopErr error
	for ctx.Err() == nil {
		var buf []stream.Record
		select {
		case buf = <-free:
		default:
		}
		msgs, err := rd.BatchInto(ctx, buf) // waits out outages: an error only when stopping
		if err != nil {
			if ctx.Err() == nil {
				loopErr = fmt.Errorf("consume %s: %w", r.cfg.Topic, err)
			}
			break
		}
		if len(msgs) == 0 {
			recycle(msgs)
			continue
		}
		if m := r.model.Load(); b == nil || b.Model() != m {
			if b, err = NewParallel(runtime.GOMAXPROCS(0), m, r.cfg.Format, r.cfg.TopK); err != nil {
				loopErr = err
				break
			}
		}
		t0 := time.Now()
		out := b.Process(msgs, t0)
		share.observe(r.cfg.Log, r.cfg.Format, msgs, out, t0)
		j := job{msgs: msgs, out: out, model: b.Model(), scoring: time.Since(t0)}
		select {
		case jobs <- j:
			continue
		case <-failed:
		}
		break
	}
	close(jobs)
	if err := <-published; err != nil {
		return err
	}
	return loopErr
}

// publish writes a batch's output through pub, retrying what failed until
// it is acknowledged or ctx ends.
func (r *Replica) publish(ctx context.Context, pub *publisher, out Output, m *ScoringModel) error {
	var sc []stream.Record
	if pub.scores.w != nil {
		sc = scoreMessages(out.Scores, m, r.cfg.ID)
	}
	if len(r.sinks) == 0 || len(out.Alerts) == 0 {
		return pub.publish(ctx, out.Alerts, out.DeadLetters, sc)
	}
	// The HTTP sinks are sent to while Kafka is written; the dead letters
	// of the alerts they refused follow, before the commit.
	var refused []stream.Record
	var sinkErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		refused, sinkErr = deliverSinks(ctx, r.sinks, out.Alerts)
	}()
	err := pub.publish(ctx, out.Alerts, out.DeadLetters, sc)
	<-done
	if err = errors.Join(err, sinkErr); err != nil || len(refused) == 0 {
		return err
	}
	if err := pub.publish(ctx, nil, refused, nil); err != nil {
		return err
	}
	r.cfg.Metrics.deadLetters.WithLabelValues(ReasonSinkRefused).Add(float64(len(refused)))
	return nil
}

// scoreMessages returns the scores-topic records of scores, made with m
// by the replica named scorer: one JSON ScoreRecord each, their values
// cut from 64 KiB buffers.
func scoreMessages(scores []Scored, m *ScoringModel, scorer string) []stream.Record {
	msgs := make([]stream.Record, len(scores))
	quoted := appendString(nil, scorer)
	var buf, id []byte
	for i, s := range scores {
		id = appendRecordID(id[:0], s.Msg.Topic, s.Msg.Partition, s.Msg.Offset)
		rec := ScoreRecord{ID: unsafeString(id), Score: s.Score, Threshold: m.Threshold, Alert: s.Alert, Version: m.Version, Scorer: scorer}
		if need := 160 + len(id) + len(quoted); cap(buf)-len(buf) < need {
			buf = make([]byte, 0, max(64<<10, need))
		}
		start := len(buf)
		var ok bool
		if buf, ok = appendScore(buf, &rec, quoted); !ok {
			v, _ := json.Marshal(rec) // a score is finite (non-finite ones are dead-lettered)
			buf = append(buf[:start], v...)
		}
		msgs[i] = stream.Record{Key: s.Msg.Key, Value: buf[start:len(buf):len(buf)], Headers: s.Msg.Headers}
	}
	return msgs
}

// checkTopics refuses to start when a topic the replica reads or writes
// does not exist: a misspelt name would otherwise be auto-created empty
// (input) or stall the first batch (output).
func (r *Replica) checkTopics(ctx context.Context) error {
	topics := []string{r.cfg.Topic, r.cfg.AlertsTopic, r.cfg.DLQTopic}
	if r.cfg.ScoresTopic != "" {
		topics = append(topics, r.cfg.ScoresTopic)
	}
	admin := r.cfg.Security.Admin(r.cfg.Brokers)
	defer admin.Close()
	wait := backoff.Backoff{Max: 30 * time.Second}
	for {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		missing, err := admin.MissingTopics(qctx, topics...)
		cancel()
		if err == nil {
			if len(missing) > 0 {
				return fmt.Errorf("%w: %s on %s (create them, or check --topic, --alerts-topic, --dlq-topic and --scores-topic)",
					ErrMissingTopic, strings.Join(missing, ", "), strings.Join(r.cfg.Brokers, ","))
			}
			return nil
		}
		if ctx.Err() != nil {
			return nil // stopping: consume ends at once
		}
		// The brokers are down: wait for them as the reader would, saying
		// so once, and again each 30 s.
		if !wait.Retrying() || wait.AtMax() {
			r.cfg.Log.Warn("cannot reach Kafka; retrying with backoff (checking the topics at start)", "kind", "unreachable", "brokers", strings.Join(r.cfg.Brokers, ","), "err", err)
		}
		if wait.Wait(ctx) != nil {
			return nil
		}
	}
}

// ErrMissingTopic is the start refusing topics that do not exist.
var ErrMissingTopic = errors.New("topics do not exist")

// commitFailures follows failed commits across memberships: it reports
// the first of a run at once, then at most one line per commitReportEvery
// with the counts since, and one line when commits work again.
type commitFailures struct {
	first, last      time.Time // the run's start (zero: no run) and the last line
	batches, records int       // not reported yet
}

const commitReportEvery = 5 * time.Second

// failed counts a failure; when the run has lasted longer than giveUp
// (> 0) it returns the error to stop with.
func (c *commitFailures) failed(log *slog.Logger, records int, err error, giveUp time.Duration) error {
	now := time.Now()
	if c.first.IsZero() {
		c.first = now
	}
	c.batches++
	c.records += records
	if now.Sub(c.last) >= commitReportEvery {
		log.Warn("committing scored records failed; Kafka re-delivers them unless a later commit covers them",
			"batches", c.batches, "records", c.records, "failing_for", now.Sub(c.first).Round(time.Millisecond), "err", err)
		c.last, c.batches, c.records = now, 0, 0
	}
	if giveUp > 0 && now.Sub(c.first) > giveUp {
		return fmt.Errorf("offset commits have failed for %v (output published, records re-delivered on restart): %w",
			now.Sub(c.first).Round(time.Second), err)
	}
	return nil
}

// succeeded ends a run of failures.
func (c *commitFailures) succeeded(log *slog.Logger) {
	if c.first.IsZero() {
		return
	}
	log.Info("committing scored records works again", "failed_for", time.Since(c.first).Round(time.Millisecond),
		"batches_not_reported", c.batches, "records_not_reported", c.records)
	*c = commitFailures{}
}

// lineageChange says what a checkpoint from the coordinator that does not
// continue the model in use means, "" when it does (or cannot be told):
// another lineage is a coordinator that started over on a new store; the
// same lineage at a lower version, one whose store went back (restored
// from a backup). Either way the coordinator's model is the one trained
// from now on, so the scorer switches to it.
func (r *Replica) lineageChange(c *reconv1.Checkpoint) (change, msg string) {
	in := r.Version()
	switch {
	case in == 0:
		return "", ""
	case c.GetLineage() != "" && r.lineage != "" && c.GetLineage() != r.lineage:
		return changeNewLineage, "the coordinator started over: its checkpoints are of a new model lineage, numbered afresh; switching to them"
	case c.GetLineage() != "" && c.GetLineage() == r.lineage && c.GetVersion() < in:
		return changeWentBack, "the coordinator went back: its newest checkpoint is older than the one in use (a store restored from a backup?); switching to it"
	}
	return "", ""
}

// The kinds of lineage change, the change label of
// recon_scorer_lineage_changes_total and the change attribute of its
// warning.
const (
	changeNewLineage = "new_lineage" // the coordinator started over on a new store
	changeWentBack   = "went_back"   // its store went back within the lineage
)

// watch follows the coordinator's checkpoints, caching each and swapping it
// in between batches; it reconnects with backoff.
func (r *Replica) watch(ctx context.Context) {
	client := reconv1.NewCoordinatorClient(r.cfg.Coordinator)
	var wait backoff.Backoff
	taken := summary.Line{Every: 5 * time.Minute} // one info line per 5 min, each checkpoint at debug level
	for ctx.Err() == nil {
		stream, err := client.WatchCheckpoints(ctx, &reconv1.WatchCheckpointsRequest{})
		if err == nil {
			for {
				c, err2 := stream.Recv()
				if err2 != nil {
					err = err2
					break
				}
				wait.Reset()
				change, msg := r.lineageChange(c)
				if change == "" && c.GetVersion() <= r.Version() {
					continue // within a lineage versions never go down
				}
				m, err2 := NewScoringModel(c)
				if err2 != nil {
					r.cfg.Log.Error("coordinator sent an unusable checkpoint", "version", c.GetVersion(), "err", err2)
					continue
				}
				put := r.cfg.Cache.Put
				if change != "" {
					put = r.cfg.Cache.Replace // the cached versions belong to another history
					r.cfg.Log.Warn(msg, "change", change, "version", c.GetVersion(), "in_use", r.Version(), "lineage", c.GetLineage(), "was", r.lineage)
					r.cfg.Metrics.lineageChanges.WithLabelValues(change).Inc()
				}
				if err2 := put(c); err2 != nil && !errors.Is(err2, checkpoint.ErrNotNewer) {
					r.cfg.Log.Warn("caching checkpoint", "version", c.GetVersion(), "err", err2)
				}
				r.setModel(m)
				r.lineage = c.GetLineage()
				r.cfg.Log.Debug("new checkpoint", "version", m.Version, "threshold", m.Threshold)
				if now := time.Now(); taken.Add(m.Version, now) {
					n, from, to := taken.Take(now)
					r.cfg.Log.Info("checkpoints taken", "count", n, "first", from, "newest", to, "threshold", m.Threshold, "next_line_in", taken.Every)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.cfg.Log.Warn("checkpoint watch ended; reconnecting", "err", err, "in", wait.Delay())
		if wait.Wait(ctx) != nil {
			return
		}
	}
}

// Threshold returns the threshold scored with (0: no model or none yet).
func (r *Replica) Threshold() float64 {
	if m := r.model.Load(); m != nil {
		return m.Threshold
	}
	return 0
}
