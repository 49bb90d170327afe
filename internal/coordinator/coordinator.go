// Package coordinator is the service that owns one model and trains it with
// trainer workers: it drives the round state machine (internal/round),
// averages workers' gradients and steps Adam, merges the warm-up feature
// statistics into the normalizer, merges held-out score sketches into the
// alert threshold, writes checkpoints to bbolt and streams them to
// subscribers. One goroutine (Run) owns the training loop; gRPC handlers
// only pass messages to it under the mutex.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/sketch"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// DefaultSpec holds the streaming defaults of the activations: tanh hidden
// and code layers as fit.Default, but a linear output. A bounded (tanh)
// output caps reconstructions at one standard deviation, so on a stream the
// ordinary records beyond it score high, the threshold rises and spikes go
// unseen (recall 0.62 against 1.00 in internal/scorer's spike test); the
// offline default keeps tanh, which ranks breast cancer's tumours better.
var DefaultSpec = ae.Spec{Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear}

// Threshold rules.
const (
	RuleRobust   = "robust"
	RuleQuantile = "quantile"
)

// Config is a coordinator's model and training rules.
type Config struct {
	Spec     ae.Spec  // the model (Input must be set)
	Features []string // feature names, in input order (optional)
	LR       float64  // Adam learning rate (default 1e-3)
	Seed     uint64   // parameter initialization (default 1)

	Batch         int     // records per worker per round (default 256)
	Holdout       float64 // fraction of each worker's records held out for the threshold (0: none, no threshold)
	SkipAnomalies bool    // workers skip training records scored above the threshold
	// ThresholdRule is how held-out scores set the threshold: "robust"
	// (default; Sigmas robust standard deviations of log score above the
	// median, insensitive to anomalies in the training stream) or
	// "quantile" (the Quantile of held-out scores, for clean streams).
	ThresholdRule string
	Sigmas        float64 // robust rule: log-scale robust standard deviations (default 4)
	Quantile      float64 // quantile rule: quantile of held-out scores (default 0.995)
	// WindowScores is how many of the newest held-out scores the threshold
	// is computed from (default 2000); they are kept as 8 blocks of
	// sketches, and the threshold moves when a block fills.
	WindowScores int
	// Settle gates the first threshold: it is set once the median held-out
	// score of the newest window is at least (1 - Settle) times that of the
	// window before it, that is once the model has stopped improving
	// quickly (default 0.03; negative: set it from the first full block).
	// Until then nothing alerts: a model still learning would mostly raise
	// false alarms.
	Settle float64

	WarmupRecords int // records each worker summarizes for the normalizer; 0 skips warm-up (identity normalizer)

	MinWorkers int           // gradients that complete a round at its deadline (default 1)
	Deadline   time.Duration // round deadline (default 5 s)
	Lease      time.Duration // silence after which a worker is dropped (default 3 x Deadline)

	CheckpointRounds   int           // checkpoint every this many rounds (default 1000; 0 with CheckpointInterval 0: only on stop)
	CheckpointInterval time.Duration // and at least this often while training (default 10 s)
	MaxRounds          uint64        // stop training after this round (0: never); for tests and benchmarks

	// OnRound, when set, is called (under the coordinator's lock) after each
	// applied round with its result and its duration from start to
	// completion: for benchmarks and tests.
	OnRound func(res *round.Result, d time.Duration)
}

