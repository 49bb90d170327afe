package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/tlsconf"
)

// TestSASL: against a broker that requires SASL, each mechanism with the
// right credentials creates topics, produces and consumes through a group;
// a wrong password fails with one error that says the credentials were
// refused, and a reader reports it in a warning that says so.
func TestSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plainuser", "plain-pass"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "pass-256"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "pass-512"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct{ mech, user, pass string }{
		{SASLPlain, "plainuser", "plain-pass"}, {SASLScramSHA256, "scram256", "pass-256"}, {SASLScramSHA512, "scram512", "pass-512"},
	} {
		m, err := NewSASL(tc.mech, tc.user, tc.pass)
		if err != nil {
			t.Fatal(err)
		}
		sec := Security{SASL: m}
		topic := "sasl-" + tc.mech
		if err := sec.EnsureTopics(ctx, bs, map[string]int{topic: 2}); err != nil {
			t.Fatalf("%s: create topic: %v", tc.mech, err)
		}
		w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic, Security: sec})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, Record{Key: []byte("k"), Value: []byte("[1,2]")}); err != nil {
			t.Fatalf("%s: write: %v", tc.mech, err)
		}
		w.Close()
		r, err := NewReader(ReaderConfig{Brokers: bs, Topic: topic, Group: "g-" + tc.mech, StartFirst: true, Security: sec})
		if err != nil {
			t.Fatal(err)
		}
		b, err := r.Batch(ctx)
		if err != nil || len(b) != 1 || string(b[0].Value) != "[1,2]" {
			t.Fatalf("%s: read %v, %v", tc.mech, b, err)
		}
		if err := r.Commit(ctx, b...); err != nil {
			t.Fatalf("%s: commit: %v", tc.mech, err)
		}
		r.Close()
	}

	// Wrong credentials.
	bad, _ := NewSASL(SASLScramSHA256, "scram256", "wrong")
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	w, _ := NewWriter(WriterConfig{Brokers: bs, Topic: "sasl-" + SASLScramSHA256, Security: Security{SASL: bad}, MaxAttempts: 1})
	err = w.Write(wctx, Record{Value: []byte("[1,2]")})
	w.Close()
	if err == nil || !authFailure(err.Error()) {
		t.Errorf("write with a wrong password: %v; want an authentication failure", err)
	}
	t.Logf("write with a wrong password: %v", err)
	if err := (Security{SASL: bad}).EnsureTopics(wctx, bs, map[string]int{"x": 1}); err == nil || !authFailure(err.Error()) {
		t.Errorf("create topics with a wrong password: %v; want an authentication failure", err)
	}
	var logs bytes.Buffer
	r, _ := NewReader(ReaderConfig{Brokers: bs, Topic: "sasl-" + SASLScramSHA256, Group: "g-bad", StartFirst: true,
		Security: Security{SASL: bad}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = r.Batch(rctx)
	rcancel()
	r.Close()
	if err == nil {
		t.Error("a reader with a wrong password read something")
	}
	if n := strings.Count(logs.String(), "refused the credentials"); n != 1 {
		t.Errorf("%d credential warnings from a reader in 3 s, want 1:\n%s", n, logs.String())
	}
	if _, err := NewSASL("gssapi", "u", "p"); err == nil {
		t.Error("an unknown mechanism: no error")
	}
}

// TestTLS: against a broker that only speaks TLS, clients verifying it
// against its CA create topics, produce and consume through a group; a
// client that trusts another CA fails.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, dir, "kafka")
	certFile, keyFile := ca.Issue(t, dir, "broker", "localhost", 2)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bs := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg, err := tlsconf.Client(tlsconf.Files{CA: ca.File}, "")
	if err != nil {
		t.Fatal(err)
	}
	sec := Security{TLS: cfg}
	if err := sec.EnsureTopics(ctx, bs, map[string]int{"tls": 1}); err != nil {
		t.Fatalf("create topic over TLS: %v", err)
	}
	w, _ := NewWriter(WriterConfig{Brokers: bs, Topic: "tls", Security: sec})
	if err := w.Write(ctx, Record{Value: []byte("[1]")}); err != nil {
		t.Fatalf("write over TLS: %v", err)
	}
	w.Close()
	r, _ := NewReader(ReaderConfig{Brokers: bs, Topic: "tls", Group: "g", StartFirst: true, Security: sec})
	defer r.Close()
	if b, err := r.Batch(ctx); err != nil || len(b) != 1 {
		t.Fatalf("read over TLS: %v %v", b, err)
	}
	other := testkit.NewCA(t, dir, "other")
	bad, _ := tlsconf.Client(tlsconf.Files{CA: other.File}, "")
	if err := (Security{TLS: bad}).EnsureTopics(ctx, bs, map[string]int{"x": 1}); err == nil {
		t.Error("a client trusting another CA connected")
	}
}
