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
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/pace"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/internal/schedule"
	"github.com/recon-ad/recon/internal/summary"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// DefaultSpec holds the streaming defaults of the activations: tanh
// hidden, code and output layers, and no trimmed objective. Offline
// (fit.Default) the output is linear and 15% of each batch is trimmed; the
// stream's model is young when its first threshold is set (at most
// --first-threshold-records), and on the ADBench stream eval a linear
// output ranked worse there (0.767 against 0.791 mean ROC-AUC, both
// trimmed) while the trim changed the mean by under 0.001 and doubled the
// demo's young-stream false alarms (docs/DESIGN.md).
var DefaultSpec = ae.Spec{Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Tanh}

// Config is a coordinator's model and training rules. DefaultConfig has
// the defaults; in a Config built field by field, zero LR, Seed, Batch,
// MinWorkers, Deadline and Lease take theirs.
type Config struct {
	Spec     ae.Spec  // the model (Input must be set)
	Features []string // feature names, in input order (optional)
	LR       float64  // Adam learning rate
	Seed     uint64   // parameter initialization

	Batch         int     // records per worker per round
	Holdout       float64 // fraction of each worker's records held out for the threshold (0: none, no threshold)
	SkipAnomalies bool    // workers skip training records scored above the threshold
	// Calib is how held-out records set the residual whitening and the
	// threshold: the alert rate, the window, and the settle test and record
	// bound that gate the first threshold (calib.Config's defaults).
	Calib calib.Config
	// AutoCode chooses the code width from the stream: the elbow of the
	// spectrum of the warm-up records (calib.CodeWidth over the workers'
	// merged moments). Spec.Code is the fallback, used for records wider
	// than calib.MaxMomentsWidth; a resumed store keeps its code width.
	AutoCode bool

	WarmupRecords int // records each worker summarizes for the normalizer; 0 skips warm-up (identity normalizer)

	MinWorkers int           // gradients that complete a round at its deadline
	Deadline   time.Duration // round deadline
	Lease      time.Duration // silence after which a worker is dropped (zero: 3 x Deadline)

	// The checkpoint schedule (internal/schedule): a checkpoint when the
	// model has changed materially (threshold or median held-out error
	// moved by CheckpointChange, the training state changed), looked for
	// every CheckpointInterval (default 30 s), and at least every
	// CheckpointMaxAge (default 1 h) while rounds complete; CheckpointRounds
	// > 0 also writes one every so many rounds, changed or not (tests).
	CheckpointInterval time.Duration
	CheckpointChange   float64       // least relative change that is material (default 0.05; negative: every look)
	CheckpointMaxAge   time.Duration // most time between checkpoints while rounds complete (default 1 h)
	CheckpointRounds   int           // > 0: also a checkpoint every this many rounds (default 0: off)
	MaxRounds          uint64        // stop training after this round (0: never); for tests and benchmarks

	// Pace is the training budget: presentations per new record while
	// learning and once settled (internal/pace; zero: its defaults).
	Pace pace.Config

	// OnRound, when set, is called (under the coordinator's lock) after each
	// applied round with its result and its duration from start to
	// completion: for benchmarks and tests.
	OnRound func(res *round.Result, d time.Duration)
}

// DefaultConfig returns the defaults, the values the coordinator's flags
// start from; Spec.Input and Features are the stream's and stay unset.
func DefaultConfig() Config {
	return Config{
		Spec: DefaultSpec, LR: 1e-3, Seed: 1, Batch: 256, Holdout: 0.1, SkipAnomalies: true,
		Calib: calib.DefaultConfig(), AutoCode: true, WarmupRecords: 1000,
		MinWorkers: 1, Deadline: defaultDeadline, Lease: 3 * defaultDeadline,
		CheckpointInterval: schedule.DefaultInterval, CheckpointChange: schedule.DefaultChange, CheckpointMaxAge: schedule.DefaultMaxAge,
		Pace: pace.DefaultConfig(),
	}
}

