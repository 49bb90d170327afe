package testkit

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 5 {
			n.Add(1)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !Until(ctx, func() bool { return n.Load() == 5 }) {
		t.Fatal("Until gave up on a condition that came true")
	}
	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if Until(short, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
}

func TestEventuallyFails(t *testing.T) {
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Eventually(ft, 30*time.Millisecond, func() bool { return false }, "never %s", "true")
	}()
	<-done
	if !ft.failed {
		t.Fatal("Eventually did not fail on a condition that never held")
	}
}

// fakeTB records Fatalf instead of stopping the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(string, ...any) {
	f.failed = true
	runtime.Goexit() // as testing.T's Fatalf does
}
