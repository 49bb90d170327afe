package procs

import (
	"net"
	"strconv"
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

// TestFreeAddrAvoidsTheEphemeralRange: FreeAddr's ports lie below the
// range the kernel gives outgoing connections, and can be listened on.
func TestFreeAddrAvoidsTheEphemeralRange(t *testing.T) {
	lo := ephemeralLow()
	if lo <= minFreePort {
		t.Fatalf("ephemeral range starts at %d: this test needs a Linux /proc with it above %d", lo, minFreePort)
	}
	seen := map[string]bool{}
	for range 20 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		if n < minFreePort || n >= lo {
			t.Fatalf("FreeAddr %s: port outside [%d, %d)", addr, minFreePort, lo)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("FreeAddr %s cannot be listened on: %v", addr, err)
		}
		l.Close()
		seen[addr] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 calls gave only %d distinct addresses", len(seen))
	}
}

// TestRSS: a process that holds 64 MiB shows at least that resident; one
// not running has none.
func TestRSS(t *testing.T) {
	dir := t.TempDir()
	big := New("", dir, "big", "/bin/sh", "-c", `exec /usr/bin/python3 -c 'import time; s = b"x" * (64 << 20); time.sleep(30)'`)
	if _, ok := big.RSS(); ok {
		t.Fatal("RSS of a process not started")
	}
	if err := big.Start(); err != nil {
		t.Fatal(err)
	}
	defer big.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, ok := big.RSS()
		if !ok {
			t.Fatal("no RSS for a running process")
		}
		if r >= 64<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a process holding 64 MiB shows %d bytes resident", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