const defaultDeadline = 5 * time.Second

// withDefaults fills the zero fields that have a default other than zero
// (LR, Seed, Batch, MinWorkers, Deadline, Lease) from DefaultConfig; the
// rest keep their zero meaning.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.LR == 0 {
		c.LR = d.LR
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.Batch == 0 {
		c.Batch = d.Batch
	}
	if c.MinWorkers == 0 {
		c.MinWorkers = d.MinWorkers
	}
	if c.Deadline == 0 {
		c.Deadline = d.Deadline
	}
	if c.Lease == 0 {
		c.Lease = 3 * c.Deadline
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
	case c.Pace.Validate() != nil:
		return c.Pace.Validate()
	case c.schedule().Validate() != nil:
		return c.schedule().Validate()
	case c.CheckpointRounds < 0:
		return fmt.Errorf("checkpoint rounds %d: must not be negative", c.CheckpointRounds)
	case duplicate(c.Features) != "":
		return fmt.Errorf("feature %q is named twice", duplicate(c.Features))
	case c.LR <= 0:
		return fmt.Errorf("learning rate %v: must be positive", c.LR)
	case c.Batch < 1:
		return fmt.Errorf("batch %d: must be at least 1", c.Batch)
	case c.Holdout < 0 || c.Holdout >= 1:
		return fmt.Errorf("held-out fraction %v: must be in [0,1)", c.Holdout)
	case c.WarmupRecords < 0:
		return fmt.Errorf("warm-up records %d: must not be negative", c.WarmupRecords)
	}
	return nil
}

func (c Config) schedule() schedule.Config {
	return schedule.Config{Interval: c.CheckpointInterval, Change: c.CheckpointChange, MaxAge: c.CheckpointMaxAge, Rounds: uint64(max(c.CheckpointRounds, 0))}
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
	moments   *calib.Moments // merging warm-up moments, for AutoCode
	sessions  map[string]*session
	cal       *calib.Calibrator
	roundHeld []float64 // the open round's held-out records (standardized)
	roundRecs int       // and the stream records read for it
	threshold float64
	whitening *ae.Whitening // of the threshold's calibration (nil: plain squared error)
	calNum    uint64        // calibration number sent with rounds
	drifted   []int         // features last found outside the normalizer
	version   uint64
	latest    *reconv1.Checkpoint
	watchers  map[chan *reconv1.Checkpoint]struct{}
	ckRound   uint64 // round of the last checkpoint
	sched     *schedule.Schedule
	// Failing checkpoint writes (a full disk): since when, and when it was
	// last warned about.
	ckFailingSince, ckWarnedAt time.Time
	pace                       *pace.Pace
	abandonWarnAt              time.Time // rounds abandoned: the last warning, and the count since
	abandonedSince             int
	ckLine                     summary.Line // checkpoints written, one info line per summaryEvery
	missLine                   summary.Line // rounds completed without some members, likewise
	// Presentations per new record over recent rounds: exponentially
	// weighted sums of samples trained on and new records read, and
	// their ratio as last shown.
	ewSamples, ewRecords, perRecord float64
	// The last completed round and its loss (on resume, the checkpoint's),
	// and the stream records behind accepted gradients since start: what
	// the round, loss and records metrics show, kept for Status.
	lastRound uint64
	lastLoss  float64
	records   uint64
	stopped   bool
}

