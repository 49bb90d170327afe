// Package console is recon's operator console: a web page that watches the
// stream (records, alerts, dead letters, lag, training), shows each alert
// feature by feature against the model's reconstruction, draws the score
// distribution with the threshold on it, and lists the model versions with
// an optional, token-guarded rollback.
//
// State holds everything the pages show, in bounded memory, fed by method
// calls with the time passed in (so it is tested without sockets); Server
// serves it over HTTP with server-sent events; Run feeds it from Kafka and
// the coordinator.
package console

import (
	"container/list"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recon-ad/recon/internal/scorer"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Limits bound what State keeps.
type Limits struct {
	Seconds int // per-second points kept (default 900: 15 minutes)
	Alerts  int // most recent alerts kept (default 10000)
	Scores  int // most recent scores kept for the distribution (default 20000)
	Keys    int // keys whose recent scores are kept for the alerts' neighbours (default 10000)
	PerKey  int // recent scores kept per key (default 16)
	// Around is how many of its key's scores an alert keeps from either
	// side of it: the latest when it is read, and as many that follow
	// (default 8).
	Around    int
	ScorerTTL time.Duration // a scorer unseen this long is dropped from the list (default 1 h)
}

func (l Limits) withDefaults() Limits {
	if l.Seconds <= 0 {
		l.Seconds = 900
	}
	if l.Alerts <= 0 {
		l.Alerts = 5000
	}
	if l.Scores <= 0 {
		l.Scores = 20000
	}
	if l.Keys <= 0 {
		l.Keys = 10000
	}
	if l.PerKey <= 0 {
		l.PerKey = 16
	}
	if l.Around <= 0 {
		l.Around = 8
	}
	if l.ScorerTTL <= 0 {
		l.ScorerTTL = time.Hour
	}
	return l
}

// ring keeps the last len(buf) values pushed.
type ring[T any] struct {
	buf  []T
	next int
	full bool
}

func newRing[T any](n int) *ring[T] { return &ring[T]{buf: make([]T, n)} }

func (r *ring[T]) push(v T) {
	r.buf[r.next] = v
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *ring[T]) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// at returns the i-th oldest value kept.
func (r *ring[T]) at(i int) T {
	if r.full {
		return r.buf[(r.next+i)%len(r.buf)]
	}
	return r.buf[i]
}

// Point is one second of the stream, as the overview charts draw it.
type Point struct {
	T          int64              `json:"t"`           // Unix milliseconds at the second's end
	In         float64            `json:"in"`          // records/s produced to the records topic
	Scored     float64            `json:"scored"`      // scores/s read from the scores topic
	Alerts     float64            `json:"alerts"`      // alerts/s read from the alerts topic
	Dead       map[string]float64 `json:"dead"`        // dead letters/s by reason
	Rounds     float64            `json:"rounds"`      // training rounds/s
	Loss       float64            `json:"loss"`        // the last round's training objective
	Version    uint64             `json:"version"`     // the coordinator's newest version
	Threshold  float64            `json:"threshold"`   // the threshold in effect (the newest checkpoint's)
	ScorerLag  int64              `json:"scorer_lag"`  // records the scorer group has yet to commit, all partitions
	TrainerLag int64              `json:"trainer_lag"` // the same for the trainer group
	P50        float64            `json:"p50"`         // the second's scores: median
	P99        float64            `json:"p99"`         // 99th percentile
	Max        float64            `json:"max"`         // largest
}

// AlertEntry is an alert as read from the alerts topic.
type AlertEntry struct {
	Seq      uint64 `json:"seq"`      // the order it was read in, from 1
	Key      string `json:"key"`      // the source record's key
	Received int64  `json:"received"` // Unix ms when the console read it
	scorer.Alert
	// nb are its key's scores around it: the latest when it was read,
	// then those that followed (after of them so far).
	nb    []point
	after int
}

// point is a score as kept: ScorePoint without its id's strings but the
// topic, shared by every point of it.
type point struct {
	t, offset        int64
	score, threshold float64
	version          uint64
	topic            string
	partition        int32
	alert            bool
}

func (p point) view() ScorePoint {
	return ScorePoint{T: p.t, ID: p.topic + "/" + strconv.Itoa(int(p.partition)) + "/" + strconv.FormatInt(p.offset, 10),
		Score: p.score, Threshold: p.threshold, Alert: p.alert, Version: p.version}
}

// ScorePoint is one score of a key, for an alert's neighbours.
type ScorePoint struct {
	T         int64   `json:"t"`         // Unix ms of the score record
	ID        string  `json:"id"`        // the scored record, topic/partition/offset
	Score     float64 `json:"score"`     // its score
	Threshold float64 `json:"threshold"` // the threshold it was compared with
	Alert     bool    `json:"alert"`     // whether it raised an alert
	Version   uint64  `json:"version"`   // the model version that scored it
}

// ScorerInfo is a scorer replica as its score records show it.
type ScorerInfo struct {
	ID         string `json:"id"`         // the replica's --id
	LastSeen   int64  `json:"last_seen"`  // Unix ms of its newest score record
	Version    uint64 `json:"version"`    // the version its newest score used
	Scored     int64  `json:"scored"`     // scores read from it
	Partitions []int  `json:"partitions"` // the records topic's partitions it has scored
	parts      map[int]bool
}

// PartitionLag is one partition's place for a group.
type PartitionLag struct {
	Partition int    `json:"partition"`        // the partition
	Committed int64  `json:"committed"`        // -1: nothing committed
	End       int64  `json:"end"`              // the partition's end offset
	Lag       int64  `json:"lag"`              // records between the committed offset and the end
	Holder    string `json:"holder,omitempty"` // the member assigned it
}

// GroupLag is a consumer group's lag on the records topic.
type GroupLag struct {
	Role       string         `json:"role"`            // RoleScorer or RoleTrainer
	Group      string         `json:"group"`           // the consumer group
	State      string         `json:"state,omitempty"` // the group's state (Stable, PreparingRebalance, ...)
	Partitions []PartitionLag `json:"partitions"`      // by partition, in order
	Total      int64          `json:"total"`           // summed over the partitions
	Error      string         `json:"error,omitempty"` // why the lag could not be read
}

// Worker is a trainer as the coordinator reports it.
type Worker struct {
	ID           string `json:"id"`            // the trainer's --id
	JoinedAt     int64  `json:"joined_at"`     // Unix ms
	LastGradient int64  `json:"last_gradient"` // Unix ms (0: none yet)
	Gradients    uint64 `json:"gradients"`     // accepted this session
	Benched      bool   `json:"benched"`       // out of the rounds lately
}

// Training is the coordinator's state as the console last read it.
type Training struct {
	At            int64    `json:"at"`              // Unix ms of the reading (0: never)
	Round         uint64   `json:"round"`           // the last completed round
	Loss          float64  `json:"loss"`            // the last round's training objective
	State         string   `json:"state"`           // warming, learning, settled or maintaining
	Version       uint64   `json:"version"`         // the newest checkpoint version
	Threshold     float64  `json:"threshold"`       // the coordinator's, as it recalibrates
	InEffect      float64  `json:"in_effect"`       // the newest checkpoint's: what the scorers apply
	Records       uint64   `json:"records"`         // stream records behind accepted gradients
	Presentations float64  `json:"presentations"`   // times each record was trained on, on average
	Workers       []Worker `json:"workers"`         // the joined trainers, by id
	Error         string   `json:"error,omitempty"` // the last reading failed
}

// Model is one stored checkpoint version.
type Model struct {
	Version   uint64  `json:"version"`         // the checkpoint version
	Round     uint64  `json:"round"`           // the training round it was written at
	CreatedAt int64   `json:"created_at"`      // Unix ms (0: unknown)
	Loss      float64 `json:"loss"`            // the training objective when written (0: unknown)
	Threshold float64 `json:"threshold"`       // its alert threshold (0: none)
	Variant   string  `json:"variant"`         // the autoencoder variant
	Pinned    bool    `json:"pinned"`          // a rollback target: never pruned
	Error     string  `json:"error,omitempty"` // set when the stored entry does not verify
}

// Totals count what the console has read since it started.
type Totals struct {
	Scored      int64            `json:"scored"`       // score records read
	Alerts      int64            `json:"alerts"`       // alert records read
	DeadLetters map[string]int64 `json:"dead_letters"` // by reason
	Undecodable map[string]int64 `json:"undecodable"`  // records of the output topics the console could not read, by topic
}

// keyHist is one key's recent scores.
type keyHist struct {
	key  string
	pts  *ring[point]
	elem *list.Element
}

// State is what the console shows. Its methods are safe for concurrent use.
type State struct {
	lim Limits

	mu     sync.Mutex
	series *ring[Point]
	last   time.Time // the last Tick

	// since the last Tick
	nScored, nAlerts int
	dead             map[string]int
	secScores        []float64

	seq    uint64            // of the newest alert
	topics map[string]string // the topics of the score ids, interned
	// pending are, by key, the alerts still gathering the scores that
	// follow them
	pending  map[string][]*AlertEntry
	alerts   *ring[*AlertEntry]
	alertIDs map[string]*AlertEntry
	scores   *ring[float64]
	keys     map[string]*keyHist
	lru      *list.List // of *keyHist, most recent at the front
	scorers  map[string]*ScorerInfo

	training  Training
	prevRound uint64
	prevAt    time.Time
	rounds    float64 // rounds/s between the last two readings
	models    []Model
	modelsErr string
	lags      []GroupLag

	inEnd, prevInEnd     int64
	inEndAt, prevInEndAt time.Time

	totals Totals
}

// NewState returns an empty State.
func NewState(lim Limits) *State {
	lim = lim.withDefaults()
	return &State{lim: lim, series: newRing[Point](lim.Seconds), dead: map[string]int{},
		alerts: newRing[*AlertEntry](lim.Alerts), alertIDs: map[string]*AlertEntry{}, scores: newRing[float64](lim.Scores),
		keys: map[string]*keyHist{}, lru: list.New(), scorers: map[string]*ScorerInfo{}, pending: map[string][]*AlertEntry{}, topics: map[string]string{},
		totals: Totals{DeadLetters: map[string]int64{}, Undecodable: map[string]int64{}}}
}

// AddAlert records an alert read at now. An alert read again (a scorer
// re-delivered its record after a crash) replaces the earlier copy.
func (s *State) AddAlert(key string, a scorer.Alert, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.alertIDs[a.ID]; ok {
		old.Alert, old.Received = a, now.UnixMilli() // the scores around it stay
		return
	}
	e := &AlertEntry{Key: key, Received: now.UnixMilli(), Alert: a}
	s.seq++
	e.Seq = s.seq
	if h, ok := s.keys[key]; ok {
		for i := max(h.pts.len()-s.lim.Around, 0); i < h.pts.len(); i++ {
			e.nb = append(e.nb, h.pts.at(i))
		}
	}
	s.pending[key] = append(s.pending[key], e)
	if s.alerts.len() == len(s.alerts.buf) {
		old := s.alerts.at(0)
		delete(s.alertIDs, old.ID)
		s.unpend(old)
	}
	s.alerts.push(e)
	s.alertIDs[a.ID] = e
	s.nAlerts++
	s.totals.Alerts++
}

// AddScore records a score record of key written at t.
func (s *State) AddScore(key string, r scorer.ScoreRecord, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nScored++
	s.totals.Scored++
	s.secScores = append(s.secScores, r.Score)
	s.scores.push(r.Score)
	h, ok := s.keys[key]
	if ok {
		s.lru.MoveToFront(h.elem)
	} else {
		if len(s.keys) >= s.lim.Keys {
			old := s.lru.Remove(s.lru.Back()).(*keyHist)
			delete(s.keys, old.key)
		}
		h = &keyHist{key: key, pts: newRing[point](s.lim.PerKey)}
		h.elem = s.lru.PushFront(h)
		s.keys[key] = h
	}
	topic, part, off, _ := parseID(r.ID)
	if in, ok := s.topics[topic]; ok {
		topic = in
	} else if len(s.topics) < 64 {
		topic = strings.Clone(topic) // not r.ID's whole string
		s.topics[topic] = topic
	} else {
		topic = strings.Clone(topic)
	}
	pt := point{t: t.UnixMilli(), offset: off, score: r.Score, threshold: r.Threshold, version: r.Version, topic: topic, partition: int32(part), alert: r.Alert}
	h.pts.push(pt)
	if waiting := s.pending[key]; len(waiting) > 0 {
		kept := waiting[:0]
		for _, e := range waiting {
			e.nb = append(e.nb, pt)
			if e.after++; e.after < s.lim.Around {
				kept = append(kept, e)
			}
		}
		clear(waiting[len(kept):])
		if len(kept) == 0 {
			delete(s.pending, key)
		} else {
			s.pending[key] = kept
		}
	}
	if r.Scorer == "" {
		return
	}
	sc, ok := s.scorers[r.Scorer]
	if !ok {
		sc = &ScorerInfo{ID: r.Scorer, parts: map[int]bool{}}
		s.scorers[r.Scorer] = sc
	}
	sc.LastSeen, sc.Version = t.UnixMilli(), r.Version
	sc.Scored++
	if p := part; p >= 0 && !sc.parts[p] {
		sc.parts[p] = true
		sc.Partitions = append(sc.Partitions, p)
		slices.Sort(sc.Partitions)
	}
}

// unpend stops e gathering scores; s.mu is held.
func (s *State) unpend(e *AlertEntry) {
	waiting := s.pending[e.Key]
	if i := slices.Index(waiting, e); i >= 0 {
		waiting = slices.Delete(waiting, i, i+1)
	}
	if len(waiting) == 0 {
		delete(s.pending, e.Key)
	} else {
		s.pending[e.Key] = waiting
	}
}

// parseID splits an id "topic/partition/offset" (partition -1: not one).
func parseID(id string) (topic string, partition int, offset int64, ok bool) {
	j := strings.LastIndexByte(id, '/')
	if j < 0 {
		return id, -1, 0, false
	}
	i := strings.LastIndexByte(id[:j], '/')
	if i < 0 {
		return id, -1, 0, false
	}
	p, err1 := strconv.Atoi(id[i+1 : j])
	o, err2 := strconv.ParseInt(id[j+1:], 10, 64)
	if err1 != nil || err2 != nil {
		return id, -1, 0, false
	}
	return id[:i], p, o, true
}

// AddDeadLetter records a dead letter with its reason header.
func (s *State) AddDeadLetter(reason string) {
	if reason == "" {
		reason = "unknown"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead[reason]++
	s.totals.DeadLetters[reason]++
}

// AddUndecodable counts a record of an output topic the console could not
// read (another writer's, or a newer schema).
func (s *State) AddUndecodable(topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.totals.Undecodable[topic]++
}

// SetTraining records the coordinator's status read at now.
func (s *State) SetTraining(st *reconv1.StatusResponse, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := Training{At: now.UnixMilli(), Round: st.GetRound(), Loss: st.GetLoss(), State: st.GetState(), Version: st.GetVersion(),
		Threshold: st.GetThreshold(), Records: st.GetRecords(), Presentations: st.GetPresentationsPerRecord()}
	for _, w := range st.GetWorkers() {
		wk := Worker{ID: w.GetId(), Gradients: w.GetGradients(), Benched: w.GetBenched()}
		if w.GetJoinedAt() != nil {
			wk.JoinedAt = w.GetJoinedAt().AsTime().UnixMilli()
		}
		if w.GetLastGradientAt() != nil {
			wk.LastGradient = w.GetLastGradientAt().AsTime().UnixMilli()
		}
		t.Workers = append(t.Workers, wk)
	}
	if !s.prevAt.IsZero() && now.After(s.prevAt) && t.Round >= s.prevRound {
		s.rounds = float64(t.Round-s.prevRound) / now.Sub(s.prevAt).Seconds()
	}
	s.prevRound, s.prevAt = t.Round, now
	s.training = t
}

// SetTrainingError records that the coordinator could not be read.
func (s *State) SetTrainingError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.training.Error = err.Error()
}

// SetModels records the stored versions (err: the listing failed).
func (s *State) SetModels(list []*reconv1.CheckpointInfo, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.modelsErr = err.Error()
		return
	}
	s.modelsErr = ""
	s.models = s.models[:0]
	for _, c := range list {
		m := Model{Version: c.GetVersion(), Round: c.GetRound(), Loss: c.GetLoss(), Threshold: c.GetThreshold(),
			Variant: c.GetVariant(), Pinned: c.GetPinned(), Error: c.GetError()}
		if c.GetCreatedAt() != nil {
			m.CreatedAt = c.GetCreatedAt().AsTime().UnixMilli()
		}
		s.models = append(s.models, m)
	}
	sort.Slice(s.models, func(i, j int) bool { return s.models[i].Version > s.models[j].Version })
}

