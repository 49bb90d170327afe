package trainer

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"github.com/recon-ad/recon/pkg/synth"
)

// Slice is a Source over records in memory, read in order; with Cycle it
// starts over at the end instead of returning io.EOF.
type Slice struct {
	mu    sync.Mutex
	x     []float64
	p     int
	next  int
	Cycle bool // start over at the end instead of returning io.EOF
}

// NewSlice returns a Source over the records of x (width p).
func NewSlice(x []float64, p int, cycle bool) *Slice {
	if p < 1 || len(x)%p != 0 || len(x) == 0 {
		panic(fmt.Sprintf("worker: NewSlice: %d values for width %d", len(x), p))
	}
	return &Slice{x: x, p: p, Cycle: cycle}
}

// Width implements Source.
func (s *Slice) Width() int { return s.p }

// Read implements Source.
func (s *Slice) Read(dst []float64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	rows := len(s.x) / s.p
	for (n+1)*s.p <= len(dst) {
		if s.next == rows {
			if !s.Cycle {
				if n == 0 {
					return 0, io.EOF
				}
				return n, nil
			}
			s.next = 0
		}
		copy(dst[n*s.p:(n+1)*s.p], s.x[s.next*s.p:(s.next+1)*s.p])
		s.next++
		n++
	}
	return n, nil
}

// Synth is an endless Source of the seed's kind: records near a
// low-rank subspace plus noise, with a fraction of injected anomalies
// (a record pushed off the subspace).
type Synth struct {
	mu      sync.Mutex
	rng     *rand.Rand
	basis   []float64
	p, rank int
	sd      float64
	anomaly float64
}

// NewSynth returns a synthetic source. basisSeed fixes the subspace (every
// worker of one stream must share it); seed fixes this source's records.
func NewSynth(basisSeed, seed uint64, p, rank int, sd, anomalyRate float64) *Synth {
	return &Synth{rng: rand.New(rand.NewPCG(seed, 0x5)), basis: synth.Basis(rand.New(rand.NewPCG(basisSeed, 0xba5e)), rank, p),
		p: p, rank: rank, sd: sd, anomaly: anomalyRate}
}

// Width implements Source.
func (s *Synth) Width() int { return s.p }

// Read implements Source.
func (s *Synth) Read(dst []float64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(dst) / s.p
	synth.Sample(s.rng, dst[:n*s.p], s.basis, s.rank, s.sd)
	for r := 0; r < n; r++ {
		if s.anomaly > 0 && s.rng.Float64() < s.anomaly {
			row := dst[r*s.p : (r+1)*s.p]
			for j := range row {
				row[j] += 4 * s.rng.NormFloat64()
			}
		}
	}
	return n, nil
}