type session struct {
	id     string
	out    chan *reconv1.CoordinatorMessage
	calNum uint64 // the calibration whose whitening it was sent
	// The process behind it: its instance token (from Join), its peer
	// address and when it joined.
	instance, peer string
	since          time.Time
	// Gradients the round machine accepted in this session, and when the
	// last one arrived (zero: none yet).
	gradients    uint64
	lastGradient time.Time
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
	s := &Server{cfg: cfg, log: log, store: store, metrics: metrics, wake: make(chan struct{}, 1), ckLine: summary.Line{Every: summaryEvery}, missLine: summary.Line{Every: summaryEvery},
		sessions: map[string]*session{}, watchers: map[chan *reconv1.Checkpoint]struct{}{}, warmFrom: map[string]bool{}}
	latest, err := store.Latest()
	if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return nil, err
	}
	if cfg.AutoCode && err == nil && int(latest.GetSpec().GetInput()) == cfg.Spec.Input && latest.GetSpec().GetCode() > 0 {
		cfg.Spec.Code = int(latest.GetSpec().GetCode()) // chosen when the store began
		s.cfg = cfg
	}
	m, err := ae.New(cfg.Spec)
	if err != nil {
		return nil, err
	}
	s.model = m
	if s.cal, err = calib.New(cfg.Calib, cfg.Spec.Input); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	var startRound uint64
	switch latest {
	case nil:
		m.Init(rand.New(rand.NewPCG(cfg.Seed, 0xc0)))
		s.opt = ae.NewAdam(m.NumParams(), cfg.LR)
		if cfg.WarmupRecords == 0 {
			s.norm = ae.NewNormalizer(cfg.Spec.Input) // identity: no statistics
		} else {
			s.warm = ae.NewNormalizer(cfg.Spec.Input)
			if cfg.AutoCode && cfg.Spec.Input <= calib.MaxMomentsWidth {
				s.moments = calib.NewMoments(cfg.Spec.Input)
			}
		}
		if s.version, err = store.NextVersion(); err != nil {
			return nil, err
		}
		s.version-- // NextVersion counts corrupt entries too: versions only grow
		log.Info("no checkpoint in the store: training a new model lineage (scorers holding another switch to it)",
			"store", store.Path(), "lineage", store.ID(), "from_version", s.version+1)
	default:
		l, err := checkpoint.Load(latest)
		if err != nil {
			return nil, err
		}
		if why := compareSchema(l.Model.Spec().Input, l.Features, cfg.Spec.Input, cfg.Features); why != "" {
			return nil, fmt.Errorf("%w: --features gives %s (the model of checkpoint %d in %s): start with the features it was trained on, or use another --store",
				ErrSchema, strings.Replace(why, "the model takes", "but the model takes", 1), latest.GetVersion(), store.Path())
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
		s.threshold, s.whitening = latest.GetThreshold(), l.Whitening
		if s.threshold > 0 && s.whitening == nil && len(latest.GetWhitening()) == 0 {
			// A checkpoint of the plain-error era: its threshold does not
			// belong to whitened scores; calibrate afresh.
			s.threshold = 0
		}
		s.cal.Resume(s.threshold, s.whitening)
		if s.threshold > 0 {
			s.calNum = 1
		}
		s.latest = latest
		startRound = latest.GetRound()
		if s.version, err = store.NextVersion(); err != nil {
			return nil, err
		}
		s.version--
		s.ckRound = startRound
		s.lastRound, s.lastLoss = startRound, latest.GetLoss()
		s.metrics.round.Set(float64(s.lastRound))
		s.metrics.loss.Set(s.lastLoss)
		log.Info("resumed from checkpoint", "version", latest.GetVersion(), "round", startRound, "threshold", s.threshold, "lineage", store.ID())
	}
	s.machine, err = round.New(round.Config{NumParams: m.NumParams(), MinWorkers: cfg.MinWorkers, Deadline: cfg.Deadline, Lease: cfg.Lease}, startRound)
	if err != nil {
		return nil, err
	}
	if s.pace, err = pace.New(cfg.Pace, s.threshold > 0); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	if s.norm != nil {
		s.pace.WarmedUp()
	}
	s.metrics.setState(s.pace.State())
	s.metrics.version.Set(float64(s.version))
	var resumed *schedule.Resumed
	if latest != nil {
		resumed = &schedule.Resumed{Round: startRound, Mark: schedule.Mark{Threshold: s.threshold, State: s.pace.State().String()}}
	}
	if s.sched, err = schedule.New(cfg.schedule(), time.Now(), resumed); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
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
	Round     uint64                  // current (or last) round number
	Version   uint64                  // newest checkpoint version written
	Threshold float64                 // current alert threshold (0: none yet)
	Workers   []string                // joined workers, sorted
	Training  bool                    // warm-up is over
	Code      int                     // the model's code width
	Rejected  map[round.Rejection]int // rejected gradients by reason
}

