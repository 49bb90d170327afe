package main

import (
	"bytes"
	"encoding/csv"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/pkg/ae"
)

// TestScoreUsesTheCheckpointsWhitening: a coordinator's checkpoint carries
// the residual whitening its threshold is set on; `scorer score` must
// score with it, as the streaming scorer does (its scores are what an
// alert names), not with the plain squared error.
func TestScoreUsesTheCheckpointsWhitening(t *testing.T) {
	const p, n = 4, 200
	m, err := ae.New(ae.Spec{Input: p, Hidden: []int{3}, Code: 2, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m.Init(rng)
	z := make([]float64, n*p)
	for i := range z {
		z[i] = rng.NormFloat64() * float64(1+i%p) // features of unequal spread: whitening matters
	}
	w, err := ae.FitWhitening(m, z, 0.05, 2)
	if err != nil {
		t.Fatal(err)
	}
	c := checkpoint.Build(m, ae.NewAdam(m.NumParams(), 1e-3), ae.NewNormalizer(p), []string{"a", "b", "c", "d"})
	c.Version, c.Threshold, c.Whitening = 1, 10, w.Precision()
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := checkpoint.Open(path, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(c); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var in bytes.Buffer
	in.WriteString("a,b,c,d\n")
	for r := 0; r < 5; r++ {
		var f []string
		for j := 0; j < p; j++ {
			f = append(f, strconv.FormatFloat(z[r*p+j], 'g', -1, 64))
		}
		in.WriteString(strings.Join(f, ",") + "\n")
	}
	var out bytes.Buffer
	if err := runScore(t.Context(), []string{"--model", path}, &in, &out); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) != 6 {
		t.Fatalf("%d rows, %v:\n%s", len(rows), err, out.String())
	}
	rec := make([]float64, 5*p)
	m.Reconstruct(rec, z[:5*p])
	want := make([]float64, 5)
	w.Score(want, nil, z[:5*p], rec)
	plain := make([]float64, 5)
	m.Score(plain, z[:5*p])
	for r := 0; r < 5; r++ {
		got, _ := strconv.ParseFloat(rows[r+1][2], 64)
		if math.Abs(got-want[r]) > 1e-9*math.Max(1, want[r]) {
			t.Errorf("row %d: score %v, want the whitened %v (plain %v)", r+1, got, want[r], plain[r])
		}
	}
}
