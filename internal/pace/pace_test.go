package pace

import "testing"

// event is one report to a Pace in a table row.
type event struct {
	kind    string // "warm", "threshold", "calibrated", "drifted"
	median  float64
	want    State
	changed bool // Calibrated says why (a state change)
}

func TestPace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resumed bool
		events  []event
	}{
		{"settled once the error stops falling after the threshold", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", median: 1.1, want: Settled},
			{kind: "calibrated", median: 1.06, want: Maintaining, changed: true}, // fell by under 5%
			{kind: "calibrated", median: 1.2, want: Maintaining},
			{kind: "calibrated", median: 1.58, want: Maintaining},
			{kind: "calibrated", median: 1.6, want: Settled, changed: true}, // over 1.5 x the settled 1.06
		}},
		{"learn until the error stops falling", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", median: 4.0, want: Settled},
			{kind: "calibrated", median: 2.0, want: Settled},
			{kind: "calibrated", median: 1.5, want: Settled},
			{kind: "calibrated", median: 1.46, want: Maintaining, changed: true}, // fell by under 5%
		}},
		{"drift is measured from the best level", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", median: 2.0, want: Settled},
			{kind: "calibrated", median: 2.0, want: Maintaining, changed: true},
			{kind: "calibrated", median: 1.0, want: Maintaining},
			{kind: "calibrated", median: 1.6, want: Settled, changed: true}, // 1.6 > 1.5 x 1.0
			{kind: "calibrated", median: 1.59, want: Maintaining, changed: true},
		}},
		{"features drifting send it back", false, []event{
			{kind: "warm", want: Learning},
			{kind: "threshold", median: 1.0, want: Settled},
			{kind: "calibrated", median: 1.0, want: Maintaining, changed: true},
			{kind: "drifted", median: 1.0, want: Settled, changed: true},
		}},
		{"a resumed model proves it is settled", true, []event{
			{kind: "warm", want: Settled},
			{kind: "calibrated", median: 1.0, want: Settled}, // no earlier median to compare with
			{kind: "calibrated", median: 1.0, want: Maintaining, changed: true},
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
				switch e.kind {
				case "warm":
					p.WarmedUp()
				case "threshold":
					p.Threshold(e.median)
				case "calibrated":
					why = p.Calibrated(e.median, false)
				case "drifted":
					why = p.Calibrated(e.median, true)
				}
				if p.State() != e.want {
					t.Fatalf("event %d (%s %v): state %v, want %v", i, e.kind, e.median, p.State(), e.want)
				}
				if (why != "") != e.changed {
					t.Errorf("event %d (%s %v): reason %q, want a reason: %v", i, e.kind, e.median, why, e.changed)
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
	p.Threshold(1)
	p.Calibrated(1, false)
	if p.State() != Maintaining || p.Presentations() != 0 {
		t.Errorf("defaults: %v presentations in %v, want no bound (0)", p.Presentations(), p.State())
	}
}