func (c Config) withDefaults() Config {
	if c.LR == 0 {
		c.LR = 1e-3
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Batch == 0 {
		c.Batch = 256
	}
	if c.Quantile == 0 {
		c.Quantile = 0.995
	}
	if c.ThresholdRule == "" {
		c.ThresholdRule = RuleRobust
	}
	if c.Sigmas == 0 {
		c.Sigmas = 4
	}
	if c.WindowScores == 0 {
		c.WindowScores = 2000
	}
	if c.Settle == 0 {
		c.Settle = 0.03
	}
	if c.MinWorkers == 0 {
		c.MinWorkers = 1
	}
	if c.Deadline == 0 {
		c.Deadline = 5 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 3 * c.Deadline
	}
	if c.CheckpointRounds == 0 && c.CheckpointInterval == 0 {
		c.CheckpointRounds, c.CheckpointInterval = 1000, 10*time.Second
	}
	return c
}

// Validate reports whether the config can run (after defaults).
func (c Config) Validate() error {
	if _, err := ae.New(c.Spec); err != nil {
		return err
	}
	switch {
	case len(c.Features) != 0 && len(c.Features) != c.Spec.Input:
		return fmt.Errorf("%d feature names for input width %d", len(c.Features), c.Spec.Input)
	case c.LR <= 0:
		return fmt.Errorf("learning rate %v: must be positive", c.LR)
	case c.Batch < 1:
		return fmt.Errorf("batch %d: must be at least 1", c.Batch)
	case c.Holdout < 0 || c.Holdout >= 1:
		return fmt.Errorf("held-out fraction %v: must be in [0,1)", c.Holdout)
	case !(c.Quantile > 0 && c.Quantile < 1):
		return fmt.Errorf("quantile %v: must be in (0,1)", c.Quantile)
	case c.ThresholdRule != RuleRobust && c.ThresholdRule != RuleQuantile:
		return fmt.Errorf("threshold rule %q: want %s or %s", c.ThresholdRule, RuleRobust, RuleQuantile)
	case !(c.Sigmas > 0) || math.IsInf(c.Sigmas, 0):
		return fmt.Errorf("sigmas %v: must be positive", c.Sigmas)
	case c.WindowScores < blocksPerWindow:
		return fmt.Errorf("window of %d scores: must be at least %d", c.WindowScores, blocksPerWindow)
	case c.WarmupRecords < 0:
		return fmt.Errorf("warm-up records %d: must not be negative", c.WarmupRecords)
	}
	return nil
}

// Server is the coordinator. Create it with New, serve its gRPC methods and
// call Run.
type Server struct {
	reconv1.UnimplementedCoordinatorServer

	cfg     Config
	log     *slog.Logger
	store   *checkpoint.Store
	metrics *Metrics

	mu        sync.Mutex
	wake      chan struct{} // Run's doorbell: a gradient, join or leave arrived
	machine   *round.Machine
	model     *ae.Model
	opt       *ae.Adam
	norm      *ae.Normalizer // nil until warm-up ends
	warm      *ae.Normalizer // merging warm-up statistics
	warmFrom  map[string]bool
	sessions  map[string]*session
	blocks    []*ddsketch.DDSketch // closed blocks of held-out scores, oldest first
	block     *ddsketch.DDSketch   // the filling block
	roundSk   *ddsketch.DDSketch   // the open round's
	medians   []float64            // window median at each block close, for Settle
	threshold float64
	version   uint64
	latest    *reconv1.Checkpoint
	watchers  map[chan *reconv1.Checkpoint]struct{}
	lastCkAt  time.Time
	ckRound   uint64 // round of the last checkpoint
	stopped   bool
}

type session struct {
	id  string
	out chan *reconv1.CoordinatorMessage
}

// New builds a coordinator, resuming from the newest valid checkpoint in
// store when there is one (its spec must match cfg.Spec's shape).
func New(cfg Config, store *checkpoint.Store, log *slog.Logger, metrics *Metrics) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	s := &Server{cfg: cfg, log: log, store: store, metrics: metrics, wake: make(chan struct{}, 1),
		sessions: map[string]*session{}, watchers: map[chan *reconv1.Checkpoint]struct{}{}, warmFrom: map[string]bool{}}
	m, err := ae.New(cfg.Spec)
	if err != nil {
		return nil, err
	}
	s.model = m
	var startRound uint64
	latest, err := store.Latest()
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		m.Init(rand.New(rand.NewPCG(cfg.Seed, 0xc0)))
		s.opt = ae.NewAdam(m.NumParams(), cfg.LR)
		if cfg.WarmupRecords == 0 {
			s.norm = ae.NewNormalizer(cfg.Spec.Input) // identity: no statistics
		} else {
			s.warm = ae.NewNormalizer(cfg.Spec.Input)
		}
		if s.version, err = store.NextVersion(); err != nil {
			return nil, err
		}
		s.version-- // NextVersion counts corrupt entries too: versions only grow
	case err != nil:
		return nil, err
	default:
		l, err := checkpoint.Load(latest)
		if err != nil {
			return nil, err
		}
		if l.Model.NumParams() != m.NumParams() || l.Model.Spec().Input != cfg.Spec.Input {
			return nil, fmt.Errorf("coordinator: checkpoint %d in %s is a different model (%d parameters) than configured (%d); use another store",
				latest.GetVersion(), store.Path(), l.Model.NumParams(), m.NumParams())
		}
		s.model = l.Model
		if a, ok := l.Optimizer.(*ae.Adam); ok {
			s.opt = a
			s.opt.LR = cfg.LR
		} else {
			s.opt = ae.NewAdam(m.NumParams(), cfg.LR)
		}
		s.norm = l.Normalizer
		if s.norm == nil {
			s.norm = ae.NewNormalizer(cfg.Spec.Input)
		}
		s.threshold = latest.GetThreshold()
		s.latest = latest
		startRound = latest.GetRound()
		if s.version, err = store.NextVersion(); err != nil {
			return nil, err
		}
		s.version--
		s.ckRound = startRound
		log.Info("resumed from checkpoint", "version", latest.GetVersion(), "round", startRound, "threshold", s.threshold)
	}
	s.machine, err = round.New(round.Config{NumParams: m.NumParams(), MinWorkers: cfg.MinWorkers, Deadline: cfg.Deadline, Lease: cfg.Lease}, startRound)
	if err != nil {
		return nil, err
	}
	s.metrics.version.Set(float64(s.version))
	return s, nil
}

