// Package round is the coordinator's synchronous training round as a pure
// state machine: membership, gradient admission and the weighted average.
// It has no goroutines, clocks, sockets or logging: the driver passes the
// time into every call and acts on what the calls return, and tests drive it
// directly.
//
// A round has a number and a fixed set of members, taken at its start from
// the workers that have joined (joins and leaves take effect at round
// boundaries). It completes when every member has submitted a gradient for
// it, or once its deadline has passed with at least MinWorkers gradients;
// past the deadline with fewer, it is abandoned and the next round starts
// with the same parameters. Gradients that are not finite, have the wrong
// length, name another round or come from a non-member are rejected and
// counted, never averaged. A member not heard from within the lease is
// dropped.
package round

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Config sets a machine's rules.
type Config struct {
	NumParams  int           // gradient length
	MinWorkers int           // gradients needed to complete a round at its deadline (default 1)
	Deadline   time.Duration // how long a round waits for all its members (default 5 s)
	Lease      time.Duration // silence after which a worker is dropped (default 3 x Deadline)
	// MaxMisses is how many completed rounds in a row a member may miss
	// before it is benched (default 3): later rounds are still sent to it
	// but do not wait for it, until a gradient of it arrives in time.
	MaxMisses int
}

// Validate reports whether the config can run, after defaults.
func (c Config) Validate() error {
	switch {
	case c.NumParams < 1:
		return fmt.Errorf("round: %d parameters", c.NumParams)
	case c.MinWorkers < 1:
		return fmt.Errorf("round: min workers %d: must be at least 1", c.MinWorkers)
	case c.Deadline <= 0:
		return fmt.Errorf("round: deadline %v: must be positive", c.Deadline)
	case c.Lease < c.Deadline:
		return fmt.Errorf("round: lease %v is shorter than the round deadline %v", c.Lease, c.Deadline)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MinWorkers == 0 {
		c.MinWorkers = 1
	}
	if c.Deadline == 0 {
		c.Deadline = 5 * time.Second
	}
	if c.Lease == 0 {
		c.Lease = 3 * c.Deadline
	}
	if c.MaxMisses == 0 {
		c.MaxMisses = 3
	}
	return c
}

// Rejection names why a gradient was rejected.
type Rejection string

// Rejection reasons.
const (
	NotFinite     Rejection = "not_finite"
	WrongLength   Rejection = "wrong_length"
	WrongRound    Rejection = "wrong_round" // a past round (late) or a future one
	UnknownMember Rejection = "unknown_member"
	Duplicate     Rejection = "duplicate"
	NoSamples     Rejection = "no_samples"
)

// Reasons lists every rejection reason, for metrics that start each label
// at 0.
var Reasons = []Rejection{NotFinite, WrongLength, WrongRound, UnknownMember, Duplicate, NoSamples}

// ErrRejected is wrapped by every error Submit returns.
var ErrRejected = errors.New("gradient rejected")

// RejectError is the error Submit returns: why, and the details.
type RejectError struct {
	Reason Rejection // why
	Detail string    // which worker, round and values
}

// Error describes the rejection.
func (e *RejectError) Error() string {
	return fmt.Sprintf("gradient rejected (%s): %s", e.Reason, e.Detail)
}

// Unwrap makes errors.Is(err, ErrRejected) hold.
func (e *RejectError) Unwrap() error { return ErrRejected }

// Gradient is one worker's contribution to a round.
type Gradient struct {
	Samples int       // records behind it (its weight)
	Loss    float64   // mean objective over those records
	Values  []float64 // the gradient of that mean
	// Extra are per-round statistics averaged with the same weights
	// (for example sparse-KL code means); all members must send the same length.
	Extra []float64
}

// Result is a completed round.
type Result struct {
	Round        uint64    // the round's number
	Gradient     []float64 // sample-weighted mean, summed in worker-id order
	Extra        []float64 // sample-weighted mean of the Extra vectors
	Loss         float64   // sample-weighted mean loss
	Samples      int       // total records
	Contributors []string  // workers whose gradients were averaged, sorted
	Missing      []string  // members that did not submit in time, sorted
	// Benched are the members this round benched: they have now missed
	// MaxMisses completed rounds in a row. Later rounds do not wait for
	// them until one of their gradients arrives in time.
	Benched []string
}

type worker struct {
	lastSeen time.Time
}

// Machine is the round state machine. The zero value is not usable; call New.
type Machine struct {
	cfg     Config
	round   uint64
	open    bool
	started time.Time
	known   map[string]*worker // every joined worker
	// This round's members: true for those it waits for, false for the
	// benched, who are sent the round and may submit to it.
	members map[string]bool
	grads   map[string]*Gradient // this round's submissions
	// Completed rounds missed in a row, by worker; kept across a drop
	// and a rejoin, so a worker that keeps timing out stays benched.
	misses   map[string]int
	starts   [startsKept]time.Time // recent rounds' start times, by round % startsKept
	rejected map[Rejection]int
	dropped  int
}

// New returns a machine at round 0, no round open. next is the number the
// first round will have minus one (a coordinator resuming from round r
// passes r so round numbers only grow).
func New(cfg Config, next uint64) (*Machine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg, round: next, known: map[string]*worker{}, members: map[string]bool{},
		grads: map[string]*Gradient{}, rejected: map[Rejection]int{}, misses: map[string]int{}}, nil
}

