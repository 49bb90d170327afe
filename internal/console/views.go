package console

import (
	"maps"
	"math"
	"slices"
	"sort"
	"time"
)

// Overview is the overview page's data: the whole series and the tables.
type Overview struct {
	Now      int64         `json:"now"`      // Unix ms of the snapshot
	Series   []Point       `json:"series"`   // the per-second points kept, oldest first
	Live     Live          `json:"live"`     // the tables
	Alerts   []*AlertEntry `json:"alerts"`   // newest first, at most 20
	LastSeq  uint64        `json:"last_seq"` // the newest alert's Seq
	Rollback bool          `json:"rollback"` // the rollback action is offered
}

// Live is what each second's event carries besides its point.
type Live struct {
	Training Training     `json:"training"` // the coordinator's status
	Lags     []GroupLag   `json:"lags"`     // the scorer and trainer groups' lag
	Scorers  []ScorerInfo `json:"scorers"`  // the scorers seen, by id
	Totals   Totals       `json:"totals"`   // counts since start
}

// Tick is one server-sent event: the second's point, the tables, and the
// alerts read since the client's last event.
type Tick struct {
	Point   Point         `json:"point"`    // the second just closed
	Live    Live          `json:"live"`     // the tables
	Alerts  []*AlertEntry `json:"alerts"`   // newest first
	LastSeq uint64        `json:"last_seq"` // the newest alert's Seq
}

// live returns the tables; s.mu is held.
func (s *State) live() Live {
	l := Live{Training: s.training, Lags: slices.Clone(s.lags),
		Totals: Totals{Scored: s.totals.Scored, Alerts: s.totals.Alerts, DeadLetters: maps.Clone(s.totals.DeadLetters), Undecodable: maps.Clone(s.totals.Undecodable)}}
	l.Training.Workers = slices.Clone(s.training.Workers)
	l.Training.InEffect = s.inEffect()
	for _, sc := range s.scorers {
		c := *sc
		c.Partitions = slices.Clone(sc.Partitions)
		c.parts = nil
		l.Scorers = append(l.Scorers, c)
	}
	sort.Slice(l.Scorers, func(i, j int) bool { return l.Scorers[i].ID < l.Scorers[j].ID })
	return l
}

// public returns a copy of e to hand out: without the scores it gathers.
func (e *AlertEntry) public() *AlertEntry {
	c := *e
	c.nb = nil
	return &c
}

// Overview returns the overview.
func (s *State) Overview(now time.Time) Overview {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := Overview{Now: now.UnixMilli(), Live: s.live(), LastSeq: s.seq}
	o.Series = make([]Point, s.series.len())
	for i := range o.Series {
		o.Series[i] = s.series.at(i)
	}
	o.Alerts = s.newestAlerts(0, 20)
	return o
}

// TickEvent returns the event for a client that has seen alerts up to seq,
// with p the newest point.
func (s *State) TickEvent(p Point, seq uint64) Tick {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Tick{Point: p, Live: s.live(), Alerts: s.newestAlerts(seq, 100), LastSeq: s.seq}
}

// newestAlerts returns up to n alerts after seq, newest first; s.mu is held.
func (s *State) newestAlerts(seq uint64, n int) []*AlertEntry {
	out := []*AlertEntry{}
	for i := s.alerts.len() - 1; i >= 0 && len(out) < n; i-- {
		e := s.alerts.at(i)
		if e.Seq <= seq {
			break
		}
		out = append(out, e.public())
	}
	return out
}

// AlertFilter selects alerts; zero fields match every alert.
type AlertFilter struct {
	Key     string // the source record's key, exactly
	Feature string // a feature named among the alert's features
	Version uint64 // the model version that scored it
	Limit   int    // most returned (default 200)
}

func (f AlertFilter) match(e *AlertEntry) bool {
	if f.Key != "" && e.Key != f.Key {
		return false
	}
	if f.Version != 0 && e.Model.Version != f.Version {
		return false
	}
	if f.Feature != "" {
		for _, ft := range e.Features {
			if ft.Name == f.Feature {
				return true
			}
		}
		return false
	}
	return true
}

