package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// startBroker runs the devkafka binary and waits for its bootstrap line
// and the line saying whether it starts empty, which it returns.
func startBroker(t *testing.T, bin, addr, dataDir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "--listen", addr, "--data-dir", dataDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "bootstrap "+addr) {
		t.Fatalf("devkafka said %q, %v", line, err)
	}
	state, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("devkafka said %q then %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, br) }()
	return cmd, state
}

func readAll(t *testing.T, addr, group string, want int) []string {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: "recon-events", GroupID: group,
		StartOffset: kafka.FirstOffset, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got []string
	for len(got) < want {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %d of %d: %v", len(got), want, err)
		}
		got = append(got, string(m.Value))
	}
	return got
}

// TestDevkafkaServesKafkaGoAndPersists: kafka-go produces to and consumes
// from the broker, and the records survive a SIGTERM and restart.
func TestDevkafkaServesKafkaGoAndPersists(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "devkafka")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	data := t.TempDir()
	broker, state := startBroker(t, bin, addr, data)
	if !strings.Contains(state, "STARTING EMPTY") || !strings.Contains(state, data) {
		t.Errorf("a broker on an empty data dir said %q, want STARTING EMPTY and where", state)
	}

	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "recon-events", Balancer: &kafka.Hash{},
		BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	var msgs []kafka.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("[%d,1,2]", i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := readAll(t, addr, "g1", 20); len(got) != 20 {
		t.Fatalf("read %d", len(got))
	}

	if err := broker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := broker.Wait(); err != nil {
		t.Fatalf("devkafka exit after SIGTERM: %v", err)
	}
	if _, state := startBroker(t, bin, addr, data); !strings.Contains(state, "resuming from the data in "+data) {
		t.Errorf("a restarted broker said %q, want resuming and where", state)
	}
	got := readAll(t, addr, "g2", 20)
	seen := map[string]bool{}
	for _, v := range got {
		seen[v] = true
	}
	if len(seen) != 20 {
		t.Fatalf("after a restart: %d distinct records of 20", len(seen))
	}
}
