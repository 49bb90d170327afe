package console

import (
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/scorer"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func alert(id, version uint64, features ...string) scorer.Alert {
	a := scorer.Alert{ID: fmt.Sprintf("recon-events/%d/%d", id%4, id), Model: scorer.ModelRef{Version: version}, Score: 10, Threshold: 5}
	for _, f := range features {
		a.Features = append(a.Features, scorer.Feature{Name: f, Value: 1, Reconstruction: 0, Error: 5})
	}
	return a
}

func TestTickRates(t *testing.T) {
	s := NewState(Limits{})
	s.Tick(t0)
	for i := range 40 {
		s.AddScore("k", scorer.ScoreRecord{ID: fmt.Sprintf("t/0/%d", i), Score: float64(i + 1)}, t0)
	}
	for i := range 4 {
		s.AddAlert("k", alert(uint64(i), 1, "f1"), t0)
	}
	s.AddDeadLetter("undecodable")
	s.AddDeadLetter("undecodable")
	s.AddDeadLetter("")
	s.SetLags([]GroupLag{{Role: RoleScorer, Group: "g", Total: 7}, {Role: RoleTrainer, Group: "h", Total: 3}}, 1000, t0)
	s.SetLags([]GroupLag{{Role: RoleScorer, Group: "g", Total: 9}, {Role: RoleTrainer, Group: "h", Total: 4}}, 5000, t0.Add(2*time.Second))
	s.SetTraining(&reconv1.StatusResponse{Round: 100, Loss: 0.5, Version: 3, Threshold: 5}, t0)
	s.SetTraining(&reconv1.StatusResponse{Round: 150, Loss: 0.4, Version: 4, Threshold: 6}, t0.Add(500*time.Millisecond))
	p := s.Tick(t0.Add(2 * time.Second)) // two seconds since the last tick: rates halve
	want := Point{T: t0.Add(2 * time.Second).UnixMilli(), In: 2000, Scored: 20, Alerts: 2, Rounds: 100, Loss: 0.4, Version: 4, Threshold: 6,
		ScorerLag: 9, TrainerLag: 4, P50: 20, P99: 40, Max: 40}
	if p.Dead["undecodable"] != 1 || p.Dead["unknown"] != 0.5 {
		t.Errorf("dead letters/s %v, want undecodable 1 and unknown 0.5", p.Dead)
	}
	p.Dead = nil
	if !reflect.DeepEqual(p, want) {
		t.Errorf("point\n got %+v\nwant %+v", p, want)
	}
	// The next second starts from nothing.
	q := s.Tick(t0.Add(3 * time.Second))
	if q.Scored != 0 || q.Alerts != 0 || len(q.Dead) != 0 || q.Max != 0 {
		t.Errorf("an empty second: %+v", q)
	}
	if tot := s.Overview(t0).Live.Totals; tot.Scored != 40 || tot.Alerts != 4 || tot.DeadLetters["undecodable"] != 2 {
		t.Errorf("totals %+v", tot)
	}
}

// TestBounded: every window keeps at most its limit, however much is fed.
func TestBounded(t *testing.T) {
	lim := Limits{Seconds: 5, Alerts: 10, Scores: 100, Keys: 3, PerKey: 4}
	s := NewState(lim)
	for i := range 1000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		key := fmt.Sprintf("sensor-%d", i%3)
		if i%100 == 0 {
			key = fmt.Sprintf("rare-%d", i) // evicts the least recent key
		}
		s.AddScore(key, scorer.ScoreRecord{ID: fmt.Sprintf("t/%d/%d", i%4, i), Score: 1, Scorer: "sc"}, now)
		s.AddAlert(key, alert(uint64(i), 1), now)
		if i%10 == 0 {
			s.Tick(now)
		}
	}
	if n := s.series.len(); n != 5 {
		t.Errorf("%d points kept, want 5", n)
	}
	if n, m := s.alerts.len(), len(s.alertIDs); n != 10 || m != 10 {
		t.Errorf("%d alerts kept, %d in the index; want 10 and 10", n, m)
	}
	if n := s.scores.len(); n != 100 {
		t.Errorf("%d scores kept, want 100", n)
	}
	if n, m := len(s.keys), s.lru.Len(); n != 3 || m != 3 {
		t.Errorf("%d keys kept, %d in the LRU; want 3", n, m)
	}
	for k, h := range s.keys {
		if k[:6] != "sensor" || h.pts.len() != 4 {
			t.Errorf("key %s keeps %d scores, want 4", k, h.pts.len())
		}
	}
	// The newest alerts are the ones kept, newest first.
	got := s.Alerts(AlertFilter{})
	if len(got) != 10 || got[0].ID != alert(999, 1).ID || got[9].ID != alert(990, 1).ID {
		t.Errorf("kept alerts %s .. %s (%d)", got[0].ID, got[len(got)-1].ID, len(got))
	}
	if sc := s.Models().Scorers; len(sc) != 1 || sc[0].Scored != 1000 || len(sc[0].Partitions) != 4 {
		t.Errorf("scorers %+v", sc)
	}
}

