// Package trainer is a trainer worker: it holds a session with the
// coordinator, answers warm-up requests with feature statistics of its first
// records, and for every round computes the gradient of a batch from its
// Source at the round's parameters, with a sketch of held-out scores. When
// the coordinator goes away it reconnects with backoff and rejoins under
// the same id.
package trainer

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/kernels"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Source supplies training records.
type Source interface {
	// Width is the record width.
	Width() int
	// Read fills dst (a whole number of records) and returns how many
	// records it wrote; io.EOF when no more will come.
	Read(dst []float64) (int, error)
}

// errExhausted ends a session because the source has no more records. It
// is not io.EOF, which gRPC streams also return when the coordinator goes
// away; that must reconnect, not stop.
var errExhausted = errors.New("worker: source exhausted")

// TryReader is a Source that can also hand out only what it has at hand,
// without waiting; with replay on, a worker uses it to keep training while
// the stream is slower than it.
type TryReader interface {
	TryRead(dst []float64) (int, error)
}

// Config is a worker's identity and wiring.
type Config struct {
	ID         string                   // unique per worker process; kept across reconnects
	Conn       grpc.ClientConnInterface // to the coordinator
	Source     Source                   // training records
	Log        *slog.Logger             // where session changes are logged
	Seed       uint64                   // held-out selection and noise
	MinBackoff time.Duration            // first reconnect delay
	MaxBackoff time.Duration            // largest reconnect delay
	// RoundDelay delays every gradient, for tests of slow workers.
	RoundDelay time.Duration
	// Replay is the fraction of each round's batch drawn from recently
	// trained records instead of new ones (0: every record once). A stream
	// has each record once; replay lets a model learn from it several times
	// over (about Replay/(1-Replay) extra uses per record), so it converges
	// on far less of the stream. Held-out records are never replayed.
	Replay float64
	// ReplaySize is how many recent training records replay draws from.
	ReplaySize int
	// HeldOut, when set, receives every round's held-out scores (tests).
	HeldOut func(round uint64, scores []float64)
	// Metrics, when set, counts the worker's work.
	Metrics *Metrics
	// Features are the source's feature names in record order, sent at
	// join for the coordinator to check against its model's (nil:
	// positional records, only the width is checked).
	Features []string
	// Format names the records' format, sent at join for the
	// coordinator's log.
	Format string
}

// DefaultConfig returns the defaults, the values trainer run's flags
// start from (replay included: the zero Config replays nothing); the ID,
// connection, source and log are the caller's. In a Config built field
// by field, zero Seed, MinBackoff, MaxBackoff and ReplaySize take these.
func DefaultConfig() Config {
	return Config{Seed: 1, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Replay: 0.75, ReplaySize: 16384}
}

// ErrRefused is wrapped by Run's error when the coordinator refuses this
// worker for good (its records do not fit the model, or another live
// process holds its ID) or its source cannot be read as configured:
// retrying cannot cure it.
var ErrRefused = errors.New("refused")

// Checker is a Source that can tell, before the worker joins, that its
// records cannot be read as configured (a wrong format): Run calls
// CheckRecords once and stops with ErrRefused when it fails.
type Checker interface {
	CheckRecords(ctx context.Context) error
}

// Metrics are a worker's Prometheus metrics.
type Metrics struct {
	rounds, rejected, skipped, sessions prometheus.Counter
	compute                             prometheus.Histogram
	consumed                            prometheus.Counter     // Kafka source: records handed to training
	undecodable                         *prometheus.CounterVec // Kafka source: those that did not decode, by reason
	kernels                             *prometheus.GaugeVec   // the kernel set in use (internal/kernels)
}

// MetricPrefixes are the prefixes a trainer's metrics are exported under:
// recon_trainer_ and, for one release, the deprecated recon_worker_ (the
// same series under both names).
var MetricPrefixes = []string{"recon_trainer_", "recon_worker_"}

