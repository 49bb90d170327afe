package coordinator

import (
	"context"
	"math/rand/v2"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/synth"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// TestWideModelOverGRPC: a 2,500-feature model trains over real gRPC with
// the options the binaries use. Its gradients (5 MB), round starts (the
// parameters, 5 MB) and checkpoint (parameters and Adam state, 15 MB) are
// each larger than gRPC's 4 MiB default: without ServerOptions the
// coordinator refuses the gradients, without CoordinatorDialOptions the
// worker refuses the round starts and the client the checkpoint.
func TestWideModelOverGRPC(t *testing.T) {
	const p = 2500
	spec := DefaultSpec
	spec.Input = p
	spec = fit.AutoSpec(spec, p, nil).Normalize()
	cfg := Config{Spec: spec, Batch: 32, MaxRounds: 4, WarmupRecords: 100, Deadline: 30 * time.Second, CheckpointRounds: 2}
	store, err := checkpoint.Open(filepath.Join(t.TempDir(), "ck.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := New(cfg, store, quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(ServerOptions(cfg.Spec)...)
	reconv1.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()

	dial := cli.CoordinatorDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	x := synth.LowRank(rand.New(rand.NewPCG(1, 1)), 400, p, 5, 0.3)
	w, err := trainer.New(trainer.Config{ID: "wide", Source: trainer.NewSlice(x, p, true), Conn: conn, Log: quiet(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	go func() { _ = w.Run(wctx) }()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("coordinator Run: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("4 rounds of a %d-wide model did not finish (status %+v)", p, srv.Snapshot())
	}
	if st := srv.Snapshot(); st.Round != cfg.MaxRounds {
		t.Fatalf("ended at round %d, want %d", st.Round, cfg.MaxRounds)
	}
	ck, err := reconv1.NewCoordinatorClient(conn).GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{})
	if err != nil {
		t.Fatalf("GetCheckpoint of the %d-wide model: %v", p, err)
	}
	if n := proto.Size(ck); n <= 4<<20 {
		t.Fatalf("the checkpoint is %d bytes: too small to show the limit", n)
	}
	t.Logf("checkpoint %d bytes, code %d, server receive limit %d bytes", proto.Size(ck), ck.GetSpec().GetCode(), MaxMessageBytes(cfg.Spec))
}
