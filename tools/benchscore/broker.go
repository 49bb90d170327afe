package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// broker is a devkafka process this program started.
type broker struct {
	cmd     *exec.Cmd
	addr    string // bootstrap address
	dataDir string
	exited  chan struct{} // closed when the process has exited
	waitErr error         // the process's exit, once exited is closed
}

// startBroker runs the devkafka binary at path on a free 127.0.0.1 port with
// its data in a fresh directory under dir and the given topics
// ("name:partitions,..."), and returns once it has printed its bootstrap
// address.
func startBroker(path, dir, topics string) (*broker, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("devkafka binary: %w (build it with `make build`, or `GOEXPERIMENT=simd go build -o bin/ ./cmd/...`, or pass --devkafka)", err)
	}
	b := &broker{dataDir: dir + "/devkafka-data", exited: make(chan struct{})}
	b.cmd = exec.Command(path, "--listen", "127.0.0.1:0", "--data-dir", b.dataDir, "--topics", topics)
	b.cmd.Stderr = os.Stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	// devkafka prints "devkafka: bootstrap ADDR; topics ...; data in DIR".
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		s, _ := r.ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, r) // keep its stdout drained
	}()
	select {
	case s := <-line:
		rest, ok := strings.CutPrefix(s, "devkafka: bootstrap ")
		addr, _, found := strings.Cut(rest, ";")
		if !ok || !found || addr == "" {
			b.stop()
			return nil, fmt.Errorf("devkafka printed %q, not its bootstrap address", strings.TrimSpace(s))
		}
		b.addr = strings.Split(addr, ",")[0]
		return b, nil
	case <-b.exited:
		return nil, fmt.Errorf("devkafka exited at start: %v", b.waitErr) //nolint:errorlint // nil after exit status 0, which %w would print as %!w(<nil>); printed, not branched on
	case <-time.After(30 * time.Second):
		b.stop()
		return nil, errors.New("devkafka printed no bootstrap address within 30 s")
	}
}

// pid returns the broker's process id.
func (b *broker) pid() int { return b.cmd.Process.Pid }

// stop kills the broker process (its data directory is scratch: nothing to
// save) and waits for it to exit.
func (b *broker) stop() {
	select {
	case <-b.exited:
		return
	default:
	}
	_ = b.cmd.Process.Kill()
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "benchscore: devkafka (pid %d) did not exit after SIGKILL\n", b.pid())
	}
}

// alive returns an error if the broker has exited.
func (b *broker) alive() error {
	select {
	case <-b.exited:
		return fmt.Errorf("devkafka (pid %d) exited: %v", b.pid(), b.waitErr) //nolint:errorlint // nil after exit status 0, which %w would print as %!w(<nil>); printed, not branched on
	default:
		return nil
	}
}
