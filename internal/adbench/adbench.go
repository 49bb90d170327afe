// Package adbench loads labelled tabular anomaly-detection sets (ADBench's
// CSV layout: numeric feature columns and a 0/1 "label" column), splits them
// by the two common protocols, scores peer detectors on the same splits
// (scikit-learn through scripts/peers/peers.py) and computes the figures
// recon's evaluations print. It does no training of its own.
package adbench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/recon-ad/recon/internal/table"
)

// Set is one labelled data set.
type Set struct {
	Name    string    // the file name without its extension
	Names   []string  // feature names
	X       []float64 // rows x len(Names), row-major
	Anomaly []bool    // one label per row
}

// Width returns the number of features.
func (s *Set) Width() int { return len(s.Names) }

// Rows returns the number of rows.
func (s *Set) Rows() int { return len(s.Anomaly) }

// Load reads a CSV file with a header and a label column (1 anomaly, 0
// normal).
func Load(path, label string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := table.Read(bufio.NewReader(f), table.Options{Header: table.HeaderYes, Label: label})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Set{Name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), Names: t.Names, X: t.X}
	s.Anomaly = make([]bool, t.Rows)
	for i, l := range t.Labels {
		v, err := strconv.ParseFloat(strings.TrimSpace(l), 64)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: label %q is not a number", path, t.Lines[i], l)
		}
		s.Anomaly[i] = v != 0
	}
	return s, nil
}