// Snapshot returns a snapshot.
func (s *Server) Snapshot() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _ := s.machine.Round()
	return Status{Round: r, Version: s.version, Threshold: s.threshold, Workers: s.machine.Workers(),
		Training: s.norm != nil, Rejected: s.machine.Rejected(), Code: s.cfg.Spec.Code}
}

// Run drives training until ctx ends (or MaxRounds), then writes a final
// checkpoint. It returns nil on a clean stop.
func (s *Server) Run(ctx context.Context) error {
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
			if err = s.checkpointLocked(time.Now(), "stopping"); err == nil {
				s.log.Info("final checkpoint written", "version", s.version, "round", s.ckRound)
			} else {
				err = fmt.Errorf("coordinator: the final checkpoint was not written, so the rounds after version %d (round %d) are lost: %w", s.version, s.ckRound, err)
			}
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
		s.abandonedSince++
		if now.Sub(s.abandonWarnAt) >= time.Minute { // an idle stream abandons a round every deadline
			s.abandonWarnAt = now
			s.log.Warn("round abandoned: too few gradients by its deadline (the stream idle, or the workers stuck?)", "round", r,
				"min_workers", s.cfg.MinWorkers, "abandoned_since_last_line", s.abandonedSince)
			s.abandonedSince = 0
		}
	}
	if last := s.latestRound(); s.sched.Due(now, last) {
		s.periodicCheckpoint(now, last)
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
	s.pace.WarmedUp()
	s.metrics.setState(s.pace.State())
	s.log.Info("warm-up done: normalizer frozen", "records", s.norm.Count(), "workers", n)
	if s.moments != nil {
		s.chooseCode()
	}
	if c := s.norm.Constant(); len(c) > 0 {
		s.log.Warn("features constant during warm-up: centered, not scaled; a later change in them scores as a deviation in their own units",
			"features", featureNames(s.cfg.Features, c))
	}
}

// apply steps the optimizer with a completed round's average gradient.
func (s *Server) apply(res *round.Result, now time.Time) {
	s.opt.Step(s.model.Params(), res.Gradient)
	if s.cfg.Spec.Variant == ae.SparseKL && len(res.Extra) == s.cfg.Spec.Code {
		s.model.Advance(res.Extra)
	} else {
		s.model.Advance(nil)
	}
	s.ewSamples += float64(res.Samples)
	s.calibrate(res.Round)
	if s.pace.Due(res.Round) {
		med, tail := s.cal.Errors(s.model)
		s.observePace(res.Round, pace.Errors{Median: med, Tail: tail}, false, false)
	}
	s.lastRound, s.lastLoss = res.Round, res.Loss
	s.metrics.rounds.Inc()
	s.metrics.loss.Set(res.Loss)
	s.metrics.samples.Add(float64(res.Samples))
	d := now.Sub(s.machine.Started())
	s.metrics.roundSeconds.Observe(d.Seconds())
	s.metrics.round.Set(float64(res.Round))
	if s.cfg.OnRound != nil {
		s.cfg.OnRound(res, d)
	}
	if len(res.Missing) > 0 && s.missLine.Add(res.Round, now) {
		n, from, to := s.missLine.Take(now)
		s.log.Info("rounds completed without some members at their deadline", "count", n, "first_round", from, "last_round", to,
			"missing", res.Missing, "deadline", s.cfg.Deadline, "next_line_in", s.missLine.Every)
	}
	for _, id := range res.Benched {
		why := fmt.Sprintf("benched: no gradient by the deadline (%v) in %d completed rounds in a row; rounds go on without waiting for this worker until one of its gradients comes in time",
			s.cfg.Deadline, s.machine.MaxMisses())
		s.metrics.benched.Inc()
		s.log.Warn("worker benched: rounds no longer wait for it", "worker", id, "round", res.Round, "why", why)
		if ss := s.sessions[id]; ss != nil {
			s.send(ss, &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Reply{Reply: &reconv1.GradientReply{Round: res.Round, Reason: why}}})
		}
	}
}

