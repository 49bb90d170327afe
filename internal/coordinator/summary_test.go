package coordinator

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/synth"
)

// A hundred checkpoints in a few seconds make one info line ("checkpoints
// written", the first at once) and the final one at stop, not a line each;
// each is still logged at debug level.
func TestCheckpointsAreSummarized(t *testing.T) {
	const p = 4
	var info, debug lockedBuffer
	log := slog.New(teeHandler{slog.NewTextHandler(&info, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug})})
	cfg := Config{Spec: ae.Spec{Input: p, Code: 2}, Batch: 16, Deadline: time.Second, CheckpointRounds: 5, MaxRounds: 500}
	c := startClusterLog(t, cfg, filepath.Join(t.TempDir(), "ck.db"), log)
	ctx, stop := context.WithCancel(context.Background())
	c.worker(ctx, "w", trainer.NewSlice(synth.LowRank(rand.New(rand.NewPCG(1, 2)), 20000, p, 2, 0.3), p, true))
	c.wait(60*time.Second, stop)
	written := strings.Count(debug.String(), `msg="checkpoint written"`)
	lines := 0
	for _, ln := range strings.Split(info.String(), "\n") {
		if strings.Contains(ln, "checkpoint") {
			lines++
		}
	}
	t.Logf("%d checkpoints written, %d info lines about them", written, lines)
	if written < 90 {
		t.Fatalf("only %d checkpoints written at debug level", written)
	}
	if lines > 3 {
		t.Errorf("%d info lines for %d checkpoints:\n%s", lines, written, info.String())
	}
}

// teeHandler sends each record to both handlers that take its level.
type teeHandler [2]slog.Handler

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h[0].Enabled(ctx, l) || h[1].Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			if err := x.Handle(ctx, r.Clone()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h teeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return teeHandler{h[0].WithAttrs(a), h[1].WithAttrs(a)}
}

func (h teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{h[0].WithGroup(n), h[1].WithGroup(n)}
}

// lockedBuffer is a log's output, safe to read while it is written: what
// testkit.LogBuffer is, which this package's tests cannot import (testenv
// imports the coordinator).
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
