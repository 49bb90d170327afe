package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

// The stream: records of width features near a rank-dimensional subspace
// plus noise, as cmd/loadgen's defaults.
const (
	features = 30
	rank     = 3
	noise    = 0.4
	// quantile of held-out scores the alert threshold is set at: about 0.1%
	// of normal records alert, on top of the injected anomalies.
	quantile = 0.999
)

// modelSpec is the 30-16-4-16-30 model of tools/benchtrain.
var modelSpec = ae.Spec{Input: features, Hidden: []int{16}, Code: 4, Activation: ae.ReLU, CodeActivation: ae.ReLU, Output: ae.Linear}

// gen makes records: JSON arrays of the stream's features with a fraction
// of injected anomalies (spike, off-subspace or scaled, as cmd/loadgen).
type gen struct {
	basis     []float64
	rng       *rand.Rand
	codec     *stream.Codec
	anomalies float64
	digits    int // significant digits per value (0: shortest exact)
	rec       []float64
	scales    []float64 // feature standard deviations, which size spikes
}

func featureNames() []string {
	names := make([]string, features)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	return names
}

func newBasis() []float64 { return synth.Basis(rand.New(rand.NewPCG(1, 0xba5e)), rank, features) }

func newGen(basis []float64, seed uint64, anomalies float64, digits int) *gen {
	codec, err := stream.NewCodec(stream.JSONArray, featureNames())
	if err != nil {
		panic(err) // fixed, valid names
	}
	return &gen{basis: basis, rng: rand.New(rand.NewPCG(seed, 0x10ad)), codec: codec, anomalies: anomalies,
		digits: digits, rec: make([]float64, features), scales: synth.Scales(basis, rank, noise)}
}

// next appends the next record's value to dst and says whether it is an
// injected anomaly.
func (g *gen) next(dst []byte) ([]byte, bool) {
	synth.Sample(g.rng, g.rec, g.basis, rank, noise)
	anomalous := g.rng.Float64() < g.anomalies
	if anomalous { // the kinds loadgen injects
		synth.Inject(g.rng, g.rec, g.scales, synth.Kinds[g.rng.IntN(len(synth.Kinds))])
	}
	if g.digits > 0 {
		for j, v := range g.rec {
			g.rec[j], _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', g.digits, 64), 64)
		}
	}
	return g.codec.Encode(dst, g.rec), anomalous
}

// trainModel fits the 30-16-4-16-30 model on normal records of the stream
// and stores it, with its threshold, as version 1 in a fresh checkpoint
// store under dir: the cache a scorer replica starts from.
func trainModel(ctx context.Context, dir string, basis []float64) (*checkpoint.Store, float64, time.Duration, error) {
	t0 := time.Now()
	x := make([]float64, 20000*features)
	synth.Sample(rand.New(rand.NewPCG(7, 0x7a1)), x, basis, rank, noise)
	cfg := fit.Config{Spec: modelSpec, Epochs: 30, Batch: 64, LR: 3e-3, AlertRate: 1 - quantile}
	res, err := fit.Fit(ctx, cfg, x, features, nil)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("train the model: %w", err)
	}
	c := res.Checkpoint(featureNames())
	c.Version = 1
	path := filepath.Join(dir, "scorer.db")
	st, err := checkpoint.Open(path, checkpoint.Options{Keep: 2})
	if err != nil {
		return nil, 0, 0, err
	}
	if err := st.Put(c); err != nil {
		st.Close()
		return nil, 0, 0, fmt.Errorf("store the checkpoint: %w", err)
	}
	return st, res.Threshold, time.Since(t0), nil
}

// procCPU returns the CPU time (user + system) process pid ("self" for this
// one) has used, from /proc (Linux only).
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesized command name: state is field 3, utime
	// and stime fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%s/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// cpuMeter measures the CPU this process and the broker use over a phase.
type cpuMeter struct {
	brokerPID     string
	self, brk     time.Duration
	wall          time.Time
	selfOK, brkOK bool
}

func startCPU(brokerPID int) *cpuMeter {
	m := &cpuMeter{brokerPID: strconv.Itoa(brokerPID), wall: time.Now()}
	var err error
	m.self, err = procCPU("self")
	m.selfOK = err == nil
	m.brk, err = procCPU(m.brokerPID)
	m.brkOK = err == nil
	return m
}

// cpuUse is the CPU used over a phase, in cores (1.0: one core busy).
type cpuUse struct {
	bench, broker float64 // negative: unknown
}

func (m *cpuMeter) stop() cpuUse {
	wall := time.Since(m.wall).Seconds()
	u := cpuUse{-1, -1}
	if s, err := procCPU("self"); err == nil && m.selfOK {
		u.bench = (s - m.self).Seconds() / wall
	}
	if s, err := procCPU(m.brokerPID); err == nil && m.brkOK {
		u.broker = (s - m.brk).Seconds() / wall
	}
	return u
}

func (u cpuUse) String() string {
	f := func(v float64) string {
		if v < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("bench %s + devkafka %s cores", f(u.bench), f(u.broker))
}

// clientLog is the slog handler given to the scorer and the consumers. It
// counts kafka-go's error reports (i/o timeouts, reconnects) by kind, with
// numbers masked: pkg/stream's outage warnings (their err and
// failed_attempts; a lower bound, as pkg/stream reports an outage's
// attempts only when it warns) and the debug lines of this program's own
// kafka-go readers. Other warnings and errors are printed.
type clientLog struct {
	mu     sync.Mutex
	counts map[string]int
	warn   slog.Handler
}

// outageWarning is the message of pkg/stream's outage warnings.
const outageWarning = "cannot reach Kafka; retrying with backoff"

func newClientLog() *clientLog {
	return &clientLog{counts: map[string]int{}, warn: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})}
}

func (l *clientLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *clientLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *clientLog) WithGroup(string) slog.Handler            { return l }

func (l *clientLog) Handle(ctx context.Context, r slog.Record) error {
	var msg, errText string
	attempts := 1
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "msg":
			msg = a.Value.String()
		case "err":
			errText = a.Value.String()
		case "failed_attempts":
			if n, ok := a.Value.Any().(int64); ok {
				attempts = int(n)
			}
		}
		return true
	})
	switch {
	case r.Message == outageWarning:
		msg = errText
	case r.Level >= slog.LevelWarn:
		return l.warn.Handle(ctx, r)
	}
	if msg == "" {
		return nil
	}
	l.mu.Lock()
	l.counts[maskNumbers(msg)] += max(attempts, 1)
	l.mu.Unlock()
	return nil
}

// take returns the counts since the last call and resets them.
func (l *clientLog) take() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.counts
	l.counts = map[string]int{}
	return c
}

// maskNumbers replaces runs of digits with N, so messages that differ only
// in offsets, ports or partitions count together.
func maskNumbers(s string) string {
	var b strings.Builder
	digits := false
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('N')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteRune(c)
	}
	return b.String()
}