// NewMetrics registers worker metrics on reg, under each of
// MetricPrefixes.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		kernels:  kernels.NewGauge("kernels"),
		rounds:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gradients_total", Help: "Gradients sent."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "gradients_rejected_total", Help: "Gradients the coordinator rejected."}),
		skipped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "records_skipped_total", Help: "Training records skipped as scoring above the threshold."}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{Name: "sessions_total", Help: "Sessions opened with the coordinator."}),
		compute: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gradient_seconds", Help: "Time to compute one round's gradient.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "records_consumed_total", Help: "Stream records read for training (decoded or not)."}),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "records_undecodable_total",
			Help: "Stream records that did not decode and were skipped, by reason (bad_json, missing_field, wrong_width, ...)."}, []string{"reason"}),
	}
	// Labelled counters exist from the start at 0 for their known labels
	// ("other": a source error that is not a decode failure).
	for _, r := range stream.Reasons {
		m.undecodable.WithLabelValues(string(r))
	}
	m.undecodable.WithLabelValues("other")
	if reg != nil {
		for _, prefix := range MetricPrefixes {
			prometheus.WrapRegistererWithPrefix(prefix, reg).MustRegister(m.rounds, m.rejected, m.skipped, m.sessions, m.compute, m.consumed, m.undecodable, m.kernels)
		}
	}
	return m
}

// Stats counts what a worker did.
type Stats struct {
	Rounds   int // gradients sent
	Rejected int // gradients the coordinator rejected
	Sessions int // sessions opened (1 + reconnects)
	Skipped  int // records skipped as scoring above the threshold
}

// Worker is one trainer worker. Run it with Run.
type Worker struct {
	cfg     Config
	rng     *rand.Rand
	pending []float64 // records read for warm-up, trained on next
	stats   Stats
	grad    []float64
	kernels *kernels.Chooser // times the kernel sets on each new model spec
	buf     []float64
	held    []float64
	// scratch for scoring training records against the threshold
	skipScores, skipRec []float64
	ring                []float64 // recent standardized training records, for replay
	ringAt              int       // next slot to overwrite once the ring is full
	instance            string    // random per Worker, sent at every join: tells a reconnect from another process with this ID
	// credit is how many replayed presentations the budget still allows:
	// each new training record adds the round's presentations per record
	// less its own one, each replay draw takes one.
	credit float64
	// inSession is when the current session was welcomed (unix ns; 0: no
	// session); ended is why the last one ended. Ready reads both.
	inSession atomic.Int64
	ended     atomic.Pointer[string]
}

// New returns a worker.
func New(cfg Config) (*Worker, error) {
	if cfg.ID == "" || cfg.Conn == nil || cfg.Source == nil || cfg.Log == nil {
		return nil, errors.New("worker: ID, Conn, Source and Log are required")
	}
	d := DefaultConfig()
	if cfg.Seed == 0 {
		cfg.Seed = d.Seed
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = d.MinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = d.MaxBackoff
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if !(cfg.Replay >= 0 && cfg.Replay < 1) {
		return nil, fmt.Errorf("worker: replay fraction %v: must be in [0, 1)", cfg.Replay)
	}
	if cfg.ReplaySize == 0 {
		cfg.ReplaySize = d.ReplaySize
	}
	return &Worker{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x3017)), instance: crand.Text(),
		kernels: kernels.NewChooser(cfg.Log, ae.TaskTrain, cfg.Metrics.kernels)}, nil
}

// Stats returns the worker's counters (not safe to call while Run runs).
func (w *Worker) Stats() Stats { return w.stats }

