package coordinator_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/tlsconf"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// TestMutualTLS: a coordinator serving gRPC with mutual TLS trains with a
// worker and streams checkpoints to a scorer whose certificates its CA
// signed, refuses a client with a
// certificate from another CA and one with none (nothing they send is
// applied: they never join), and picks up a rotated server certificate
// without a restart.
func TestMutualTLS(t *testing.T) {
	tlsconf.ReloadInterval = 20 * time.Millisecond
	dir := t.TempDir()
	ca := testkit.NewCA(t, dir, "recon")
	rogueCA := testkit.NewCA(t, dir, "rogue")
	srvCert, srvKey := ca.Issue(t, dir, "coordinator", "coordinator-1", 10)
	wCert, wKey := ca.Issue(t, dir, "trainer", "trainer-1", 11)
	rCert, rKey := rogueCA.Issue(t, dir, "rogue", "trainer-rogue", 12)

	serverTLS, err := tlsconf.Server(tlsconf.Files{Cert: srvCert, Key: srvKey, CA: ca.File})
	if err != nil {
		t.Fatal(err)
	}
	store, err := checkpoint.Open(filepath.Join(dir, "c.db"), checkpoint.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	const p = 6
	srv, err := coordinator.New(coordinator.Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 64, WarmupRecords: 100,
		Deadline: 2 * time.Second, CheckpointRounds: 10}, store, testkit.Quiet(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	reconv1.RegisterCoordinatorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { _ = srv.Run(ctx) }()

	dial := func(f tlsconf.Files) *grpc.ClientConn {
		cfg, err := tlsconf.Client(f, "")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// The trusted worker trains.
	w, err := trainer.New(trainer.Config{ID: "trusted", Conn: dial(tlsconf.Files{Cert: wCert, Key: wKey, CA: ca.File}), Log: testkit.Quiet(),
		Source: trainer.NewSynth(1, 1, p, 2, 0.2, 0)})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(ctx) }()
	if !testkit.Until(ctx, func() bool { return srv.Snapshot().Round >= 20 }) {
		t.Fatalf("the trusted worker did not train: %+v", srv.Snapshot())
	}

	// A scorer with a trusted certificate follows the checkpoints.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	watch, err := reconv1.NewCoordinatorClient(dial(tlsconf.Files{Cert: wCert, Key: wKey, CA: ca.File})).WatchCheckpoints(wctx, &reconv1.WatchCheckpointsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := watch.Recv(); err != nil || c.GetVersion() == 0 {
		t.Fatalf("a trusted scorer's checkpoint watch: %v, %v", c.GetVersion(), err)
	}
	wcancel()

	// Untrusted clients: the handshake fails; they never join, and a
	// checkpoint watch gets nothing.
	rwctx, rwcancel := context.WithTimeout(ctx, 3*time.Second)
	if rw, err := reconv1.NewCoordinatorClient(dial(tlsconf.Files{Cert: rCert, Key: rKey, CA: ca.File})).WatchCheckpoints(rwctx, &reconv1.WatchCheckpointsRequest{}); err == nil {
		if _, err := rw.Recv(); err == nil {
			t.Error("an untrusted scorer received a checkpoint")
		}
	}
	rwcancel()
	for name, f := range map[string]tlsconf.Files{
		"a certificate from another CA": {Cert: rCert, Key: rKey, CA: ca.File},
		"no certificate":                {CA: ca.File},
	} {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		stream, err := reconv1.NewCoordinatorClient(dial(f)).Train(cctx)
		if err == nil {
			if err = stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Join{Join: &reconv1.Join{WorkerId: "rogue"}}}); err == nil {
				_, err = stream.Recv()
			}
		}
		ccancel()
		if err == nil {
			t.Errorf("a client with %s was served", name)
		}
		t.Logf("client with %s: %v", name, err)
	}
	for _, id := range srv.Snapshot().Workers {
		if id != "trusted" {
			t.Errorf("worker %q joined", id)
		}
	}

	// Rotation: a new server certificate in the same files is presented to
	// the next connection.
	serial := func() int64 {
		cfg, _ := tlsconf.Client(tlsconf.Files{Cert: wCert, Key: wKey, CA: ca.File}, "")
		c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 10 {
		t.Fatalf("server certificate serial %d, want 10", s)
	}
	ca.Issue(t, dir, "coordinator", "coordinator-1", 20) // rotated in place
	if !testkit.Within(5*time.Second, func() bool { return serial() == 20 }) {
		t.Fatal("the rotated server certificate was not picked up")
	}
	before := srv.Snapshot().Round
	if !testkit.Until(ctx, func() bool { return srv.Snapshot().Round >= before+5 }) {
		t.Fatal("training stopped after the rotation")
	}
}