// broadcastRound sends the round's parameters to its members.
func (s *Server) broadcastRound(r uint64) {
	st := s.model.State()
	msg := &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Round{Round: &reconv1.RoundStart{
		Round:         r,
		Params:        append([]float64(nil), s.model.Params()...),
		Normalizer:    &reconv1.Normalizer{Count: s.norm.Count(), Mean: s.norm.Mean(), M2: s.norm.M2()},
		State:         &reconv1.TrainingState{Steps: st.Steps, RhoHat: st.RhoHat},
		Threshold:     s.threshold,
		Version:       s.version,
		Calibration:   s.calNum,
		Presentations: s.pace.Presentations(),
	}}}
	var withW *reconv1.CoordinatorMessage // msg plus the whitening, for members that lack it
	for _, id := range s.machine.Members() {
		ss := s.sessions[id]
		if ss == nil {
			continue
		}
		if ss.calNum == s.calNum || s.whitening == nil {
			s.send(ss, msg)
			continue
		}
		if withW == nil {
			rs := proto.Clone(msg.GetRound()).(*reconv1.RoundStart)
			rs.Whitening = s.whitening.Precision()
			withW = &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Round{Round: rs}}
		}
		ss.calNum = s.calNum
		s.send(ss, withW)
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

// calibrate passes the round's held-out records to the calibrator and,
// when it is due, recalibrates the whitening and the threshold.
func (s *Server) calibrate(round uint64) {
	if s.ewRecords += float64(s.roundRecs); s.ewRecords > 0 {
		s.perRecord = s.ewSamples / s.ewRecords
		s.metrics.presentations.Set(s.perRecord)
	}
	s.ewSamples, s.ewRecords = 0.999*s.ewSamples, 0.999*s.ewRecords
	if len(s.roundHeld) > 0 || s.roundRecs > 0 {
		s.cal.Observe(s.roundHeld, s.roundRecs)
		s.metrics.records.Add(float64(s.roundRecs))
		s.records += uint64(s.roundRecs)
		s.roundHeld, s.roundRecs = s.roundHeld[:0], 0
	}
	if s.cal.Due(round) {
		s.recalibrate(round)
	}
}

// recalibrate calibrates the whitening and the threshold with the current
// model: when the calibrator is due, and for every checkpoint once a
// threshold exists, so that a checkpoint's threshold is its own model's.
// It returns the median held-out error of the window (0: none known).
func (s *Server) recalibrate(round uint64) float64 {
	pr := s.cal.Progress()
	s.metrics.heldout.Set(float64(pr.Rows))
	u, ok, err := s.cal.Calibrate(s.model, round)
	if err != nil {
		s.log.Warn("calibration failed; the threshold stays", "round", round, "err", err)
		return 0
	}
	if !ok {
		s.log.Debug("training not settled yet: no threshold", "round", round, "median_held_out", u.Median, "records", pr.Records)
		return u.Median
	}
	s.threshold, s.whitening, s.calNum = u.Threshold, u.Whitening, u.Version
	s.metrics.threshold.Set(u.Threshold)
	drifted := s.cal.Drifted()
	s.metrics.drifted.Set(float64(len(drifted)))
	if len(drifted) > 0 && !slices.Equal(drifted, s.drifted) {
		s.log.Warn("features outside the normalizer frozen at warm-up: held-out records' mean or spread no longer fits it (more --warmup-records, or a new store, refits it)",
			"features", featureNames(s.cfg.Features, drifted))
	}
	s.drifted = drifted
	s.observePace(round, pace.Errors{Median: u.Median, Tail: u.Tail}, len(drifted) > 0, u.First)
	if u.First {
		s.metrics.settled.Set(1)
		s.metrics.firstRecords.Set(float64(pr.Records))
		how := "training settled"
		if u.Forced {
			how = "training not settled, the record bound reached"
		}
		s.log.Info("first threshold set: "+how, "threshold", u.Threshold, "records", pr.Records, "held_out", u.Rows,
			"alert_rate", s.cal.Config().AlertRate, "round", round)
		if u.Rows < s.cal.Config().MinRows {
			s.log.Warn("the first threshold rests on few distinct held-out records: its alert rate is rough until more arrive",
				"held_out", u.Rows, "want", s.cal.Config().MinRows)
		}
	}
	return u.Median
}

