// Package testenv is the coordinator's test helper, on top of testkit (the
// harness that depends on no service package): a coordinator serving gRPC
// on a loopback port, stopped by the test's cleanup.
package testenv

import (
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/testkit"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Coordinator is a coordinator serving gRPC on a loopback port.
type Coordinator struct {
	Server *coordinator.Server // call Run to train
	Addr   string              // its gRPC address
	Conn   *grpc.ClientConn    // a client connection to it
	GRPC   *grpc.Server        // its gRPC server: Stop takes the coordinator away
}

// StartCoordinator builds a coordinator from cfg with a fresh checkpoint
// store and serves it; the caller runs Server.Run. Cleanup stops it all.
func StartCoordinator(tb testing.TB, cfg coordinator.Config) *Coordinator {
	tb.Helper()
	store, err := checkpoint.Open(filepath.Join(tb.TempDir(), "coordinator.db"), checkpoint.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	srv, err := coordinator.New(cfg, store, testkit.Quiet(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	gs := grpc.NewServer()
	reconv1.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	tb.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return &Coordinator{Server: srv, Addr: lis.Addr().String(), Conn: conn, GRPC: gs}
}
