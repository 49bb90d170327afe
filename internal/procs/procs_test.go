package procs

import (
	"testing"
	"time"
)

// TestCPUTime: a process that spins shows CPU time growing; one that
// sleeps shows almost none; a process not running has none.
func TestCPUTime(t *testing.T) {
	dir := t.TempDir()
	spin := New("", dir, "spin", "/bin/sh", "-c", "while :; do :; done")
	idle := New("", dir, "idle", "/bin/sleep", "30")
	if _, ok := spin.CPUTime(); ok {
		t.Fatal("CPU time of a process not started")
	}
	for _, p := range []*Proc{spin, idle} {
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Kill()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, ok := spin.CPUTime()
		if !ok {
			t.Fatal("no CPU time for a running process")
		}
		if c >= 300*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a spinning process used %v of CPU in 20 s", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c, ok := idle.CPUTime(); !ok || c > 100*time.Millisecond {
		t.Errorf("a sleeping process: %v, %v", c, ok)
	}
}
