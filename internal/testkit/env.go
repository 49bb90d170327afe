package testkit

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
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
// in-process one-broker kfake cluster on a 127.0.0.1 port, closed at
// cleanup.
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