func (s *Server) ring() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Params returns a copy of the current parameters.
func (s *Server) Params() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.model.Params()...)
}

// Status is a snapshot of the coordinator for tests and logs.
type Status struct {
	Round     uint64               // current (or last) round number
	Version   uint64               // newest checkpoint version written
	Threshold float64              // current alert threshold (0: none yet)
	Workers   []string             // joined workers, sorted
	Training  bool                 // warm-up is over
	Rejected  map[round.Reason]int // rejected gradients by reason
}

// Status returns a snapshot.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.machine.Round()
	return Status{Round: r, Version: s.version, Threshold: s.threshold, Workers: s.machine.Workers(),
		Training: s.norm != nil, Rejected: s.machine.Rejected()}
}

// Run drives training until ctx ends (or MaxRounds), then writes a final
// checkpoint. It returns nil on a clean stop.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	s.lastCkAt = time.Now()
	s.mu.Unlock()
	tick := 50 * time.Millisecond
	timer := time.NewTimer(tick)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.stop()
		case <-s.wake:
		case <-timer.C:
		}
		done, err := s.step(time.Now())
		if err != nil {
			return err
		}
		if done {
			return s.stop()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(s.nextWake(time.Now(), tick))
	}
}

func (s *Server) nextWake(now time.Time, def time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, open := s.machine.Round(); open {
		if d := s.machine.Deadline().Sub(now); d > 0 && d < def {
			return d
		}
	}
	return def
}

// stop writes the final checkpoint and ends every session.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	var err error
	if s.norm != nil {
		r, _ := s.machine.Round()
		if r > s.ckRound || s.latest == nil {
			err = s.checkpointLocked(time.Now())
		}
	}
	for id, ss := range s.sessions {
		close(ss.out)
		delete(s.sessions, id)
	}
	for ch := range s.watchers {
		close(ch)
		delete(s.watchers, ch)
	}
	return err
}

// step advances the loop once: finish warm-up, complete or abandon the
// open round, start the next, checkpoint on schedule. It reports whether
// MaxRounds has been reached.
func (s *Server) step(now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.norm == nil {
		s.maybeEndWarmup()
		if s.norm == nil {
			return false, nil
		}
	}
	res, abandoned := s.machine.Tick(now)
	if res != nil {
		s.apply(res, now)
	}
	s.endExpired()
	if abandoned {
		r, _ := s.machine.Round()
		s.metrics.abandoned.Inc()
		s.log.Warn("round abandoned: too few gradients by its deadline", "round", r, "min_workers", s.cfg.MinWorkers)
	}
	if res != nil && s.cfg.CheckpointRounds > 0 && res.Round-s.ckRound >= uint64(s.cfg.CheckpointRounds) ||
		s.cfg.CheckpointInterval > 0 && now.Sub(s.lastCkAt) >= s.cfg.CheckpointInterval && s.latestRound() > s.ckRound {
		if err := s.checkpointLocked(now); err != nil {
			return false, err
		}
	}
	if res != nil && s.cfg.MaxRounds > 0 && res.Round >= s.cfg.MaxRounds {
		return true, nil
	}
	if _, open := s.machine.Round(); !open {
		if r, ok := s.machine.Start(now); ok {
			s.broadcastRound(r)
		}
	}
	s.metrics.members.Set(float64(s.machine.Len()))
	return false, nil
}