// Join records that worker id wants to train; it becomes a member at the
// next round start. Joining again refreshes its lease.
func (m *Machine) Join(id string, now time.Time) {
	if w, ok := m.known[id]; ok {
		w.lastSeen = now
		return
	}
	m.known[id] = &worker{lastSeen: now}
}

// Leave removes worker id; if it is a member of the open round the round
// no longer waits for it.
func (m *Machine) Leave(id string) {
	delete(m.known, id)
	if m.isMember(id) && m.grads[id] == nil {
		delete(m.members, id)
	}
}

// Heartbeat refreshes worker id's lease.
func (m *Machine) Heartbeat(id string, now time.Time) {
	if w, ok := m.known[id]; ok {
		w.lastSeen = now
	}
}

// Workers returns the joined workers, sorted.
func (m *Machine) Workers() []string {
	ids := make([]string, 0, len(m.known))
	for id := range m.known {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Joined reports whether id is a joined worker.
func (m *Machine) Joined(id string) bool { _, ok := m.known[id]; return ok }

// Len returns how many workers have joined.
func (m *Machine) Len() int { return len(m.known) }

// Round returns the current round number and whether it is open.
func (m *Machine) Round() (uint64, bool) { return m.round, m.open }

// Members returns the open round's members, sorted: everyone it is sent
// to, the benched included.
func (m *Machine) Members() []string {
	ids := make([]string, 0, len(m.members))
	for id := range m.members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Rejected returns how many gradients were rejected, by reason.
func (m *Machine) Rejected() map[Rejection]int {
	out := make(map[Rejection]int, len(m.rejected))
	for r, n := range m.rejected {
		out[r] = n
	}
	return out
}

// Dropped returns how many workers were dropped for silence.
func (m *Machine) Dropped() int { return m.dropped }

// Start opens the next round with every joined worker as a member and
// returns its number. It returns ok false, opening nothing, when a round is
// already open or fewer than MinWorkers workers have joined.
func (m *Machine) Start(now time.Time) (round uint64, ok bool) {
	m.expire(now)
	if m.open || len(m.known) < m.cfg.MinWorkers {
		return m.round, false
	}
	m.round++
	m.open = true
	m.started = now
	m.starts[m.round%startsKept] = now
	clear(m.members)
	clear(m.grads)
	for id := range m.known {
		m.members[id] = m.misses[id] < m.cfg.MaxMisses
	}
	return m.round, true
}

// Submit offers worker id's gradient for round r. The machine keeps g
// (the caller must not change it afterwards). A rejected gradient is
// counted and the error, wrapping ErrRejected, says why.
func (m *Machine) Submit(id string, r uint64, g *Gradient, now time.Time) error {
	if w, ok := m.known[id]; ok {
		w.lastSeen = now
	}
	if m.Benched(id) && r <= m.round && m.round-r < startsKept && now.Sub(m.starts[r%startsKept]) <= m.cfg.Deadline {
		// Within the deadline of the round it answers: it would have
		// made it, so rounds wait for it again from the next one on.
		delete(m.misses, id)
	}
	reject := func(reason Rejection, format string, a ...any) error {
		m.rejected[reason]++
		return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
	}
	switch {
	case !m.open || r != m.round:
		return reject(WrongRound, "worker %s sent round %d, open round is %d (open: %v)", id, r, m.round, m.open)
	case !m.isMember(id):
		return reject(UnknownMember, "worker %s is not a member of round %d", id, r)
	case m.grads[id] != nil:
		return reject(Duplicate, "worker %s already sent round %d", id, r)
	case len(g.Values) != m.cfg.NumParams:
		return reject(WrongLength, "worker %s sent %d values, the model has %d", id, len(g.Values), m.cfg.NumParams)
	case g.Samples < 1:
		return reject(NoSamples, "worker %s sent a gradient of %d samples", id, g.Samples)
	}
	if math.IsNaN(g.Loss) || math.IsInf(g.Loss, 0) {
		return reject(NotFinite, "worker %s sent loss %v", id, g.Loss)
	}
	for _, s := range [][]float64{g.Values, g.Extra} {
		for i, v := range s {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return reject(NotFinite, "worker %s sent %v at %d", id, v, i)
			}
		}
	}
	for other, og := range m.grads {
		if len(og.Extra) != len(g.Extra) {
			return reject(WrongLength, "worker %s sent %d extra values, worker %s sent %d", id, len(g.Extra), other, len(og.Extra))
		}
		break
	}
	m.grads[id] = g
	return nil
}

// startsKept is how many recent rounds' start times a machine keeps, to
// tell whether a benched worker's late gradient came within its round's
// deadline.
const startsKept = 64

func (m *Machine) isMember(id string) bool { _, ok := m.members[id]; return ok }

// MaxMisses returns the rounds in a row a member may miss before it is benched.
func (m *Machine) MaxMisses() int { return m.cfg.MaxMisses }

// Benched reports whether worker id is benched: rounds do not wait for it.
func (m *Machine) Benched(id string) bool { return m.misses[id] >= m.cfg.MaxMisses }

// Tick advances time: it drops workers silent past their lease and, when
// the open round is complete (all members in, or the deadline passed with
// at least MinWorkers gradients), closes it and returns its result. A round
// past its deadline with too few gradients is abandoned: abandoned is true
// and the next Start opens a new round.
func (m *Machine) Tick(now time.Time) (res *Result, abandoned bool) {
	m.expire(now)
	if !m.open {
		return nil, false
	}
	waited, in := 0, 0
	for id, wait := range m.members {
		if wait {
			waited++
			if m.grads[id] != nil {
				in++
			}
		}
	}
	all := waited > 0 && in == waited
	late := now.Sub(m.started) >= m.cfg.Deadline
	switch {
	case all || (late && len(m.grads) >= m.cfg.MinWorkers):
		m.open = false
		return m.aggregate(), false
	case late:
		m.open = false
		return nil, true
	}
	return nil, false
}

// ErrRoundOpen is returned by Resize while a round is open.
var ErrRoundOpen = errors.New("round: a round is open")

// Resize changes the gradient length the machine accepts, between rounds:
// for a model whose shape is settled after the first members joined (an
// automatic code width). Members stay joined.
func (m *Machine) Resize(numParams int) error {
	if m.open {
		return ErrRoundOpen
	}
	if numParams < 1 {
		return fmt.Errorf("round: %d parameters", numParams)
	}
	m.cfg.NumParams = numParams
	return nil
}

// Started returns when the current (or last) round started.
func (m *Machine) Started() time.Time { return m.started }

// Deadline returns when the open round's deadline passes.
func (m *Machine) Deadline() time.Time { return m.started.Add(m.cfg.Deadline) }

func (m *Machine) expire(now time.Time) {
	for id, w := range m.known {
		if now.Sub(w.lastSeen) > m.cfg.Lease {
			delete(m.known, id)
			m.dropped++
			if m.grads[id] == nil {
				delete(m.members, id)
			}
		}
	}
}

// count updates the misses of a completed round's members: a gradient in
// time clears them, a missing one adds one, and reaching MaxMisses
// benches the member (listed in res.Benched).
func (m *Machine) count(res *Result) {
	for _, id := range res.Contributors {
		delete(m.misses, id)
	}
	for _, id := range res.Missing {
		m.misses[id]++
		if m.misses[id] == m.cfg.MaxMisses {
			res.Benched = append(res.Benched, id)
		}
	}
}

func (m *Machine) aggregate() *Result {
	ids := make([]string, 0, len(m.grads))
	for id := range m.grads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	res := &Result{Round: m.round, Gradient: make([]float64, m.cfg.NumParams), Contributors: ids}
	for _, id := range ids {
		res.Samples += m.grads[id].Samples
	}
	total := float64(res.Samples)
	if n := len(m.grads[ids[0]].Extra); n > 0 {
		res.Extra = make([]float64, n)
	}
	for _, id := range ids {
		g := m.grads[id]
		w := float64(g.Samples) / total
		for i, v := range g.Values {
			res.Gradient[i] += w * v
		}
		for i, v := range g.Extra {
			res.Extra[i] += w * v
		}
		res.Loss += w * g.Loss
	}
	for id, wait := range m.members {
		if wait && m.grads[id] == nil {
			res.Missing = append(res.Missing, id)
		}
	}
	slices.Sort(res.Missing)
	m.count(res)
	return res
}
