package worker_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/worker"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// A trainer is ready only while it is in a session the coordinator has
// welcomed: not before its first, and not after the coordinator goes away
// (the reason names the ended session).
func TestReadyFollowsTheSession(t *testing.T) {
	const p = 6
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "coordinator.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := coordinator.New(coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 32, WarmupRecords: 100,
		Deadline: time.Second, CheckpointRounds: 1 << 30}, store, testenv.Quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, srv)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := worker.New(worker.Config{ID: "r1", Conn: conn, Log: testenv.Quiet(), Source: worker.NewSynth(1, 5, p, 2, 0.2, 0),
		MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Ready(); err == nil || !strings.Contains(err.Error(), "not in a training session") {
		t.Fatalf("Ready before Run = %v, want not in a training session", err)
	}
	coCtx, stopCo := context.WithCancel(ctx)
	coDone := make(chan struct{})
	go func() { srv.Run(coCtx); close(coDone) }()
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	waitFor(t, 30*time.Second, "the trainer became ready in a session", func() bool { return w.Ready() == nil })
	stopCo()
	<-coDone
	gs.Stop() // the coordinator goes away
	waitFor(t, 30*time.Second, "the trainer stopped being ready when its session ended", func() bool {
		err := w.Ready()
		return err != nil && strings.Contains(err.Error(), "the last one ended")
	})
	cancel()
	<-done
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