// LoadDir loads every *.csv file of dir, in name order.
func LoadDir(dir, label string) ([]*Set, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no .csv files", dir)
	}
	slices.Sort(files)
	var sets []*Set
	for _, f := range files {
		s, err := Load(f, label)
		if err != nil {
			return nil, err
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// Protocol is how a set is split into training and test rows.
type Protocol int

const (
	// Contaminated is ADBench's unsupervised setting and what a stream is:
	// a stratified 70/30 split, the 70% trained on with its anomalies.
	Contaminated Protocol = iota
	// Clean is the novelty setting: train on 60% of the normal rows, test
	// on the other 40% and every anomaly.
	Clean
)

// String returns the protocol's name.
func (p Protocol) String() string {
	if p == Clean {
		return "clean"
	}
	return "contaminated"
}

// Split is one seeded split of a set.
type Split struct {
	Set         *Set     // the data set split
	Protocol    Protocol // how it is split
	Seed        uint64   // seeds the split and the peers
	Train, Test []int    // row indices, Train in a seeded random order
}

// NewSplit splits s by protocol with seed.
func NewSplit(s *Set, proto Protocol, seed uint64) Split {
	rng := rand.New(rand.NewPCG(seed, 0xadbe))
	var normal, anomalous []int
	for i, a := range s.Anomaly {
		if a {
			anomalous = append(anomalous, i)
		} else {
			normal = append(normal, i)
		}
	}
	rng.Shuffle(len(normal), func(i, j int) { normal[i], normal[j] = normal[j], normal[i] })
	rng.Shuffle(len(anomalous), func(i, j int) { anomalous[i], anomalous[j] = anomalous[j], anomalous[i] })
	sp := Split{Set: s, Protocol: proto, Seed: seed}
	switch proto {
	case Clean:
		n := int(0.6 * float64(len(normal)))
		sp.Train = slices.Clone(normal[:n])
		sp.Test = append(slices.Clone(normal[n:]), anomalous...)
	default:
		nn := int(math.Round(0.7 * float64(len(normal))))
		na := int(math.Round(0.7 * float64(len(anomalous))))
		sp.Train = append(slices.Clone(normal[:nn]), anomalous[:na]...)
		sp.Test = append(slices.Clone(normal[nn:]), anomalous[na:]...)
	}
	rng.Shuffle(len(sp.Train), func(i, j int) { sp.Train[i], sp.Train[j] = sp.Train[j], sp.Train[i] })
	slices.Sort(sp.Test)
	return sp
}

// Rows returns the rows idx of the split's set, row-major.
func (sp Split) Rows(idx []int) []float64 {
	p := sp.Set.Width()
	out := make([]float64, 0, len(idx)*p)
	for _, r := range idx {
		out = append(out, sp.Set.X[r*p:(r+1)*p]...)
	}
	return out
}

// Labels returns the labels of rows idx.
func (sp Split) Labels(idx []int) []bool {
	out := make([]bool, len(idx))
	for i, r := range idx {
		out[i] = sp.Set.Anomaly[r]
	}
	return out
}

// PeerScores are the test scores of the peer detectors on one split, in
// the order of Split.Test.
type PeerScores struct {
	IForest []float64 // IsolationForest (100 trees) on the raw rows
	KNN     []float64 // distance to the 5th nearest training row, standardized
}

// Peers scores every split with the peer detectors of script (run by
// python), working in a temporary directory.
func Peers(ctx context.Context, python, script string, splits []Split) ([]PeerScores, error) {
	dir, err := os.MkdirTemp("", "recon-peers-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	for i, sp := range splits {
		d := filepath.Join(dir, fmt.Sprintf("%05d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
		if err := writeRows(filepath.Join(d, "train.csv"), sp.Rows(sp.Train), sp.Set.Width()); err != nil {
			return nil, err
		}
		if err := writeRows(filepath.Join(d, "test.csv"), sp.Rows(sp.Test), sp.Set.Width()); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(d, "seed"), []byte(strconv.FormatUint(sp.Seed, 10)), 0o644); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, python, script, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", python, script, err, out)
	}
	res := make([]PeerScores, len(splits))
	for i, sp := range splits {
		d := filepath.Join(dir, fmt.Sprintf("%05d", i))
		if res[i].IForest, err = readScores(filepath.Join(d, "iforest.txt"), len(sp.Test)); err != nil {
			return nil, err
		}
		if res[i].KNN, err = readScores(filepath.Join(d, "knn.txt"), len(sp.Test)); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func writeRows(path string, x []float64, p int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i, v := range x {
		if i%p != 0 {
			w.WriteByte(',')
		}
		w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
		if i%p == p-1 {
			w.WriteByte('\n')
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readScores(path string, want int) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(string(b))
	if len(fields) != want {
		return nil, fmt.Errorf("%s: %d scores, want %d", path, len(fields), want)
	}
	out := make([]float64, want)
	for i, f := range fields {
		if out[i], err = strconv.ParseFloat(f, 64); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return out, nil
}

// Alarms returns the share of normal rows scored above threshold (the
// false-alarm rate) and the share of anomalies scored above it (recall).
func Alarms(scores []float64, anomaly []bool, threshold float64) (far, recall float64) {
	var nn, na, fa, tp int
	for i, s := range scores {
		if anomaly[i] {
			na++
			if s > threshold {
				tp++
			}
		} else {
			nn++
			if s > threshold {
				fa++
			}
		}
	}
	return ratio(fa, nn), ratio(tp, na)
}

// RecallAt returns the recall of scores at the threshold whose false-alarm
// rate on the normal rows is at most far (the largest such share): the
// recall a detector reaches at another's false-alarm rate.
func RecallAt(scores []float64, anomaly []bool, far float64) float64 {
	var normal []float64
	for i, s := range scores {
		if !anomaly[i] {
			normal = append(normal, s)
		}
	}
	slices.Sort(normal)
	allowed := int(math.Floor(far * float64(len(normal))))
	threshold := math.Inf(1)
	if len(normal) > 0 {
		// Alert above the (allowed+1)-th largest normal score.
		threshold = normal[max(len(normal)-1-allowed, 0)]
		if allowed >= len(normal) {
			threshold = math.Inf(-1)
		}
	}
	_, recall := Alarms(scores, anomaly, threshold)
	return recall
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}