// Run holds sessions with the coordinator until ctx ends or the source is
// exhausted, reconnecting with jittered exponential backoff.
func (w *Worker) Run(ctx context.Context) error {
	if c, ok := w.cfg.Source.(Checker); ok {
		if err := c.CheckRecords(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	wait := backoff.Backoff{Min: w.cfg.MinBackoff, Max: w.cfg.MaxBackoff, Rand: w.rng}
	for {
		start := time.Now()
		err := w.session(ctx)
		if err != nil {
			why := err.Error()
			w.ended.Store(&why)
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errExhausted) {
			return nil // the source is exhausted
		}
		if errors.Is(err, ErrRefused) {
			return err
		}
		if time.Since(start) > 10*w.cfg.MaxBackoff {
			wait.Reset() // a long session: start over
		}
		w.cfg.Log.Warn("coordinator session ended; reconnecting", "worker", w.cfg.ID, "err", err, "in", wait.Delay())
		if wait.Wait(ctx) != nil {
			return nil
		}
	}
}

// session is one Train stream, from Join to its end.
func (w *Worker) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer w.inSession.Store(0)
	stream, err := reconv1.NewCoordinatorClient(w.cfg.Conn).Train(ctx)
	if err != nil {
		return err
	}
	join := &reconv1.Join{WorkerId: w.cfg.ID, Instance: w.instance, Width: uint32(w.cfg.Source.Width()), Features: w.cfg.Features, Format: w.cfg.Format}
	if err := stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Join{Join: join}}); err != nil {
		return err
	}
	w.stats.Sessions++
	w.cfg.Metrics.sessions.Inc()
	var (
		model     *ae.Model
		welcome   *reconv1.Welcome
		whitening *ae.Whitening // the threshold's, once sent
	)
	for {
		msg, err := stream.Recv()
		// FailedPrecondition: records that do not fit the model;
		// AlreadyExists: another live process holds this worker's ID.
		if c := status.Code(err); c == codes.FailedPrecondition || c == codes.AlreadyExists {
			return fmt.Errorf("%w by the coordinator: %s", ErrRefused, status.Convert(err).Message())
		}
		if err != nil {
			return err
		}
		switch m := msg.GetMsg().(type) {
		case *reconv1.CoordinatorMessage_Welcome:
			welcome = m.Welcome
			w.ring, w.ringAt = w.ring[:0], 0 // its normalizer may differ
			spec, err := checkpoint.SpecFromProto(welcome.GetSpec())
			if err != nil {
				return fmt.Errorf("coordinator sent a bad model spec: %w", err)
			}
			if spec.Input != w.cfg.Source.Width() {
				return fmt.Errorf("%w: the coordinator's model takes %d features, this worker's records have %d", ErrRefused, spec.Input, w.cfg.Source.Width())
			}
			if model, err = ae.New(spec); err != nil {
				return err
			}
			w.kernels.Choose(spec, max(1, int(welcome.GetBatch())))
			w.grad = make([]float64, model.NumParams())
			w.inSession.Store(time.Now().UnixNano())
		case *reconv1.CoordinatorMessage_Warmup:
			st, err := w.warmup(int(m.Warmup.GetRecords()))
			if err != nil {
				return err
			}
			if err := stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Warmup{Warmup: st}}); err != nil {
				return err
			}
		case *reconv1.CoordinatorMessage_Round:
			if model == nil {
				return errors.New("coordinator started a round before Welcome")
			}
			t0 := time.Now()
			if pw := m.Round.GetWhitening(); len(pw) > 0 {
				if whitening, err = ae.RestoreWhitening(model.Spec().Input, pw); err != nil {
					return fmt.Errorf("coordinator sent a bad whitening: %w", err)
				}
			}
			g, err := w.round(model, welcome, m.Round, whitening)
			if err != nil {
				return err
			}
			w.cfg.Metrics.compute.Observe(time.Since(t0).Seconds())
			if w.cfg.RoundDelay > 0 {
				select {
				case <-time.After(w.cfg.RoundDelay):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if a, ok := w.cfg.Source.(Acker); ok {
				a.Sent(m.Round.GetRound())
			}
			if g == nil {
				continue // nothing to train on this round
			}
			if err := stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Gradient{Gradient: g}}); err != nil {
				return err
			}
			w.stats.Rounds++
			w.cfg.Metrics.rounds.Inc()
		case *reconv1.CoordinatorMessage_Reply:
			if a, ok := w.cfg.Source.(Acker); ok && m.Reply.GetAccepted() {
				if err := a.Accepted(ctx, m.Reply.GetRound()); err != nil {
					w.cfg.Log.Warn("committing the records of an accepted gradient", "worker", w.cfg.ID, "round", m.Reply.GetRound(), "err", err)
				}
			}
			if !m.Reply.GetAccepted() {
				w.stats.Rejected++
				w.cfg.Metrics.rejected.Inc()
				w.cfg.Log.Warn("gradient rejected", "worker", w.cfg.ID, "round", m.Reply.GetRound(), "reason", m.Reply.GetReason())
			}
		}
	}
}