func TestAlertsFilterAndRedelivery(t *testing.T) {
	s := NewState(Limits{})
	s.AddAlert("a", alert(1, 1, "f1", "f2"), t0)
	s.AddAlert("b", alert(2, 2, "f3"), t0)
	s.AddAlert("a", alert(3, 2, "f2"), t0)
	re := alert(1, 1, "f1", "f2")
	re.Score = 11
	s.AddAlert("a", re, t0) // a scorer re-delivered record 1: one copy, the newer
	for _, c := range []struct {
		f    AlertFilter
		want []uint64
	}{
		{AlertFilter{}, []uint64{3, 2, 1}},
		{AlertFilter{Key: "a"}, []uint64{3, 1}},
		{AlertFilter{Feature: "f2"}, []uint64{3, 1}},
		{AlertFilter{Version: 2}, []uint64{3, 2}},
		{AlertFilter{Key: "a", Version: 1}, []uint64{1}},
		{AlertFilter{Feature: "nope"}, nil},
		{AlertFilter{Limit: 1}, []uint64{3}},
	} {
		got := s.Alerts(c.f)
		var ids []uint64
		for _, e := range got {
			var p, o uint64
			if _, err := fmt.Sscanf(e.ID, "recon-events/%d/%d", &p, &o); err != nil {
				t.Fatalf("alert id %q: %v", e.ID, err)
			}
			ids = append(ids, o)
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("%+v: %v, want %v", c.f, ids, c.want)
		}
	}
	if d, ok := s.Alert(alert(1, 1).ID); !ok || d.Alert.Score != 11 || d.Alert.Seq != 1 {
		t.Errorf("the re-delivered alert: %+v %v", d.Alert, ok)
	}
	if _, ok := s.Alert("recon-events/0/999"); ok {
		t.Error("an alert never read was found")
	}
	// New alerts after a client's last seq, newest first.
	if ev := s.TickEvent(Point{}, 1); len(ev.Alerts) != 2 || ev.Alerts[0].Seq != 3 || ev.LastSeq != 3 {
		t.Errorf("tick event alerts %+v, last %d", ev.Alerts, ev.LastSeq)
	}
}

// TestNeighbours: an alert keeps its key's scores from before it was read
// and as many that follow, whatever other keys do meanwhile, and long
// after the key's own recent history has moved on.
func TestNeighbours(t *testing.T) {
	s := NewState(Limits{PerKey: 8, Around: 3})
	score := func(key string, i int) {
		s.AddScore(key, scorer.ScoreRecord{ID: fmt.Sprintf("e/%s/%d", key, i), Score: float64(i), Alert: i == 5}, t0.Add(time.Duration(i)*time.Second))
	}
	for i := range 6 {
		score("1", i)
		score("2", i)
	}
	a := alert(5, 1)
	a.ID = "e/1/5"
	s.AddAlert("1", a, t0)
	for i := 6; i < 20; i++ {
		score("1", i)
		score("2", i)
	}
	d, ok := s.Alert("e/1/5")
	if !ok {
		t.Fatal("the alert is not kept")
	}
	var ids []string
	for _, p := range d.Neighbours {
		ids = append(ids, p.ID)
	}
	if want := "[e/1/3 e/1/4 e/1/5 e/1/6 e/1/7 e/1/8]"; fmt.Sprint(ids) != want {
		t.Errorf("neighbours %v, want %s", ids, want)
	}
	if len(s.pending) != 0 {
		t.Errorf("%d keys still gathering after their alerts have all they keep", len(s.pending))
	}
	// An alert evicted before it has gathered all stops gathering.
	s2 := NewState(Limits{Alerts: 1, Around: 3})
	s2.AddAlert("x", alert(1, 1), t0)
	s2.AddAlert("y", alert(2, 1), t0)
	if _, ok := s2.pending["x"]; ok || len(s2.pending) != 1 {
		t.Errorf("pending %v after the first alert was evicted", s2.pending)
	}
}

func TestScoresHistogram(t *testing.T) {
	s := NewState(Limits{})
	s.SetTraining(&reconv1.StatusResponse{Threshold: 50}, t0)
	for _, x := range []float64{0, 1, 2, 10, 20, 100, 1000, math.Inf(1)} {
		s.AddScore("k", scorer.ScoreRecord{ID: "t/0/0", Score: x}, t0)
	}
	h := s.Scores(10)
	if h.Count != 8 || h.Zero != 2 || h.Above != 3 || h.Threshold != 50 {
		t.Errorf("count %d zero %d above %d threshold %v", h.Count, h.Zero, h.Above, h.Threshold)
	}
	n := 0
	for i, b := range h.Bins {
		n += b.Count
		if i > 0 && b.Lo != h.Bins[i-1].Hi {
			t.Errorf("bin %d starts at %v, the last ended at %v", i, b.Lo, h.Bins[i-1].Hi)
		}
	}
	if n != 6 || math.Abs(h.Bins[0].Lo-1) > 1e-9 || math.Abs(h.Bins[9].Hi-1000) > 1e-9 {
		t.Errorf("%d scores in bins %v .. %v", n, h.Bins[0].Lo, h.Bins[9].Hi)
	}
	if e := NewState(Limits{}).Scores(10); len(e.Bins) != 0 || e.Count != 0 {
		t.Errorf("no scores: %+v", e)
	}
}

func TestParseID(t *testing.T) {
	for id, want := range map[string]int{"recon-events/3/12": 3, "a/b/0/7": 0, "x": -1, "x/1": -1, "t/p/1": -1, "t/1/x": -1} {
		topic, p, off, ok := parseID(id)
		if (want < 0) == ok || (ok && (p != want || topic+"/"+fmt.Sprint(p)+"/"+fmt.Sprint(off) != id)) {
			t.Errorf("parseID(%q) = %q %d %d %v; want partition %d", id, topic, p, off, ok, want)
		}
	}
}
