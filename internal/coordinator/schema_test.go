package coordinator

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

// runWorker runs a worker with cfg against c until it returns or timeout,
// returning how long it took and Run's error.
func (c *cluster) runWorker(cfg trainer.Config, timeout time.Duration) (time.Duration, error) {
	c.t.Helper()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close()
	cfg.Conn, cfg.Log, cfg.MinBackoff, cfg.MaxBackoff = conn, quiet(), 10*time.Millisecond, 100*time.Millisecond
	w, err := trainer.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err = w.Run(ctx)
	return time.Since(start), err
}

// A worker whose records do not fit the model (other names, the same
// names in another order, another width, a name twice) is refused at
// join for good: Run returns ErrRefused at once, naming both lists, and
// never retries. One that fits, or that sends only its width, trains.
func TestJoinRefusesAnotherSchema(t *testing.T) {
	const p = 4
	names := []string{"cpu", "mem", "disk", "net"}
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Features: names, Batch: 16, Deadline: time.Second, CheckpointRounds: 1000}
	c := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	x := synth.LowRank(rand.New(rand.NewPCG(1, 2)), 4000, p, 2, 0.3)
	x5 := synth.LowRank(rand.New(rand.NewPCG(1, 2)), 100, p+1, 2, 0.3)
	for _, tc := range []struct {
		name     string
		features []string
		src      trainer.Source
		want     []string // in the refusal; nil: trains
	}{
		{"reordered", []string{"mem", "cpu", "disk", "net"}, trainer.NewSlice(x, p, true),
			[]string{"4 features [mem cpu disk net]", "the same names in another order", "model's 4 features [cpu mem disk net]", `position 1: "mem"`}},
		{"renamed", []string{"cpu", "mem", "disk", "nic"}, trainer.NewSlice(x, p, true),
			[]string{"other names", "[cpu mem disk nic]", "[cpu mem disk net]", `position 4: "nic"`}},
		{"duplicate", []string{"cpu", "mem", "cpu", "net"}, trainer.NewSlice(x, p, true), []string{`feature "cpu" is named twice`}},
		{"wider", []string{"cpu", "mem", "disk", "net", "gpu"}, trainer.NewSlice(x5, p+1, true),
			[]string{"5 features [cpu mem disk net gpu]", "the model takes 4 features [cpu mem disk net]"}},
		{"wider unnamed", nil, trainer.NewSlice(x5, p+1, true), []string{"5 features (unnamed)", "the model takes 4 features [cpu mem disk net]"}},
		{"same", names, trainer.NewSlice(x, p, true), nil},
		{"unnamed", nil, trainer.NewSlice(x, p, true), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			took, err := c.runWorker(trainer.Config{ID: tc.name, Source: tc.src, Features: tc.features, Format: "csv"}, 2*time.Second)
			if tc.want == nil {
				if errors.Is(err, trainer.ErrRefused) {
					t.Fatalf("a fitting worker was refused: %v", err)
				}
				return
			}
			if !errors.Is(err, trainer.ErrRefused) {
				t.Fatalf("Run returned %v after %v, want ErrRefused", err, took)
			}
			if took > time.Second {
				t.Errorf("refusal took %v: retried?", took)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal %q lacks %q", err, w)
				}
			}
		})
	}
	if st := c.srv.Snapshot(); st.Round == 0 {
		t.Error("the fitting workers trained no round")
	}
}

// A coordinator started on a store whose checkpoint was trained on other
// features refuses to start, in feature terms and naming both lists; a
// width alone (positional records) of the same count resumes.
func TestRestartWithOtherFeaturesIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ck.db")
	names := []string{"cpu", "mem", "disk", "net"}
	spec := ae.Spec{Input: 4, Code: 2}.Normalize()
	m, err := ae.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(rand.New(rand.NewPCG(1, 1)))
	ck := checkpoint.Build(m, ae.NewAdam(m.NumParams(), 1e-3), ae.NewNormalizer(4), names)
	ck.Version = 7
	store, err := checkpoint.Open(path, checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Put(ck); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		features []string
		input    int
		want     []string // nil: resumes
	}{
		{"reordered", []string{"net", "mem", "disk", "cpu"}, 4, []string{"--features gives 4 features [net mem disk cpu]", "the same names in another order", "[cpu mem disk net]", "checkpoint 7"}},
		{"fewer", []string{"cpu", "mem", "disk"}, 3, []string{"--features gives 3 features [cpu mem disk]", "but the model takes 4 features [cpu mem disk net]"}},
		{"same", names, 4, nil},
		{"width only", nil, 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			s.Input = tc.input
			_, err := New(Config{Spec: s.Normalize(), Features: tc.features, Batch: 16}, store, quiet(), nil)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSchema) {
				t.Fatalf("New returned %v, want ErrSchema", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// Every checkpoint a coordinator writes carries its store's id as the
// model lineage; a coordinator on a new store starts another lineage.
func TestCheckpointsCarryTheStoreLineage(t *testing.T) {
	const p = 4
	lineage := func() (string, string) {
		path := filepath.Join(t.TempDir(), "ck.db")
		cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 16, Deadline: time.Second, CheckpointRounds: 5, MaxRounds: 12}
		c := startCluster(t, cfg, path)
		ctx, stop := context.WithCancel(context.Background())
		c.worker(ctx, "w", trainer.NewSlice(synth.LowRank(rand.New(rand.NewPCG(1, 2)), 4000, p, 2, 0.3), p, true))
		c.wait(30*time.Second, stop)
		c.srv.mu.Lock()
		latest := c.srv.latest
		c.srv.mu.Unlock()
		if latest == nil {
			t.Fatal("no checkpoint written")
		}
		return latest.GetLineage(), c.srv.store.ID()
	}
	a, idA := lineage()
	b, idB := lineage()
	if a == "" || a != idA || b != idB {
		t.Errorf("checkpoint lineages %q, %q; store ids %q, %q", a, b, idA, idB)
	}
	if a == b {
		t.Errorf("two new stores gave the same lineage %q", a)
	}
}

// --features naming a feature twice is a configuration error.
func TestDuplicateFeatureNamesAreRefused(t *testing.T) {
	err := Config{Spec: ae.Spec{Input: 3, Code: 2}, Features: []string{"cpu", "mem", "cpu"}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `feature "cpu" is named twice`) {
		t.Errorf("Validate = %v, want the duplicate named", err)
	}
}
