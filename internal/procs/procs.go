// Package procs starts and stops recon's binaries as separate processes,
// each with its own log file: the demo and the end-to-end tests run the
// whole pipeline with it. It only ever signals processes it started, by
// PID.
package procs

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one binary with fixed arguments, started and restarted at will.
type Proc struct {
	Name string   // for logs and messages: "scorer-1"
	Bin  string   // path of the executable
	Args []string // its arguments
	Dir  string   // working directory
	Log  string   // log file (stdout and stderr, appended across restarts)
	Env  []string // extra environment, KEY=value

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	exitErr  error
	Restarts int // times started after the first
}

// Start starts the process; an already running one is an error.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.Dir, f, f
	cmd.Env = append(os.Environ(), p.Env...)
	// Its own process group: a Ctrl-C in the terminal reaches the
	// supervisor only, which then stops every process in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	if p.cmd != nil {
		p.Restarts++
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Running reports whether the process is running.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// PID returns the running process's id (0: none).
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// CPUTime returns the CPU time (user and system, every thread) the running
// process has used so far, from /proc/PID/stat (Linux, in USER_HZ ticks,
// 100 a second); false when it is not running or the file cannot be read.
func (p *Proc) CPUTime() (time.Duration, bool) {
	pid := p.PID()
	if pid == 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime and stime the 12th and 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * (time.Second / userHZ), true
}

// RSS returns the running process's resident set size in bytes, from
// /proc/PID/status's VmRSS (Linux); false when it is not running or the
// file cannot be read.
func (p *Proc) RSS() (int64, bool) {
	pid := p.PID()
	if pid == 0 {
		return 0, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "1234 kB"
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10, true
				}
			}
		}
	}
	return 0, false
}

// userHZ is the unit of /proc/PID/stat's times on Linux.
const userHZ = 100

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // fails only if it has exited, closing done
	<-done
}

// ErrKilled is returned by Stop when the process outlived its grace time
// and was killed.
var ErrKilled = errors.New("did not stop in time; killed")

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns how long the exit took and the process's exit error
// (nil for a clean exit; ErrKilled when it had to be killed).
func (p *Proc) Stop(grace time.Duration) (time.Duration, error) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return 0, nil
	}
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited, closing done
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return time.Since(start), p.exitErr
	case <-time.After(grace):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return time.Since(start), ErrKilled
	}
}

// Signal sends sig to the running process.
func (p *Proc) Signal(sig os.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || isClosed(p.done) {
		return fmt.Errorf("%s is not running", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Exited returns a channel closed when the current process exits.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.done
}

// ExitErr returns how the last process exited: nil for status 0 (or
// while it runs), else its *exec.ExitError.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// LogText returns the log file's contents.
func (p *Proc) LogText() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// StopAll stops every process at once (SIGTERM, then SIGKILL after
// grace) and returns the first error, naming the process.
func StopAll(grace time.Duration, ps ...*Proc) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d, err := p.Stop(grace); err != nil {
				errs[i] = fmt.Errorf("%s: %w (after %v)", p.Name, err, d.Round(time.Millisecond))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// FreeAddr returns a 127.0.0.1 address with a port free at the time of
// the call, below the kernel's ephemeral port range where it can: a port
// the kernel hands out for :0 is also one it may give an outgoing
// connection before the process meant to listen on it binds it (a
// coordinator of the fault tests once failed with "address already in
// use" that way).
func FreeAddr() (string, error) {
	lo := ephemeralLow()
	for range 64 {
		if lo <= minFreePort {
			break
		}
		port := minFreePort + rand.IntN(lo-minFreePort)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// minFreePort is the lowest port FreeAddr picks.
const minFreePort = 10000

// ephemeralLow returns the first port of the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), or 0 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	lo, _ := strconv.Atoi(f[0])
	return lo
}

// New returns a Proc for binary bin in binDir, logging to dir/name.log.
// A relative binDir is taken from the current directory, not from dir (a
// child resolves a relative path after changing into its directory).
func New(binDir, dir, name, bin string, args ...string) *Proc {
	path := filepath.Join(binDir, bin)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return &Proc{Name: name, Bin: path, Args: args, Dir: dir, Log: filepath.Join(dir, name+".log")}
}

// Metric reads one sample from the Prometheus /metrics endpoint at addr:
// the value of the line whose name (labels included, as in
// `recon_scorer_consumer_lag{partition="0"}`) is name. ok is false when
// the endpoint does not answer or has no such sample.
func Metric(addr, name string) (v float64, ok bool) {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// RunWithBinaries is a TestMain body for tests of the binaries: it builds
// pkgs (go build patterns, relative to the test's directory) into a
// temporary directory, sets *binDir to it, runs the tests, removes the
// directory and exits with the tests' status.
func RunWithBinaries(m interface{ Run() int }, binDir *string, pkgs ...string) {
	dir, err := os.MkdirTemp("", "recon-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out, err := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	*binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