// observePace reports held-out errors at round to the training budget:
// the first threshold's (first), a calibration's or a look of its own;
// a change of state is logged and shown in the metrics.
func (s *Server) observePace(round uint64, e pace.Errors, drifted, first bool) {
	before := s.pace.State()
	why := "the first threshold"
	if first {
		s.pace.Threshold(round, e)
	} else {
		why = s.pace.Observe(round, e, drifted)
	}
	if st := s.pace.State(); st != before {
		s.metrics.setState(st)
		s.log.Info("training pace: "+st.String(), "why", why, "presentations_per_record", s.pace.Presentations(), "round", round)
	}
}

// periodicCheckpoint looks at a checkpoint in the course of training
// (the schedule said one is due, round the newest completed round): it
// recalibrates, asks the schedule whether the model changed materially,
// and writes. A failed write (a full disk, a damaged store) does not stop
// training: it is counted, warned about once a minute, and retried with
// the schedule's backoff; the version is published only once stored.
func (s *Server) periodicCheckpoint(now time.Time, round uint64) {
	mark := s.mark(round)
	write, why := s.sched.Decide(now, round, mark)
	if !write {
		s.metrics.ckSkipped.Inc()
		return
	}
	err := s.writeCheckpoint(now, mark, why)
	if err == nil {
		return
	}
	s.metrics.ckFailures.Inc()
	s.metrics.ckFailing.Set(1)
	if s.ckFailingSince.IsZero() {
		s.ckFailingSince, s.ckWarnedAt = now, time.Time{}
	}
	wait := s.sched.Failed(now)
	if now.Sub(s.ckWarnedAt) >= ckWarnEvery {
		s.ckWarnedAt = now
		s.log.Warn("cannot write a checkpoint; training goes on, scorers keep the last published version, and the write is retried",
			"err", err, "store", s.store.Path(), "failing_for", now.Sub(s.ckFailingSince).Round(time.Second),
			"last_written", s.version, "round", s.latestRound(), "next_try_in", wait)
	}
}

// ckWarnEvery is the least time between warnings of failing checkpoint writes.
const ckWarnEvery = time.Minute

// mark recalibrates with the current model, so that a checkpoint's
// threshold is its own model's, and returns what the schedule judges a
// checkpoint by.
func (s *Server) mark(round uint64) schedule.Mark {
	var med float64
	if s.threshold > 0 && s.cal.Progress().Rows > 0 {
		med = s.recalibrate(round)
	} else {
		med, _ = s.cal.Errors(s.model)
	}
	return schedule.Mark{Threshold: s.threshold, Median: med, State: s.pace.State().String()}
}

// checkpointLocked writes and publishes the next version now, changed or
// not (on stop, and for Checkpoint).
func (s *Server) checkpointLocked(now time.Time, why string) error {
	return s.writeCheckpoint(now, s.mark(s.latestRound()), why)
}

