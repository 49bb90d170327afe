// Package testkit is the part of the test harness that depends on no
// service package, so that every package's tests, the services' own
// included, can use it: waiting for a condition instead of sleeping, a
// broker (Kafka), quiet loggers and log buffers, and TLS certificates
// (NewCA). Fixed sleeps belong only where a test simulates slowness.
// Per-service helpers sit on top (testenv: a coordinator).
package testkit

import (
	"context"
	"testing"
	"time"
)

// Poll is how often Eventually and Until look at their condition.
const Poll = 10 * time.Millisecond

// Eventually waits until cond holds, looking every Poll, and fails the
// test (Fatalf, with the message format and args) if it does not within
// timeout.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !Until(ctx, cond) {
		tb.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
	}
}

// Until waits until cond holds, looking every Poll, and reports whether it
// did before ctx ended.
func Until(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(Poll)
	defer t.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
}

// Within waits until cond holds, looking every Poll, and reports whether
// it did within timeout.
func Within(timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Until(ctx, cond)
}