// Alerts returns the kept alerts f selects, newest first.
func (s *State) Alerts(f AlertFilter) []*AlertEntry {
	if f.Limit <= 0 {
		f.Limit = 200
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*AlertEntry{}
	for i := s.alerts.len() - 1; i >= 0 && len(out) < f.Limit; i-- {
		if e := s.alerts.at(i); f.match(e) {
			out = append(out, e.public())
		}
	}
	return out
}

// AlertDetail is one alert with its key's scores around it.
type AlertDetail struct {
	Alert *AlertEntry `json:"alert"` // the alert as read
	// Neighbours are the key's scores around the alert, in time order:
	// up to Limits.Around before it and as many after (its own among
	// them when the scores topic has it).
	Neighbours []ScorePoint `json:"neighbours"`
	Explained  *Explained   `json:"explained,omitempty"` // every feature's part, recomputed (nil: not asked for or not possible)
}

// Alert returns the alert with id, or false when it is no longer kept.
func (s *State) Alert(id string) (AlertDetail, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.alertIDs[id]
	if !ok {
		return AlertDetail{}, false
	}
	d := AlertDetail{Alert: e.public(), Neighbours: []ScorePoint{}}
	type at struct {
		part   int32
		offset int64
	}
	seen := map[at]bool{}
	for _, p := range e.nb {
		if k := (at{p.partition, p.offset}); !seen[k] {
			seen[k] = true
			d.Neighbours = append(d.Neighbours, p.view())
		}
	}
	sort.SliceStable(d.Neighbours, func(i, j int) bool { return d.Neighbours[i].T < d.Neighbours[j].T })
	return d, true
}

// Bin is one bar of the score histogram: scores in [Lo, Hi).
type Bin struct {
	Lo    float64 `json:"lo"`    // its lower bound
	Hi    float64 `json:"hi"`    // its upper bound (excluded)
	Count int     `json:"count"` // scores in it
}

// Scores is the scores page's data.
type Scores struct {
	Count     int     `json:"count"`     // recent scores the histogram holds
	Threshold float64 `json:"threshold"` // the threshold in effect (the newest checkpoint's)
	Above     int     `json:"above"`     // of them, above it
	Zero      int     `json:"zero"`      // of them, exactly 0 (left of a log axis)
	Bins      []Bin   `json:"bins"`      // log-spaced
	History   []Point `json:"history"`   // the per-second quantiles and threshold
}

// Scores returns the distribution of recent scores in nbins log-spaced
// bins, and the per-second history.
func (s *State) Scores(nbins int) Scores {
	s.mu.Lock()
	xs := make([]float64, s.scores.len())
	for i := range xs {
		xs[i] = s.scores.at(i)
	}
	out := Scores{Count: len(xs), Threshold: s.inEffect(), History: make([]Point, s.series.len())}
	for i := range out.History {
		out.History[i] = s.series.at(i)
	}
	s.mu.Unlock()
	out.Bins = []Bin{}
	lo, hi := math.Inf(1), 0.0
	for _, x := range xs {
		if x > out.Threshold && out.Threshold > 0 {
			out.Above++
		}
		if !(x > 0) || math.IsInf(x, 0) {
			out.Zero++
			continue
		}
		lo, hi = min(lo, x), max(hi, x)
	}
	if hi == 0 || nbins <= 0 {
		return out
	}
	if out.Threshold > 0 {
		lo, hi = min(lo, out.Threshold), max(hi, out.Threshold)
	}
	l0, l1 := math.Log10(lo), math.Log10(hi)
	if l1-l0 < 1e-9 {
		l0, l1 = l0-0.5, l1+0.5
	}
	step := (l1 - l0) / float64(nbins)
	out.Bins = make([]Bin, nbins)
	for i := range out.Bins {
		out.Bins[i] = Bin{Lo: math.Pow(10, l0+float64(i)*step), Hi: math.Pow(10, l0+float64(i+1)*step)}
	}
	for _, x := range xs {
		if !(x > 0) || math.IsInf(x, 0) {
			continue
		}
		i := int((math.Log10(x) - l0) / step)
		out.Bins[min(max(i, 0), nbins-1)].Count++
	}
	return out
}

// Models is the models page's data.
type Models struct {
	Models  []Model      `json:"models"`          // newest first
	Error   string       `json:"error,omitempty"` // why the versions could not be listed
	Latest  uint64       `json:"latest"`          // the coordinator's newest version
	Scorers []ScorerInfo `json:"scorers"`         // with the version each scored with last
}

// Models returns the stored versions and the scorers' versions.
func (s *State) Models() Models {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Models{Models: slices.Clone(s.models), Error: s.modelsErr, Latest: s.training.Version, Scorers: s.live().Scorers}
}
