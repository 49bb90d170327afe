//go:build e2e

package e2e

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/procs"
)

// damageRoots overwrites, with random bytes, the root page of the bucket
// tree that each of a bbolt file's two meta pages points to: the damage a
// torn write or a bad sector does to a branch or leaf page at the top of
// the tree.
func damageRoots(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := int(binary.LittleEndian.Uint32(b[16+8:])) // meta: page header (16), magic, version, page size
	rng := rand.New(rand.NewPCG(7, 7))
	for m := 0; m < 2; m++ {
		root := int(binary.LittleEndian.Uint64(b[m*ps+16+16:])) // meta's root bucket: its page id
		if root < 2 || (root+1)*ps > len(b) {
			t.Fatalf("meta %d names root page %d of a %d-byte file", m, root, len(b))
		}
		for i := root*ps + 16; i < (root+1)*ps; i++ { // keep the page header; garble the elements
			b[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedFiles: the coordinator's store and a scorer's cache are
// damaged at the top of their trees while stopped. The coordinator starts
// from the newest checkpoint that verifies, saying so and keeping the
// damaged file; the scorer sets its cache aside, takes the model from the
// coordinator and scores. Neither panics.
func TestDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	kafkaAddr, grpcAddr, coordMetrics, scorerMetrics := addr(t), addr(t), addr(t), addr(t)
	store, cache := filepath.Join(dir, "coordinator.db"), filepath.Join(dir, "scorer.db")
	devkafka := procs.New(binDir, dir, "devkafka", "devkafka", "--listen", kafkaAddr, "--data-dir", filepath.Join(dir, "kafka-data"))
	coordArgs := []string{"--features", "30", "--listen", grpcAddr, "--metrics-listen", coordMetrics, "--store", store,
		"--checkpoint-interval", "200ms", "--checkpoint-change", "-1", "--deadline", "1s", "--keep", "0"} // a checkpoint every look: the test wants 10
	coord := procs.New(binDir, dir, "coordinator", "coordinator", coordArgs...)
	trainer := procs.New(binDir, dir, "trainer", "trainer", "run", "--source", "kafka", "--brokers", kafkaAddr, "--features", "30",
		"--coordinator", grpcAddr, "--id", "trainer-1", "--metrics-listen", "")
	scorer := procs.New(binDir, dir, "scorer", "scorer", "run", "--brokers", kafkaAddr, "--coordinator", grpcAddr, "--cache", cache,
		"--scores-topic", "recon-scores", "--metrics-listen", scorerMetrics)
	load := procs.New(binDir, dir, "loadgen", "loadgen", "--brokers", kafkaAddr, "--rate", "2000")
	startInOrder(t, devkafka, coord, trainer, scorer, load)
	version := func() float64 { return scrape(coordMetrics, "recon_coordinator_checkpoint_version") }
	scored := func() float64 { return scrape(scorerMetrics, "recon_scorer_records_total") }
	waitFor(t, 90*time.Second, "10 checkpoints and scoring", func() bool { return version() >= 10 && scored() > 0 })
	for _, pr := range []*procs.Proc{scorer, trainer, coord} {
		if _, err := pr.Stop(30 * time.Second); err != nil {
			t.Fatalf("%s stop: %v", pr.Name, err)
		}
	}
	damageRoots(t, store)
	damageRoots(t, cache)

	for _, pr := range []*procs.Proc{coord, trainer, scorer} {
		if err := pr.Start(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the coordinator to resume", func() bool { return strings.Contains(coord.LogText(), "resumed from checkpoint") })
	before := scored()
	waitFor(t, 60*time.Second, "the scorer to score again", func() bool { return scored() > before+1000 })
	for _, pr := range []*procs.Proc{coord, scorer} {
		text := pr.LogText()
		if strings.Contains(text, "panic") {
			t.Errorf("%s panicked:\n%s", pr.Name, tail(text, 3000))
		}
		asides, _ := filepath.Glob(filepath.Join(dir, filepath.Base(map[*procs.Proc]string{coord: store, scorer: cache}[pr])+".damaged-*"))
		if len(asides) != 1 {
			t.Errorf("%s: %d damaged copies set aside, want 1", pr.Name, len(asides))
		}
	}
	for _, ln := range strings.Split(coord.LogText(), "\n") {
		if strings.Contains(ln, "damaged") || strings.Contains(ln, "resumed from checkpoint") {
			t.Logf("coordinator: %s", ln)
		}
	}
	for _, ln := range strings.Split(scorer.LogText(), "\n") {
		if strings.Contains(ln, "damaged") {
			t.Logf("scorer: %s", ln)
		}
	}
}
