package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

// binaries builds trainer and scorer once for the process-level tests.
var binDir string

func TestMain(m *testing.M) { procs.RunWithBinaries(m, &binDir, "../trainer", "../scorer") }

func writeCSV(t *testing.T, rows, p int, seed uint64) string {
	t.Helper()
	x := synth.LowRank(rand.New(rand.NewPCG(seed, 1)), rows, p, 2, 0.3)
	var b strings.Builder
	for j := 0; j < p; j++ {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "f%d", j)
	}
	b.WriteString(",label\n")
	for r := 0; r < rows; r++ {
		for j := 0; j < p; j++ {
			fmt.Fprintf(&b, "%g,", x[r*p+j])
		}
		fmt.Fprintf(&b, "%d\n", r%2)
	}
	path := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestFitScoreRoundTrip: fit, close, reopen, score gives bit-identical
// scores, in process and through the binaries.
func TestFitScoreRoundTrip(t *testing.T) {
	data := writeCSV(t, 400, 6, 1)
	db := filepath.Join(t.TempDir(), "model.db")
	if _, stderr, code := run(t, "trainer", "fit", "--input", data, "--label", "label", "--out", db, "--epochs", "30", "--quiet"); code != 0 {
		t.Fatalf("trainer fit exit %d: %s", code, stderr)
	}
	out1, stderr, code := run(t, "scorer", "score", "--model", db, "--input", data, "--label", "label")
	if code != 0 {
		t.Fatalf("scorer score exit %d: %s", code, stderr)
	}
	out2, _, _ := run(t, "scorer", "score", "--model", db, "--input", data, "--label", "label")
	if out1 != out2 {
		t.Fatal("two scoring runs of the same checkpoint differ")
	}
	// The scores printed equal, bit for bit, the reloaded model's own.
	s, err := checkpoint.Open(db, checkpoint.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Latest()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err := checkpoint.Load(c)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(out1)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(data)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")[1:]
	if len(recs) != len(lines)+1 {
		t.Fatalf("%d output rows for %d records", len(recs)-1, len(lines))
	}
	x := make([]float64, 0, len(lines)*6)
	for _, ln := range lines {
		f := strings.Split(ln, ",")
		for _, v := range f[:6] {
			fv, _ := strconv.ParseFloat(v, 64)
			x = append(x, fv)
		}
	}
	l.Normalizer.Transform(x, x)
	// fit's threshold is on residuals whitened on its held-out rows, and
	// so are the scores scorer score prints (as the streaming scorer's).
	if l.Whitening == nil {
		t.Fatal("trainer fit stored no whitening")
	}
	want := make([]float64, len(lines))
	rec := make([]float64, len(x))
	l.Model.Reconstruct(rec, x)
	l.Whitening.Score(want, nil, x, rec)
	for i, r := range recs[1:] {
		got, err := strconv.ParseFloat(r[2], 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want[i]) {
			t.Fatalf("row %d: printed score %s, reloaded model %v", i+1, r[2], want[i])
		}
	}
}

// TestCheckpointScoresBitIdentical: the model fit returns and the model a
// stored, closed and reopened checkpoint rebuilds score identically.
func TestCheckpointScoresBitIdentical(t *testing.T) {
	x := synth.LowRank(rand.New(rand.NewPCG(5, 5)), 300, 8, 3, 0.2)
	for _, variant := range []string{"plain", "denoising", "sparse-kl", "variational"} {
		args := []string{"--variant", variant, "--epochs", "5"}
		fs := newFitFlags(t, args)
		res, err := fit.Fit(context.Background(), fs, x, 8, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float64, 300)
		xs := append([]float64(nil), x...)
		res.Normalizer.Transform(xs, xs)
		res.Model.Score(want, xs)

		db := filepath.Join(t.TempDir(), "m.db")
		s, err := checkpoint.Open(db, checkpoint.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Checkpoint(nil)
		c.Version = 1
		if err := s.Put(c); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s, err = checkpoint.Open(db, checkpoint.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		c2, err := s.Latest()
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		l, err := checkpoint.Load(c2)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]float64, 300)
		xs2 := append([]float64(nil), x...)
		l.Normalizer.Transform(xs2, xs2)
		l.Model.Score(got, xs2)
		for i := range got {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Fatalf("%s: record %d scores %v after the round trip, %v before", variant, i, got[i], want[i])
			}
		}
	}
}

func newFitFlags(t *testing.T, args []string) fit.Config {
	t.Helper()
	cfg := fit.Config{Auto: true, Epochs: 5, Spec: ae.Spec{Activation: ae.Tanh, CodeActivation: ae.Tanh}}
	v, err := ae.ParseVariant(args[1])
	if err != nil {
		t.Fatal(err)
	}
	cfg.Spec.Variant = v
	if v == ae.SparseKL {
		cfg.Spec.CodeActivation = ae.Sigmoid
	}
	return cfg
}

