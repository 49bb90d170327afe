package main

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/recon-ad/recon/internal/adbench"
)

func testSet() *adbench.Set {
	return &adbench.Set{
		Name:  "tiny",
		Names: []string{"a", "b"},
		X:     []float64{0, 1, 2, 3, 4.5, -5, 6e-9, 7, 8, 9, 10, 11},
		Anomaly: []bool{
			false, true, false, false, true, false,
		},
	}
}

// TestWriteSplitCSV reads the two files back as loadgen and adbench do:
// the features in order, the label, and keys that do not collide.
func TestWriteSplitCSV(t *testing.T) {
	s := testSet()
	sp := adbench.NewSplit(s, adbench.Contaminated, 1)
	dir := t.TempDir()
	keys := map[float64]bool{}
	for _, tc := range []struct {
		file   string
		idx    []int
		offset int
	}{
		{"train.csv", sp.Train, 0},
		{"test.csv", sp.Test, testIDOffset},
	} {
		path := filepath.Join(dir, tc.file)
		if err := writeSplitCSV(path, sp, tc.idx, tc.offset); err != nil {
			t.Fatal(err)
		}
		got, err := adbench.Load(path, "label")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"id", "a", "b"}; !slices.Equal(got.Names, want) {
			t.Fatalf("%s: columns %v, want %v", tc.file, got.Names, want)
		}
		for i, r := range tc.idx {
			row := got.X[i*3 : (i+1)*3]
			if row[0] != float64(tc.offset+r) || row[1] != s.X[2*r] || row[2] != s.X[2*r+1] || got.Anomaly[i] != s.Anomaly[r] {
				t.Errorf("%s row %d: %v label %v, want set row %d %v label %v", tc.file, i, row, got.Anomaly[i], r, s.X[2*r:2*r+2], s.Anomaly[r])
			}
			if keys[row[0]] {
				t.Errorf("%s: key %v used twice", tc.file, row[0])
			}
			keys[row[0]] = true
		}
	}
	if len(keys) != s.Rows() {
		t.Fatalf("%d keys for %d rows", len(keys), s.Rows())
	}
}

// TestScoreJoin joins score records with the test rows by key: training
// keys and bad values ignored, the newest score of a key kept.
func TestScoreJoin(t *testing.T) {
	test := []int{1, 4, 5} // set rows; keys 1000001, 1000004, 1000005
	labels := []bool{true, true, false}
	type rec struct{ key, value string }
	for _, tc := range []struct {
		name        string
		recs        []rec
		complete    bool
		scores      []float64
		alerts      []bool
		lab         []bool
		missing     int
		stale       int
		far, recall float64
	}{
		{name: "none", missing: 3, far: math.NaN(), recall: math.NaN(), lab: nil},
		{
			name: "training keys and bad values ignored",
			recs: []rec{
				{"1", `{"score":9,"alert":true,"version":1}`},
				{"4", `{"score":9,"alert":true,"version":1}`},
				{"1000004", `not json`},
				{"1000005", `{"score":0.5,"alert":false,"version":3}`},
			},
			scores: []float64{0.5}, alerts: []bool{false}, lab: []bool{false}, missing: 2, far: 0, recall: math.NaN(),
		},
		{
			name: "newest kept, all present",
			recs: []rec{
				{"1000001", `{"score":1,"alert":false,"version":2}`},
				{"1000004", `{"score":7,"alert":true,"version":2}`},
				{"1000005", `{"score":3,"alert":true,"version":2}`},
				{"1000001", `{"score":8,"alert":true,"version":3}`},
			},
			complete: true,
			scores:   []float64{8, 7, 3}, alerts: []bool{true, true, true}, lab: labels, stale: 2, far: 1, recall: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newScoreJoin(test)
			for _, r := range tc.recs {
				j.add(r.key, []byte(r.value))
			}
			if j.complete() != tc.complete {
				t.Errorf("complete %v, want %v", j.complete(), tc.complete)
			}
			scores, alerts, lab, missing, stale := j.collect(labels, 3)
			if !slices.Equal(scores, tc.scores) || !slices.Equal(alerts, tc.alerts) || !slices.Equal(lab, tc.lab) {
				t.Errorf("scores %v alerts %v labels %v, want %v %v %v", scores, alerts, lab, tc.scores, tc.alerts, tc.lab)
			}
			if missing != tc.missing || stale != tc.stale {
				t.Errorf("missing %d stale %d, want %d %d", missing, stale, tc.missing, tc.stale)
			}
			far, recall := alarmShares(alerts, lab)
			same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
			if !same(far, tc.far) || !same(recall, tc.recall) {
				t.Errorf("far %v recall %v, want %v %v", far, recall, tc.far, tc.recall)
			}
		})
	}
}

// TestBandChance: the chance that a threshold with a false-alarm rate of
// exactly 0.5% is seen in [0.1%, 2%] on n normal rows (scipy.stats.binom
// for the figures): about 0.59 on glass's 183 test normals over 3 seeds,
// a certainty on thousands.
func TestBandChance(t *testing.T) {
	for _, c := range []struct {
		n    int
		want float64
	}{
		{183, 0.5865}, // glass: at least 1 and at most 3 of 183 alert
		{279, 0.7500}, // Stamps
		{321, 0.7986}, // WDBC
		{9831, 1},
		{0, 0},
		{10, 0}, // 1 alert of 10 is 10%, above the band; none is below it
	} {
		got := bandChance(c.n, 0.005, 0.001, 0.02)
		if math.Abs(got-c.want) > 5e-4 {
			t.Errorf("bandChance(%d) = %.4f, want %.4f", c.n, got, c.want)
		}
	}
}