// endExpired ends the sessions of workers whose lease ran out (silent for
// Lease, say blocked on an unreachable broker): the round machine no
// longer counts them, so they must rejoin to take part again, and ending
// the session makes them reconnect.
func (s *Server) endExpired() {
	for id := range s.sessions { // no allocation: it runs every step
		if !s.machine.Joined(id) {
			s.log.Warn("worker's lease expired: ending its session (it reconnects and rejoins)", "worker", id, "lease", s.cfg.Lease)
			s.endSession(id)
		}
	}
}

func (s *Server) latestRound() uint64 {
	r, open := s.machine.Round()
	if open && r > 0 {
		return r - 1
	}
	return r
}

// maybeEndWarmup freezes the normalizer once MinWorkers workers have sent
// their statistics (or every joined worker has, if more).
func (s *Server) maybeEndWarmup() {
	n := len(s.warmFrom)
	if n == 0 || n < s.cfg.MinWorkers {
		return
	}
	for _, id := range s.machine.Workers() {
		if !s.warmFrom[id] && n < s.machine.Len() {
			return
		}
	}
	s.norm = s.warm
	s.warm = nil
	s.log.Info("warm-up done: normalizer frozen", "records", s.norm.Count(), "workers", n)
}

// apply steps the optimizer with a completed round's average gradient.
func (s *Server) apply(res *round.Result, now time.Time) {
	s.opt.Step(s.model.Params(), res.Gradient)
	if s.cfg.Spec.Variant == ae.SparseKL && len(res.Extra) == s.cfg.Spec.Code {
		s.model.Advance(res.Extra)
	} else {
		s.model.Advance(nil)
	}
	if s.roundSk != nil {
		s.addScores(s.roundSk)
		s.roundSk = nil
	}
	s.metrics.rounds.Inc()
	s.metrics.loss.Set(res.Loss)
	s.metrics.samples.Add(float64(res.Samples))
	d := now.Sub(s.machine.Started())
	s.metrics.roundSeconds.Observe(d.Seconds())
	s.metrics.round.Set(float64(res.Round))
	if s.cfg.OnRound != nil {
		s.cfg.OnRound(res, d)
	}
	if len(res.Missing) > 0 {
		s.log.Info("round completed without some members", "round", res.Round, "missing", res.Missing)
	}
}

// broadcastRound sends the round's parameters to its members.
func (s *Server) broadcastRound(r uint64) {
	st := s.model.State()
	msg := &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Round{Round: &reconv1.RoundStart{
		Round:      r,
		Params:     append([]float64(nil), s.model.Params()...),
		Normalizer: &reconv1.Normalizer{Count: s.norm.Count(), Mean: s.norm.Mean(), M2: s.norm.M2()},
		State:      &reconv1.TrainingState{Steps: st.Steps, RhoHat: st.RhoHat},
		Threshold:  s.threshold,
		Version:    s.version,
	}}}
	for _, id := range s.machine.Members() {
		if ss := s.sessions[id]; ss != nil {
			s.send(ss, msg)
		}
	}
}

// send queues msg for a session without blocking the loop; a session too
// slow to take it is ended (it rejoins).
func (s *Server) send(ss *session, msg *reconv1.CoordinatorMessage) {
	select {
	case ss.out <- msg:
	default:
		s.log.Warn("worker not keeping up: ending its session", "worker", ss.id)
		s.endSession(ss.id)
	}
}

