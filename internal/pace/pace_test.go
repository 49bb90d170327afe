package pace

import "testing"

// event is one report to a Pace in a table row, at round.
type event struct {
	kind         string // "warm", "threshold", "observe", "drifted"
	round        uint64
	median, tail float64
	want         State
	changed      bool // Observe says why (a state change)
}

func TestPace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resumed bool
		events  []event
	}{
		{"maintaining once neither error has fallen 2% in 5000 rounds", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", round: 1000, median: 1.0, tail: 10, want: Settled},
			{kind: "observe", round: 1500, median: 0.99, tail: 9.9, want: Settled}, // 1%: no fall
			{kind: "observe", round: 5999, median: 0.985, tail: 9.85, want: Settled},
			{kind: "observe", round: 6000, median: 0.985, tail: 9.85, want: Maintaining, changed: true}, // 5000 rounds since 1000
		}},
		{"the tail still falling keeps it learning", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", round: 0, median: 1.0, tail: 10, want: Settled},
			{kind: "observe", round: 4000, median: 1.0, tail: 9.7, want: Settled}, // the tail fell 3%: a new reference
			{kind: "observe", round: 8000, median: 1.0, tail: 9.6, want: Settled},
			{kind: "observe", round: 9000, median: 1.0, tail: 9.6, want: Maintaining, changed: true}, // 5000 since 4000
		}},
		{"drift is measured from the best level, median or tail", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", round: 0, median: 2.0, tail: 10, want: Settled},
			{kind: "observe", round: 5000, median: 2.0, tail: 10, want: Maintaining, changed: true},
			{kind: "observe", round: 5100, median: 1.0, tail: 10, want: Maintaining}, // better still: the new level
			{kind: "observe", round: 5200, median: 1.49, tail: 14.9, want: Maintaining},
			{kind: "observe", round: 5300, median: 1.6, tail: 10, want: Settled, changed: true}, // 1.6 > 1.5 x 1.0
			{kind: "observe", round: 10300, median: 1.59, tail: 10, want: Maintaining, changed: true},
			{kind: "observe", round: 10400, median: 1.59, tail: 15.1, want: Settled, changed: true}, // the tail: 15.1 > 1.5 x 10
		}},
		{"features drifting send it back", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", round: 0, median: 1.0, tail: 10, want: Settled},
			{kind: "observe", round: 5000, median: 1.0, tail: 10, want: Maintaining, changed: true},
			{kind: "drifted", round: 5100, median: 1.0, tail: 10, want: Settled, changed: true},
		}},
		{"a resumed model proves it has plateaued", true, []event{
			{kind: "warm", round: 0, want: Settled},
			{kind: "observe", round: 100, median: 1.0, tail: 10, want: Settled}, // the first look: a reference
			{kind: "observe", round: 5099, median: 1.0, tail: 10, want: Settled},
			{kind: "observe", round: 5100, median: 1.0, tail: 10, want: Maintaining, changed: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Config{Learn: 64, Maintain: 2}, tc.resumed)
			if err != nil {
				t.Fatal(err)
			}
			if p.State() != Warming && !tc.resumed {
				t.Fatalf("new pace in %v", p.State())
			}
			for i, e := range tc.events {
				why := ""
				errs := Errors{Median: e.median, Tail: e.tail}
				switch e.kind {
				case "warm":
					p.WarmedUp()
				case "threshold":
					p.Threshold(e.round, errs)
				case "observe":
					why = p.Observe(e.round, errs, false)
				case "drifted":
					why = p.Observe(e.round, errs, true)
				}
				if p.State() != e.want {
					t.Fatalf("event %d (%s at %d, %+v): state %v, want %v", i, e.kind, e.round, errs, p.State(), e.want)
				}
				if (why != "") != e.changed {
					t.Errorf("event %d (%s at %d): reason %q, want a reason: %v", i, e.kind, e.round, why, e.changed)
				}
				want := 64.0
				if e.want == Maintaining {
					want = 2
				}
				if p.Presentations() != want {
					t.Errorf("event %d: %v presentations per record in %v, want %v", i, p.Presentations(), p.State(), want)
				}
			}
		})
	}
}

func TestDue(t *testing.T) {
	p, _ := New(Config{}, false)
	p.WarmedUp()
	if p.Due(10_000) {
		t.Error("due while learning (calibrations do the looking)")
	}
	p.Threshold(1000, Errors{1, 10})
	for _, c := range []struct {
		round uint64
		due   bool
	}{{1499, false}, {1500, true}} {
		if got := p.Due(c.round); got != c.due {
			t.Errorf("Due(%d) = %v, want %v", c.round, got, c.due)
		}
	}
	p.Observe(1500, Errors{1, 10}, false)
	if p.Due(1999) || !p.Due(2000) {
		t.Error("not every 500 rounds after a look")
	}
	p.Observe(6000, Errors{1, 10}, false) // plateaued
	if p.State() != Maintaining || p.Due(100_000) {
		t.Errorf("%v, due: in maintenance calibrations do the looking", p.State())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Maintain: 0.5}, {Learn: 1, Maintain: 2}, {Learn: 8}, {Settle: 1.5}, {Drift: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	for _, c := range []Config{{}, {Maintain: 2}, {Learn: 64, Maintain: 2}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	p, _ := New(Config{}, false)
	p.WarmedUp()
	p.Threshold(0, Errors{1, 1})
	p.Observe(DefaultPatience, Errors{1, 1}, false)
	if p.State() != Maintaining || p.Presentations() != 0 {
		t.Errorf("defaults: %v presentations in %v, want no bound (0)", p.Presentations(), p.State())
	}
}
