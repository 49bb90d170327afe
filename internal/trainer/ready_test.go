package trainer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
)

// A trainer is ready only while it is in a session the coordinator has
// welcomed: not before its first, and not after the coordinator goes away
// (the reason names the ended session).
func TestReadyFollowsTheSession(t *testing.T) {
	const p = 6
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	co := testenv.StartCoordinator(t, coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 32, WarmupRecords: 100,
		Deadline: time.Second, CheckpointRounds: 1 << 30})
	w, err := trainer.New(trainer.Config{ID: "r1", Conn: co.Conn, Log: testkit.Quiet(), Source: trainer.NewSynth(1, 5, p, 2, 0.2, 0),
		MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(); err == nil || !strings.Contains(err.Error(), "not in a training session") {
		t.Fatalf("Ready before Run = %v, want not in a training session", err)
	}
	coCtx, stopCo := context.WithCancel(ctx)
	coDone := make(chan struct{})
	go func() {
		if err := co.Server.Run(coCtx); err != nil {
			t.Errorf("coordinator: %v", err)
		}
		close(coDone)
	}()
	done := make(chan struct{})
	go func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("trainer: %v", err)
		}
		close(done)
	}()
	testkit.Eventually(t, 30*time.Second, func() bool { return w.Ready() == nil }, "the trainer became ready in a session")
	stopCo()
	<-coDone
	co.GRPC.Stop() // the coordinator goes away
	testkit.Eventually(t, 30*time.Second, func() bool {
		err := w.Ready()
		return err != nil && strings.Contains(err.Error(), "the last one ended")
	}, "the trainer stopped being ready when its session ended")
	cancel()
	<-done
}