// writeCheckpoint writes and publishes the next version, judged by mark.
func (s *Server) writeCheckpoint(now time.Time, mark schedule.Mark, why string) error {
	c := checkpoint.Build(s.model, s.opt, s.norm, s.cfg.Features)
	c.Version = s.version + 1
	cal := s.cal.Config()
	c.Threshold, c.ThresholdRule, c.Quantile = s.threshold, calib.RuleText(cal.AlertRate), 1-cal.AlertRate
	if s.whitening != nil {
		c.Whitening = s.whitening.Precision()
	}
	c.Round = s.latestRound()
	c.Loss = s.lastLoss
	c.CreatedAt = timestamppb.New(now)
	c.Metadata = map[string]string{"tool": "coordinator"}
	c.Lineage = s.store.ID()
	if err := s.store.Put(c); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.version = c.Version
	s.ckRound = c.Round
	s.sched.Written(now, c.Round, mark)
	// Any write that succeeds (periodic, on demand, a rollback) ends a
	// run of failures.
	if !s.ckFailingSince.IsZero() {
		s.log.Info("checkpoint written again", "version", c.Version, "failed_for", now.Sub(s.ckFailingSince).Round(time.Second))
	}
	s.ckFailingSince = time.Time{}
	s.metrics.ckFailing.Set(0)
	s.publish(c)
	s.metrics.version.Set(float64(s.version))
	s.log.Debug("checkpoint written", "version", c.Version, "round", c.Round, "threshold", c.Threshold, "why", why)
	if s.ckLine.Add(c.Version, now) {
		n, from, to := s.ckLine.Take(now)
		s.log.Info("checkpoints written", "count", n, "first", from, "newest", to, "round", c.Round, "threshold", c.Threshold, "next_line_in", s.ckLine.Every)
	}
	return nil
}

// summaryEvery is the least time between the summary lines of a repeated
// event (checkpoints written); each one is logged at debug level.
const summaryEvery = 5 * time.Minute

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
	if err := s.checkpointLocked(time.Now(), "asked for"); err != nil {
		return 0, err
	}
	return s.version, nil
}

var errStopped = status.Error(codes.Unavailable, "coordinator is stopping")

// featureNames names the features idx: by name when names are known, by
// index otherwise.
func featureNames(names []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		if j < len(names) {
			out[i] = names[j]
		} else {
			out[i] = fmt.Sprintf("#%d", j)
		}
	}
	return out
}

// chooseCode sets the code width at the elbow of the warm-up records'
// spectrum, rebuilds the (not yet trained) model at that width and
// welcomes every worker again with the new spec.
func (s *Server) chooseCode() {
	spectrum := s.moments.Spectrum()
	records := s.moments.Count
	s.moments = nil
	k := calib.CodeWidth(spectrum)
	if s.cfg.Spec.Variant == ae.Plain && k >= s.cfg.Spec.Input {
		k = s.cfg.Spec.Input - 1
	}
	if k < 1 {
		s.log.Warn("no spectrum from the warm-up records: keeping the fallback code width", "code", s.cfg.Spec.Code)
		return
	}
	head := spectrum[:min(len(spectrum), k+3)]
	s.log.Info("code width chosen at the elbow of the stream's spectrum", "code", k, "records", records, "eigenvalues", head)
	if k == s.cfg.Spec.Code {
		return
	}
	spec := s.cfg.Spec
	spec.Code = k
	m, err := ae.New(spec)
	if err == nil {
		err = s.machine.Resize(m.NumParams())
	}
	if err != nil {
		s.log.Warn("cannot use the chosen code width: keeping the fallback", "code", k, "err", err)
		return
	}
	m.Init(rand.New(rand.NewPCG(s.cfg.Seed, 0xc0)))
	s.cfg.Spec, s.model, s.opt = spec, m, ae.NewAdam(m.NumParams(), s.cfg.LR)
	for _, ss := range s.sessions {
		s.send(ss, s.welcome())
	}
}

// welcome is the message that tells a worker the model and the rules.
func (s *Server) welcome() *reconv1.CoordinatorMessage {
	return &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Welcome{Welcome: &reconv1.Welcome{
		Spec: checkpoint.SpecToProto(s.cfg.Spec, s.cfg.Features), Batch: uint32(s.cfg.Batch),
		Holdout: s.cfg.Holdout, SkipAnomalies: s.cfg.SkipAnomalies,
	}}}
}
