// Package auc computes ranking quality of anomaly scores against labels:
// the area under the ROC curve and the average precision (area under the
// precision-recall curve), anomalies being the positives.
package auc

import (
	"fmt"
	"sort"
)

// ROC returns the area under the ROC curve of scores (higher = more
// anomalous) against positive: the probability that a random positive
// scores above a random negative, ties counting one half.
func ROC(scores []float64, positive []bool) (float64, error) {
	idx, np, nn, err := order(scores, positive)
	if err != nil {
		return 0, err
	}
	// Sum of the positives' ranks (1-based, ascending, ties averaged).
	var rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avg := float64(i+j+1) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if positive[idx[k]] {
				rankSum += avg
			}
		}
		i = j
	}
	u := rankSum - float64(np)*float64(np+1)/2
	return u / (float64(np) * float64(nn)), nil
}

// PR returns the average precision: the mean, over the positives taken in
// decreasing score order, of the precision at each one's rank (tied scores
// share the precision of their whole group).
func PR(scores []float64, positive []bool) (float64, error) {
	idx, np, _, err := order(scores, positive)
	if err != nil {
		return 0, err
	}
	var ap float64
	tp, seen := 0, 0
	for i := len(idx) - 1; i >= 0; {
		j := i
		groupPos := 0
		for j >= 0 && scores[idx[j]] == scores[idx[i]] {
			if positive[idx[j]] {
				groupPos++
			}
			j--
		}
		seen += i - j
		tp += groupPos
		ap += float64(groupPos) * float64(tp) / float64(seen)
		i = j
	}
	return ap / float64(np), nil
}

// order returns the indices of scores in ascending score order and the
// positive and negative counts.
func order(scores []float64, positive []bool) (idx []int, np, nn int, err error) {
	if len(scores) != len(positive) {
		return nil, 0, 0, fmt.Errorf("auc: %d scores, %d labels", len(scores), len(positive))
	}
	for i, s := range scores {
		if s != s {
			return nil, 0, 0, fmt.Errorf("auc: score %d is NaN", i)
		}
		if positive[i] {
			np++
		} else {
			nn++
		}
	}
	if np == 0 || nn == 0 {
		return nil, 0, 0, fmt.Errorf("auc: need both classes, have %d positive and %d negative", np, nn)
	}
	idx = make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	return idx, np, nn, nil
}
