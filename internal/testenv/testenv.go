// Package testenv starts what integration tests need, on this machine only:
// a Kafka-protocol broker (in-process kfake on a 127.0.0.1 port, or a real
// cluster named by RECON_TEST_BROKERS) and a coordinator serving gRPC on a
// loopback port. Everything it starts is stopped by the test's cleanup.
package testenv

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// Quiet returns a logger that discards everything, or logs to standard
// error at debug level when RECON_TEST_LOG is set (for debugging a test).
func Quiet() *slog.Logger {
	if os.Getenv("RECON_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Kafka returns bootstrap addresses: RECON_TEST_BROKERS when set, else an
// in-process one-broker kfake cluster closed at cleanup.
func Kafka(tb testing.TB) []string {
	tb.Helper()
	if b := os.Getenv("RECON_TEST_BROKERS"); b != "" {
		return strings.Split(b, ",")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c.ListenAddrs()
}

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
	srv, err := coordinator.New(cfg, store, Quiet(), nil)
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

// LogBuffer collects a logger's output for a test to read while the
// logger writes (bytes.Buffer is not safe for both at once).
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Eventually polls cond every 20 ms until it holds, failing the test with
// what when it has not within d.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	for end := time.Now().Add(d); !cond(); {
		if time.Now().After(end) {
			tb.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
