package procs

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/testkit"
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
	var c time.Duration
	if !testkit.Within(20*time.Second, func() bool {
		var ok bool
		if c, ok = spin.CPUTime(); !ok {
			t.Fatal("no CPU time for a running process")
		}
		return c >= 300*time.Millisecond
	}) {
		t.Fatalf("a spinning process used %v of CPU in 20 s", c)
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
	var r int64
	if !testkit.Within(20*time.Second, func() bool {
		var ok bool
		if r, ok = big.RSS(); !ok {
			t.Fatal("no RSS for a running process")
		}
		return r >= 64<<20
	}) {
		t.Fatalf("a process holding 64 MiB shows %d bytes resident", r)
	}
}
