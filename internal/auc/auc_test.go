package auc

import (
	"math"
	"testing"
)

func TestROCAndPR(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scores  []float64
		pos     []bool
		roc, pr float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1, 1},
		{"inverted", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0, (1.0/3 + 2.0/4) / 2},
		{"all tied", []float64{1, 1, 1, 1}, []bool{false, true, false, true}, 0.5, 0.5},
		// Positives at ranks 1 and 3 from the top: precision 1/1 and 2/3.
		{"interleaved", []float64{4, 3, 2, 1}, []bool{true, false, true, false}, 0.75, (1 + 2.0/3) / 2},
	} {
		roc, err := ROC(tc.scores, tc.pos)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := PR(tc.scores, tc.pos)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(roc-tc.roc) > 1e-12 || math.Abs(pr-tc.pr) > 1e-12 {
			t.Errorf("%s: ROC %v PR %v, want %v %v", tc.name, roc, pr, tc.roc, tc.pr)
		}
	}
	if _, err := ROC([]float64{1, 2}, []bool{true, true}); err == nil {
		t.Error("one class accepted")
	}
	if _, err := PR([]float64{1}, []bool{true, false}); err == nil {
		t.Error("length mismatch accepted")
	}
}
