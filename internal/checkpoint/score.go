package checkpoint

import (
	"slices"

	"github.com/recon-ad/recon/pkg/ae"
)

// This file is the scoring core that `scorer run` (internal/scorer's Batch)
// and `scorer score` share, so that a record scores the same online and
// offline: the score of a standardized record, each feature's share of it,
// and the features an alert or a row of output names.

// Score writes the scores of the standardized records z into scores, and
// each feature's share of its record's score into contrib when it is not
// nil (row-major, the shape of z): the residuals whitened when the
// checkpoint has a whitening, their squares otherwise. rec is scratch of
// z's length; it is left holding the reconstructions.
func (l *Loaded) Score(scores, contrib, rec, z []float64) {
	l.ScoreOn(l.Model, scores, contrib, rec, z)
}

// ScoreOn is Score with m, a clone of l.Model (ae.Model.Clone), doing the
// forward pass: a model's scratch buffers serve one goroutine at a time.
func (l *Loaded) ScoreOn(m *ae.Model, scores, contrib, rec, z []float64) {
	m.Reconstruct(rec, z)
	if l.Whitening != nil {
		l.Whitening.Score(scores, contrib, z, rec)
		return
	}
	p := m.Spec().Input
	for j := range scores {
		var s float64
		for f := j * p; f < (j+1)*p; f++ {
			d := z[f] - rec[f]
			if contrib != nil {
				contrib[f] = d * d
			}
			s += d * d
		}
		scores[j] = s
	}
}

// TopFeatures returns the indices of the k largest shares of contrib
// (one record's row of Score's contrib), largest first, ties in feature
// order; idx is reused for the result when it has room.
func TopFeatures(idx []int, contrib []float64, k int) []int {
	idx = idx[:0]
	for i := range contrib {
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(a, c int) int { // largest first
		switch x, y := contrib[a], contrib[c]; {
		case x > y:
			return -1
		case x < y:
			return 1
		}
		return 0
	})
	return idx[:min(max(k, 0), len(idx))]
}