// SetLags records the groups' lag and the records topic's end offsets
// (their sum, for the rate in), read at now.
func (s *State) SetLags(lags []GroupLag, inEnd int64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lags = lags
	if inEnd >= 0 {
		s.prevInEnd, s.prevInEndAt = s.inEnd, s.inEndAt
		s.inEnd, s.inEndAt = inEnd, now
	}
}

// Tick closes the second (or whatever passed since the last Tick) ending
// at now and returns its point.
func (s *State) Tick(now time.Time) Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	dt := 1.0
	if !s.last.IsZero() {
		dt = max(now.Sub(s.last).Seconds(), 1e-3)
	}
	s.last = now
	p := Point{T: now.UnixMilli(), Scored: float64(s.nScored) / dt, Alerts: float64(s.nAlerts) / dt, Dead: map[string]float64{},
		Rounds: s.rounds, Loss: s.training.Loss, Version: s.training.Version, Threshold: s.inEffect()}
	for r, n := range s.dead {
		p.Dead[r] = float64(n) / dt
	}
	if !s.prevInEndAt.IsZero() && s.inEndAt.After(s.prevInEndAt) && s.inEnd >= s.prevInEnd {
		p.In = float64(s.inEnd-s.prevInEnd) / s.inEndAt.Sub(s.prevInEndAt).Seconds()
	}
	for _, g := range s.lags {
		switch g.Role {
		case RoleScorer:
			p.ScorerLag = g.Total
		case RoleTrainer:
			p.TrainerLag = g.Total
		}
	}
	if n := len(s.secScores); n > 0 {
		slices.Sort(s.secScores)
		p.P50, p.P99, p.Max = quantile(s.secScores, 0.5), quantile(s.secScores, 0.99), s.secScores[n-1]
	}
	s.nScored, s.nAlerts, s.secScores = 0, 0, s.secScores[:0]
	clear(s.dead)
	s.series.push(p)
	for id, sc := range s.scorers {
		if now.Sub(time.UnixMilli(sc.LastSeen)) > s.lim.ScorerTTL {
			delete(s.scorers, id)
		}
	}
	return p
}

// inEffect is the threshold the scorers apply: the newest checkpoint's.
// The coordinator's own moves with every recalibration and reaches the
// scorers only in the next checkpoint; before the newest version is
// listed, it stands in. s.mu is held.
func (s *State) inEffect() float64 {
	if len(s.models) > 0 && s.models[0].Version == s.training.Version {
		return s.models[0].Threshold
	}
	return s.training.Threshold
}

// Roles of the groups whose lag is shown.
const (
	RoleScorer  = "scorer"
	RoleTrainer = "trainer"
)

// quantile returns the q-quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