// TestBadInputOneLineError: every bad input ends with one line on stderr,
// a non-zero exit, no panic and no checkpoint written.
func TestBadInputOneLineError(t *testing.T) {
	dir := t.TempDir()
	good := writeCSV(t, 100, 4, 2)
	files := map[string]string{
		"empty":   "",
		"ragged":  "a,b,c\n1,2,3\n4,5\n",
		"nan":     "a,b,c\n1,2,3\n4,NaN,6\n",
		"inf":     "a,b,c\n1,2,3\n4,+Inf,6\n",
		"text":    "a,b,c\n1,2,3\n4,five,6\n",
		"onerow":  "a,b,c\n1,2,3\n",
		"noheadr": "1,2\n3,4\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name+".csv"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(dir, "model.db")
	if _, stderr, code := run(t, "trainer", "fit", "--input", good, "--label", "label", "--out", db, "--epochs", "3", "--quiet"); code != 0 {
		t.Fatalf("fit: %s", stderr)
	}
	for _, tc := range []struct {
		name string
		cmd  string
		args []string
		want string
		code int
	}{
		{"empty file", "trainer", []string{"fit", "--input", filepath.Join(dir, "empty.csv"), "--out", filepath.Join(dir, "a.db")}, "no data rows", 1},
		{"ragged row", "trainer", []string{"fit", "--input", filepath.Join(dir, "ragged.csv"), "--out", filepath.Join(dir, "a.db")}, "line 3: 2 fields, want 3", 1},
		{"NaN", "trainer", []string{"fit", "--input", filepath.Join(dir, "nan.csv"), "--out", filepath.Join(dir, "a.db")}, `line 3, column "b": NaN is not a finite number`, 1},
		{"Inf", "trainer", []string{"fit", "--input", filepath.Join(dir, "inf.csv"), "--out", filepath.Join(dir, "a.db")}, `line 3, column "b": +Inf is not a finite number`, 1},
		{"text cell", "trainer", []string{"fit", "--input", filepath.Join(dir, "text.csv"), "--out", filepath.Join(dir, "a.db")}, `line 3, column "b": "five" is not a number`, 1},
		{"one row", "trainer", []string{"fit", "--input", filepath.Join(dir, "onerow.csv"), "--out", filepath.Join(dir, "a.db")}, "need at least 2 rows", 1},
		{"missing column", "trainer", []string{"fit", "--input", good, "--columns", "f0,nope", "--out", filepath.Join(dir, "a.db")}, `column "nope" is not in the header`, 1},
		{"missing input", "trainer", []string{"fit", "--input", filepath.Join(dir, "absent.csv"), "--out", filepath.Join(dir, "a.db")}, "no such file", 1},
		{"unwritable output", "trainer", []string{"fit", "--input", good, "--out", "/proc/recon/model.db"}, "open checkpoint store /proc/recon/model.db", 1},
		{"no --out", "trainer", []string{"fit", "--input", good}, "--out is required", 2},
		{"bad flag", "trainer", []string{"fit", "--epochs", "many"}, "invalid value", 2},
		{"bad variant", "trainer", []string{"fit", "--input", good, "--out", filepath.Join(dir, "a.db"), "--variant", "fancy"}, "unknown variant", 2},
		{"overcomplete", "trainer", []string{"fit", "--input", good, "--label", "label", "--out", filepath.Join(dir, "a.db"), "--code", "9"}, "overcomplete", 1},
		{"bad env", "trainer", []string{"fit", "--input", good, "--out", filepath.Join(dir, "a.db")}, "RECON_EPOCHS", 2},
		{"score missing column", "scorer", []string{"score", "--model", db, "--input", filepath.Join(dir, "ragged.csv")}, `column "f0" is not in the header`, 1},
		{"score wrong width", "scorer", []string{"score", "--model", db, "--input", filepath.Join(dir, "noheadr.csv")}, "2 feature columns, the model (version 1) expects 4", 1},
		{"score text cell", "scorer", []string{"score", "--model", filepath.Join(dir, "absent.db")}, "no such file", 1},
		{"score unwritable output", "scorer", []string{"score", "--model", db, "--input", good, "--label", "label", "--output", "/proc/recon/out.csv"}, "/proc/recon/out.csv", 1},
		{"unknown command", "trainer", []string{"train"}, `unknown command "train"`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(binDir, tc.cmd), tc.args...)
			if tc.name == "bad env" {
				cmd.Env = append(os.Environ(), "RECON_EPOCHS=lots")
			}
			var e bytes.Buffer
			cmd.Stderr = &e
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			msg := strings.TrimRight(e.String(), "\n")
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q does not contain %q", msg, tc.want)
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("error is not one line: %q", msg)
			}
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine") {
				t.Errorf("stack trace: %q", msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a.db")); !os.IsNotExist(err) {
		t.Errorf("a failed fit left a checkpoint store behind: %v", err)
	}
}

// TestSweepKDemo: sweep-k --demo prints linear rows within 1% of the PCA
// closed form for k = 1..9, suggests k = 3 and writes the plot.
func TestSweepKDemo(t *testing.T) {
	png := filepath.Join(t.TempDir(), "sweep.png")
	out, stderr, code := run(t, "trainer", "sweep-k", "--demo", "--plot", png, "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Log("\n" + out)
	rows := 0
	for _, ln := range strings.Split(out, "\n") {
		f := strings.Fields(ln)
		if len(f) != 7 {
			continue
		}
		k, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		train, _ := strconv.ParseFloat(f[1], 64)
		closed, _ := strconv.ParseFloat(f[2], 64)
		if train > 1.01*closed || train < closed*(1-1e-4) {
			t.Errorf("k=%d: training error %v not within 1%% of the closed form %v", k, train, closed)
		}
		rows++
	}
	if rows != 9 {
		t.Errorf("%d table rows with k = 1..9, want 9", rows)
	}
	if !strings.Contains(out, "suggested k = 3") {
		t.Errorf("no 'suggested k = 3' in the output")
	}
	b, err := os.ReadFile(png)
	if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
		t.Fatalf("plot %s: %v (%d bytes)", png, err, len(b))
	}
}