// warmup reads n records, keeps them for training and returns their
// feature statistics.
func (w *Worker) warmup(n int) (*reconv1.WarmupStats, error) {
	p := w.cfg.Source.Width()
	norm := ae.NewNormalizer(p)
	var mom *calib.Moments
	if p <= calib.MaxMomentsWidth {
		mom = calib.NewMoments(p)
	}
	buf := make([]float64, n*p)
	got, err := readFull(w.cfg.Source, buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	_, acker := w.cfg.Source.(Acker)
	for r := 0; r < got; r++ {
		// Kept for training, except from a source that commits what it
		// hands out per round: there the warm-up records count as used.
		rec := buf[r*p : (r+1)*p]
		if norm.Observe(rec) != nil {
			continue
		}
		if mom != nil {
			mom.Add(rec)
		}
		if !acker {
			w.pending = append(w.pending, rec...)
		}
	}
	st := &reconv1.WarmupStats{Stats: &reconv1.Normalizer{Count: norm.Count(), Mean: norm.Mean(), M2: norm.M2()}}
	if mom != nil {
		st.Moments = &reconv1.Moments{Count: mom.Count, Sum: mom.Sum, Outer: mom.Outer}
	}
	return st, nil
}

// With the budget spent a round gathers new records for up to gatherWait,
// looking every gatherPoll: rounds of a slow stream then come a few a
// second, each on what arrived meanwhile.
const (
	gatherWait = 250 * time.Millisecond
	gatherPoll = 25 * time.Millisecond
)

// readFull reads until dst is full or the source ends.
func readFull(src Source, dst []float64) (int, error) {
	p := src.Width()
	total := 0
	for total*p < len(dst) {
		n, err := src.Read(dst[total*p:])
		total += n
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, io.ErrNoProgress
		}
	}
	return total, nil
}

// remember keeps training records in the replay ring.
func (w *Worker) remember(train []float64) {
	p := w.cfg.Source.Width()
	for r := 0; r < len(train)/p; r++ {
		rec := train[r*p : (r+1)*p]
		if len(w.ring) < w.cfg.ReplaySize*p {
			w.ring = append(w.ring, rec...)
			continue
		}
		copy(w.ring[w.ringAt*p:(w.ringAt+1)*p], rec)
		w.ringAt = (w.ringAt + 1) % w.cfg.ReplaySize
	}
}