func (s *Server) endSession(id string) {
	if ss := s.sessions[id]; ss != nil {
		close(ss.out)
		delete(s.sessions, id)
	}
	s.machine.Leave(id)
}

// blocksPerWindow is how many blocks of held-out scores make the window.
const blocksPerWindow = 8

// addScores adds a round's held-out scores to the window; when that fills a
// block, the threshold is recomputed.
func (s *Server) addScores(sk *ddsketch.DDSketch) {
	if s.block == nil {
		s.block = sketch.New()
	}
	s.block.MergeWith(sk)
	if s.block.GetCount() < float64(s.cfg.WindowScores)/blocksPerWindow {
		return
	}
	s.blocks = append(s.blocks, s.block)
	s.block = nil
	if len(s.blocks) > blocksPerWindow {
		s.blocks = s.blocks[1:]
	}
	merged := sketch.New()
	for _, b := range s.blocks {
		merged.MergeWith(b)
	}
	if s.threshold == 0 && !s.settled(merged) {
		return
	}
	if q, err := s.thresholdOf(merged); err == nil && q > 0 {
		s.threshold = q
		s.metrics.threshold.Set(q)
	}
}

// settled reports whether training has settled enough for a first
// threshold: the window's median held-out score has fallen by less than
// Settle since the window before (blocksPerWindow blocks ago).
func (s *Server) settled(merged *ddsketch.DDSketch) bool {
	if s.cfg.Settle < 0 {
		return true
	}
	med, err := merged.GetValueAtQuantile(0.5)
	if err != nil || len(s.blocks) < blocksPerWindow {
		return false
	}
	s.medians = append(s.medians, med)
	if len(s.medians) <= blocksPerWindow {
		return false
	}
	before := s.medians[len(s.medians)-1-blocksPerWindow]
	s.medians = s.medians[1:]
	if med >= (1-s.cfg.Settle)*before {
		s.log.Info("training settled: setting the first threshold", "median_held_out", med, "window_before", before)
		return true
	}
	return false
}

// thresholdOf applies the threshold rule to merged held-out scores.
func (s *Server) thresholdOf(merged *ddsketch.DDSketch) (float64, error) {
	if s.cfg.ThresholdRule == RuleQuantile {
		return merged.GetValueAtQuantile(s.cfg.Quantile)
	}
	return sketch.Robust(merged, s.cfg.Sigmas)
}

// ruleText describes the threshold rule for checkpoints.
func (c Config) ruleText() string {
	if c.ThresholdRule == RuleQuantile {
		return fmt.Sprintf("quantile %g", c.Quantile)
	}
	return fmt.Sprintf("robust %g", c.Sigmas)
}

// checkpointLocked writes and publishes the next version.
func (s *Server) checkpointLocked(now time.Time) error {
	c := checkpoint.Build(s.model, s.opt, s.norm, s.cfg.Features)
	c.Version = s.version + 1
	c.Threshold, c.ThresholdRule = s.threshold, s.cfg.ruleText()
	if s.cfg.ThresholdRule == RuleQuantile {
		c.Quantile = s.cfg.Quantile
	}
	c.Round = s.latestRound()
	c.CreatedAt = timestamppb.New(now)
	c.Metadata = map[string]string{"tool": "coordinator"}
	if err := s.store.Put(c); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.version = c.Version
	s.ckRound = c.Round
	s.lastCkAt = now
	s.publish(c)
	s.metrics.version.Set(float64(s.version))
	s.log.Info("checkpoint written", "version", c.Version, "round", c.Round, "threshold", c.Threshold)
	return nil
}

// publish hands c to every watcher, replacing anything it has not taken yet.
func (s *Server) publish(c *reconv1.Checkpoint) {
	s.latest = c
	for ch := range s.watchers {
		select {
		case ch <- c:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- c
		}
	}
}

// Checkpoint writes a checkpoint now (as on SIGTERM) and returns its version.
func (s *Server) Checkpoint() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.norm == nil {
		return 0, errors.New("coordinator: still warming up: no model to checkpoint")
	}
	if err := s.checkpointLocked(time.Now()); err != nil {
		return 0, err
	}
	return s.version, nil
}

var errStopped = status.Error(codes.Unavailable, "coordinator is stopping")
