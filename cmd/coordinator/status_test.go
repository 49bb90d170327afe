package main

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
)

// TestStatusCommand runs the coordinator command in this process with one
// trainer worker: `coordinator status --json` shows it warming with no
// worker first, then training (a round, its loss, a state among the four,
// the version, records) with the worker's join, gradients and last
// gradient advancing; the text form shows the same, and `checkpoints list`
// shows each version's loss, from the list alone.
func TestStatusCommand(t *testing.T) {
	const p = 6
	addr := serveCoordinator(t, "--features", "6", "--metrics-listen", "", "--warmup-records", "200", "--batch", "64",
		"--deadline", "2s", "--checkpoint-rounds", "10", "--checkpoint-interval", "50ms", "--checkpoint-change", "-1")
	at := []string{"--coordinator", addr}
	status := func() statusJSON {
		t.Helper()
		out, err := command("status", append([]string{"--json"}, at...)...)
		var st statusJSON
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return st
	}
	start := time.Now()
	st := status()
	if st.State != "warming" || st.Round != 0 || st.Loss != 0 || st.Workers == nil || len(st.Workers) != 0 || st.Lineage == "" || st.Time.Before(start.Add(-time.Second)) {
		t.Fatalf("status --json before any worker: %+v; want warming, round 0, workers [], a lineage", st)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	w, err := trainer.New(trainer.Config{ID: "w1", Conn: dial(t, addr), Log: testkit.Quiet(), Source: trainer.NewSynth(1, 1, p, 2, 0.2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(done)
	}()
	defer func() { stop(); <-done }()
	waitFor(t, 60*time.Second, "20 rounds and a checkpoint", func() bool {
		st = status()
		return st.Round >= 20 && st.Version > 0 && len(st.Workers) == 1 && st.Workers[0].LastGradientAt != nil
	})
	ws := st.Workers[0]
	if !slices.Contains([]string{"warming", "learning", "settled", "maintaining"}, st.State) || !(st.Loss > 0) || st.Records == 0 ||
		!(st.PresentationsPerRecord > 0) || ws.ID != "w1" || ws.JoinedAt == nil || ws.Gradients == 0 || ws.Benched ||
		ws.LastGradientAt.Before(*ws.JoinedAt) || ws.LastGradientAt.After(st.Time) {
		t.Errorf("status --json while training: %+v, worker %+v", st, ws)
	}
	waitFor(t, 30*time.Second, "the worker's last gradient advancing", func() bool {
		now := status()
		return len(now.Workers) == 1 && now.Workers[0].LastGradientAt.After(*ws.LastGradientAt) && now.Workers[0].Gradients > ws.Gradients
	})

	out, err := command("status", at...)
	for _, re := range []string{`(?m)^round +[1-9]\d*$`, `(?m)^loss +\d`, `(?m)^state +(learning|settled|maintaining)$`, `(?m)^version +[1-9]`,
		`(?m)^lineage +` + st.Lineage + `$`, `(?m)^workers +1$`, `(?m)^  w1 +\d{4}-\d\d-\d\dT\S+Z +\S+ ago +[1-9]\d* *$`} {
		if err != nil || !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status (%v): no match for %s in\n%s", err, re, out)
		}
	}

	// checkpoints list: each version's loss and write time, from the list.
	out, err = command("checkpoints", append([]string{"list", "--json"}, at...)...)
	var entries []listEntry
	if err != nil || json.Unmarshal([]byte(out), &entries) != nil || len(entries) == 0 {
		t.Fatalf("checkpoints list --json (%v):\n%s", err, out)
	}
	for _, e := range entries {
		if !(e.Loss > 0) || e.CreatedAt == nil || e.CreatedAt.Before(start.Add(-time.Second)) {
			t.Errorf("checkpoints list --json: %+v; want a loss and a write time", e)
		}
	}
	out, err = command("checkpoints", at...)
	if err != nil || !strings.Contains(out, " loss ") ||
		!regexp.MustCompile(`(?m)^\s+\d+\s+\d{4}-\d\d-\d\dT\S+Z\s+\d+\s+\d[\d.e+-]*\s+\S+`).MatchString(out) {
		t.Errorf("checkpoints list (%v): no loss column in\n%s", err, out)
	}
}