// round computes this worker's gradient for a round: nil when there is
// nothing to train on.
func (w *Worker) round(m *ae.Model, welcome *reconv1.Welcome, rs *reconv1.RoundStart, wh *ae.Whitening) (*reconv1.RoundGradient, error) {
	if len(rs.GetParams()) != m.NumParams() {
		return nil, fmt.Errorf("round %d: %d parameters, the model has %d", rs.GetRound(), len(rs.GetParams()), m.NumParams())
	}
	m.SetParams(rs.GetParams())
	st := rs.GetState()
	state := ae.State{Steps: st.GetSteps()}
	if len(st.GetRhoHat()) > 0 {
		state.RhoHat = st.GetRhoHat()
	}
	if err := m.SetState(state); err != nil {
		return nil, err
	}
	nm := rs.GetNormalizer()
	norm, err := ae.RestoreNormalizer(nm.GetCount(), nm.GetMean(), nm.GetM2())
	if err != nil {
		return nil, fmt.Errorf("round %d: bad normalizer: %w", rs.GetRound(), err)
	}
	p := w.cfg.Source.Width()
	full := int(welcome.GetBatch())
	if cap(w.buf) < full*p {
		w.buf = make([]float64, full*p)
	}
	batch := full // new records this round
	if w.cfg.Replay > 0 && len(w.ring) > 0 {
		batch = max(1, full-int(math.Round(w.cfg.Replay*float64(full))))
	}
	raw := w.buf[:batch*p]
	n := 0
	if len(w.pending) > 0 {
		n = min(len(w.pending)/p, batch)
		copy(raw, w.pending[:n*p])
		w.pending = w.pending[n*p:]
	}
	budget := rs.GetPresentations() // 0: no bound
	if tr, ok := w.cfg.Source.(TryReader); ok && n < batch && w.cfg.Replay > 0 && len(w.ring) >= full*p && (budget == 0 || w.credit >= 1) {
		// Enough to replay: train at the speed of computing, on what new
		// records there are (maybe none), rather than at the stream's.
		got, err := tr.TryRead(raw[n*p:])
		n += got
		if err != nil {
			return nil, err
		}
	} else if n < batch {
		read := readFull
		spent := budget > 0 && w.cfg.Replay > 0 && len(w.ring) >= full*p
		if spent {
			// The budget is spent: wait for the stream, but only for what
			// it has, so that a slow stream gives small rounds, not late ones.
			read = Source.Read
		}
		got, err := read(w.cfg.Source, raw[n*p:])
		n += got
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n == 0 && err != nil {
			return nil, errExhausted
		}
		if tr, ok := w.cfg.Source.(TryReader); ok && spent && err == nil {
			// Gather what arrives for up to gatherWait: a round costs the
			// same messages and optimizer step whatever its size, and a
			// round of a handful of records would spend the budget's CPU
			// on them (at 300 records/s, 20 rounds a second of 7 records).
			for until := time.Now().Add(gatherWait); n < batch && time.Now().Before(until); {
				time.Sleep(gatherPoll)
				got, err := tr.TryRead(raw[n*p:])
				n += got
				if err != nil {
					return nil, err
				}
			}
		}
	}
	raw = raw[:n*p]
	norm.Transform(raw, raw)
	// Split: held-out records score the threshold, the rest train.
	// In place: training records move to the front of raw, held-out ones
	// to w.held; nothing is allocated in steady state.
	holdout := welcome.GetHoldout()
	w.held = w.held[:0]
	nTrain := 0
	for r := 0; r < n; r++ {
		rec := raw[r*p : (r+1)*p]
		if holdout > 0 && heldOut(rec, holdout) {
			w.held = append(w.held, rec...)
			continue
		}
		if nTrain != r {
			copy(raw[nTrain*p:(nTrain+1)*p], rec)
		}
		nTrain++
	}
	train, held := raw[:nTrain*p], w.held
	th := rs.GetThreshold()
	if welcome.GetSkipAnomalies() && th > 0 && wh != nil && len(train) > 0 {
		w.skipScores = slices.Grow(w.skipScores[:0], len(train)/p)[:len(train)/p]
		w.skipRec = slices.Grow(w.skipRec[:0], len(train))[:len(train)]
		scores, rec := w.skipScores, w.skipRec
		m.Reconstruct(rec, train)
		wh.Score(scores, nil, train, rec)
		kept := train[:0]
		for r, s := range scores {
			if s > th || math.IsNaN(s) {
				w.stats.Skipped++
				w.cfg.Metrics.skipped.Inc()
				continue
			}
			kept = append(kept, train[r*p:(r+1)*p]...)
		}
		train = kept
	}
	if w.cfg.Replay > 0 {
		w.remember(train)
		// Top the batch up with replayed records: train may grow past
		// raw's slice, into the rest of w.buf. With a budget, only as
		// many as the new records have earned: the stream's pace, not
		// the CPU's, then sets how much training is done.
		draws := full - n
		if budget > 0 {
			limit := (budget - 1) * float64(w.cfg.ReplaySize) // a burst earns no more than the ring holds
			w.credit = min(w.credit+(budget-1)*float64(len(train)/p), limit)
			draws = min(draws, int(w.credit))
			if len(train) == 0 && draws < 1 && full > n {
				// Every new record was held out (or skipped): one replay
				// draw on credit, so that the round still gets this
				// worker's gradient, its held-out records and its count
				// of records read, rather than waiting for the deadline.
				draws = 1
			}
			w.credit -= float64(max(draws, 0))
		}
		for ; draws > 0 && len(w.ring) > 0; draws-- {
			r := w.rng.IntN(len(w.ring) / p)
			train = append(train, w.ring[r*p:(r+1)*p]...)
		}
	}
	g := &reconv1.RoundGradient{Round: rs.GetRound(), Skipped: uint64(w.stats.Skipped), Records: uint64(n)}
	if len(held) > 0 {
		// The coordinator calibrates the threshold on these records with
		// the model of its moment; at most calib.MaxHeldOutRows a round.
		g.Heldout = append([]float64(nil), held[:min(len(held), calib.MaxHeldOutRows*p)]...)
		if w.cfg.HeldOut != nil {
			scores := make([]float64, len(held)/p)
			m.Score(scores, held)
			w.cfg.HeldOut(rs.GetRound(), scores)
		}
	}
	if len(train) == 0 {
		return nil, nil
	}
	g.Loss = m.Gradient(w.grad, train, w.rng)
	g.Samples = uint64(len(train) / p)
	g.Values = append([]float64(nil), w.grad...)
	if m.Spec().Variant == ae.SparseKL {
		g.Extra = append([]float64(nil), m.CodeMeans()...)
	}
	return g, nil
}

// heldOut decides by a record's content whether it is held out: the same
// record (a replayed file, a duplicate) is always held out or always
// trained on, so held-out scores never come from records the model
// learned. For distinct records it is a uniform draw with probability
// fraction.
func heldOut(rec []float64, fraction float64) bool {
	return float64(ae.RowHash(rec)>>11)/(1<<53) < fraction
}
