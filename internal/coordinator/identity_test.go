package coordinator

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// pollUntil waits until cond holds, failing the test if it does not
// within timeout.
func pollUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !testkit.Within(timeout, cond) {
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

// roundsIn returns how many rounds c completes over d.
func (c *cluster) roundsIn(d time.Duration) uint64 {
	r0 := c.srv.Snapshot().Round
	<-time.After(d)
	return c.srv.Snapshot().Round - r0
}

// Two trainer processes started with one --id (the README's
// `--id trainer-$(hostname)` on one host) used to evict each other at
// every reconnect. Now the second is refused for good within a second,
// naming the id and the holder, while the first trains on at a lone
// worker's rate; once the first stops, a new process with the id joins.
func TestSecondProcessWithSameIDIsRefused(t *testing.T) {
	const p, id = 4, "trainer-host"
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 16, WarmupRecords: 0, Deadline: time.Second, CheckpointRounds: 1000}
	c := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	x := synth.LowRank(rand.New(rand.NewPCG(1, 3)), 4000, p, 2, 0.3)

	ctx, stopFirst := context.WithCancel(context.Background())
	defer stopFirst()
	c.worker(ctx, id, trainer.NewSlice(x, p, true))
	pollUntil(t, 10*time.Second, "the first worker trains", func() bool { return c.srv.Snapshot().Round >= 5 })

	const window = 2 * time.Second // long enough that scheduling noise on 2 cores does not decide the ratio
	lone := c.roundsIn(window)
	if lone == 0 {
		t.Fatalf("a lone worker trained no round in %v", window)
	}

	type result struct {
		err  error
		took time.Duration
	}
	second := make(chan result, 1)
	go func() {
		took, err := c.runWorker(trainer.Config{ID: id, Source: trainer.NewSlice(x, p, true)}, 3*time.Second)
		second <- result{err, took}
	}()
	shared := c.roundsIn(window) // the second worker's attempt falls in this window
	r := <-second
	if !errors.Is(r.err, trainer.ErrRefused) {
		t.Errorf("second process with id %q: Run returned %v after %v, want ErrRefused", id, r.err, r.took)
	} else {
		if r.took > time.Second {
			t.Errorf("refusal took %v: retried?", r.took)
		}
		for _, want := range []string{`"` + id + `"`, "127.0.0.1:", "joined", "--id"} {
			if !strings.Contains(r.err.Error(), want) {
				t.Errorf("refusal %q lacks %q", r.err, want)
			}
		}
	}
	t.Logf("rounds in %v: %d alone, %d beside the refused process; refused in %v: %v", window, lone, shared, r.took, r.err)
	if ratio := float64(shared) / float64(lone); ratio < 0.5 {
		t.Errorf("the first worker trained %d rounds in %v beside the refused one, %d alone (ratio %.2f, want >= 0.5)", shared, window, lone, ratio)
	}
	if n := testutil.ToFloat64(c.srv.metrics.refused); n != 1 {
		t.Errorf("joins refused: %v, want 1", n)
	}
	if w := c.srv.Snapshot().Workers; !slices.Equal(w, []string{id}) {
		t.Errorf("workers after the refusal: %v", w)
	}

	// The first stops: its session ends and a new process with the id is admitted.
	stopFirst()
	c.wg.Wait()
	pollUntil(t, 5*time.Second, "the first worker's session ends", func() bool { return len(c.srv.Snapshot().Workers) == 0 })
	before := c.srv.Snapshot().Round
	took, err := c.runWorker(trainer.Config{ID: id, Source: trainer.NewSlice(x, p, true)}, time.Second)
	if err != nil {
		t.Fatalf("a new process with id %q after the first stopped: Run returned %v after %v", id, err, took)
	}
	if after := c.srv.Snapshot().Round; after <= before {
		t.Errorf("the new process trained no round (round %d, then %d)", before, after)
	}
}

// A second Train stream with a live session's id replaces the session when
// it is the same process reconnecting (the same instance, or none from an
// older worker) and is refused with AlreadyExists, leaving the session be,
// when it is another instance; after the holder's stream ends, that other
// instance is admitted.
func TestJoinTellsReconnectFromAnotherProcess(t *testing.T) {
	cfg := Config{Spec: ae.Spec{Input: 4, Code: 2}, Batch: 16, WarmupRecords: 0, Deadline: 20 * time.Second, CheckpointRounds: 1000}
	c := startCluster(t, cfg, filepath.Join(t.TempDir(), "ck.db"))
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// open joins as id with instance and returns the stream after its
	// first reply (nil error: Welcome), and a cancel that closes it.
	open := func(id, instance string) (reconv1.Coordinator_TrainClient, context.CancelFunc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stream, err := reconv1.NewCoordinatorClient(conn).Train(ctx)
		if err != nil {
			t.Fatal(err)
		}
		join := &reconv1.Join{WorkerId: id, Instance: instance, Width: 4}
		if err := stream.Send(&reconv1.WorkerMessage{Msg: &reconv1.WorkerMessage_Join{Join: join}}); err != nil {
			t.Fatal(err)
		}
		msg, err := stream.Recv()
		if err == nil && msg.GetWelcome() == nil {
			t.Fatalf("first reply to Join: %v, want Welcome", msg)
		}
		return stream, cancel, err
	}
	sessionOf := func(id string) *session {
		c.srv.mu.Lock()
		defer c.srv.mu.Unlock()
		return c.srv.sessions[id]
	}
	for _, tc := range []struct {
		name, first, second string
		replaces            bool
	}{
		{"same instance", "a1", "a1", true},
		{"no instance (older worker)", "", "", true},
		{"reconnect without instance", "a1", "", true},
		{"another instance", "a1", "b2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "w-" + strings.ReplaceAll(tc.name, " ", "-")
			s1, cancel1, err := open(id, tc.first)
			defer cancel1()
			if err != nil {
				t.Fatalf("first join: %v", err)
			}
			first := sessionOf(id)
			_, cancel2, err := open(id, tc.second)
			defer cancel2()
			if tc.replaces {
				if err != nil {
					t.Fatalf("reconnect: %v, want Welcome", err)
				}
				for {
					if _, err := s1.Recv(); err != nil {
						if status.Code(err) != codes.Unavailable {
							t.Fatalf("replaced session ended with %v, want Unavailable", err)
						}
						break
					}
				}
				if ss := sessionOf(id); ss == nil || ss == first {
					t.Errorf("session after the reconnect: %p, want a new one (the old: %p)", ss, first)
				}
				return
			}
			if status.Code(err) != codes.AlreadyExists || !strings.Contains(status.Convert(err).Message(), id) {
				t.Fatalf("join by another instance: %v, want AlreadyExists naming %q", err, id)
			}
			if ss := sessionOf(id); ss != first {
				t.Fatalf("session after the refusal: %p, want the holder's (%p)", ss, first)
			}
			cancel1()
			pollUntil(t, 5*time.Second, "the holder's session ends", func() bool { return sessionOf(id) == nil })
			if _, cancel3, err := open(id, tc.second); err != nil {
				t.Errorf("another instance after the holder left: %v, want Welcome", err)
			} else {
				cancel3()
			}
		})
	}
}
