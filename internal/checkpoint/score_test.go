package checkpoint

import (
	"slices"
	"testing"
)

// TestTopFeatures: the features an alert and `scorer score` name, largest
// share first, ties in feature order, at most k of them.
func TestTopFeatures(t *testing.T) {
	for _, tc := range []struct {
		contrib []float64
		k       int
		want    []int
	}{
		{[]float64{0.1, 3, 0.5, 2}, 2, []int{1, 3}},
		{[]float64{0.1, 3, 0.5, 2}, 9, []int{1, 3, 2, 0}},
		{[]float64{1, 2, 2, 1}, 4, []int{1, 2, 0, 3}},
		{[]float64{5}, 0, []int{}},
		{[]float64{5, 6}, -1, []int{}},
	} {
		got := TopFeatures(make([]int, 0, 1), tc.contrib, tc.k)
		if !slices.Equal(got, tc.want) {
			t.Errorf("TopFeatures(%v, %d) = %v, want %v", tc.contrib, tc.k, got, tc.want)
		}
	}
}
