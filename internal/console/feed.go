package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/pkg/stream"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// FeedConfig says where the console reads from.
type FeedConfig struct {
	Brokers      []string        // bootstrap addresses
	Security     stream.Security // TLS and SASL for Kafka
	RecordsTopic string          // the scored records: its end offsets give the rate in, and the groups' lag
	AlertsTopic  string          // the alerts
	DLQTopic     string          // the dead letters
	ScoresTopic  string          // "": no score distribution, neighbours or scorer versions
	ScorerGroup  string          // the scorers' group, whose lag is shown ("": none)
	TrainerGroup string          // the trainers' group, whose lag is shown ("": none)
	// Lookback is how far back the alerts and dead-letter topics are read
	// at start; ScoresLookback the same for the scores topic, which is
	// larger (zero: DefaultFeedConfig's).
	Lookback, ScoresLookback time.Duration
	Coordinator              reconv1.CoordinatorClient // nil: no training or models
	Log                      *slog.Logger              // where outages are logged
	Metrics                  *Metrics                  // the console's metrics
}

// DefaultFeedConfig returns the defaults, the values the console's flags
// start from: recon's default topics and groups on a local broker.
func DefaultFeedConfig() FeedConfig {
	return FeedConfig{Brokers: []string{"127.0.0.1:9092"}, RecordsTopic: "recon-events", AlertsTopic: "recon-alerts",
		DLQTopic: "recon-dlq", ScoresTopic: "recon-scores", ScorerGroup: "recon-scorer", TrainerGroup: "recon-trainer",
		Lookback: 15 * time.Minute, ScoresLookback: time.Minute}
}

// Feed fills state from Kafka and the coordinator until ctx ends, and
// calls tick with each second's point.
type Feed struct {
	cfg   FeedConfig
	state *State
	// unix nanoseconds of the last good reading of Kafka (lag) and of the
	// coordinator (status)
	kafkaOK, coordOK atomic.Int64
	start            time.Time
}

// NewFeed returns a Feed over state.
func NewFeed(cfg FeedConfig, state *State) (*Feed, error) {
	if len(cfg.Brokers) == 0 || cfg.RecordsTopic == "" || cfg.AlertsTopic == "" || cfg.DLQTopic == "" {
		return nil, errors.New("console: brokers and the records, alerts and dead-letter topics are required")
	}
	d := DefaultFeedConfig()
	if cfg.Lookback <= 0 {
		cfg.Lookback = d.Lookback
	}
	if cfg.ScoresLookback <= 0 {
		cfg.ScoresLookback = d.ScoresLookback
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Feed{cfg: cfg, state: state, start: time.Now()}, nil
}

// Ready reports whether the console's picture is current: Kafka and the
// coordinator answered within the last 10 s (after a grace of 10 s at
// start).
func (f *Feed) Ready() error {
	now := time.Now()
	if now.Sub(f.start) < 10*time.Second {
		return nil
	}
	if t := f.kafkaOK.Load(); now.Sub(time.Unix(0, t)) > 10*time.Second {
		return errors.New("the Kafka brokers have not answered the lag queries for 10 s")
	}
	if f.cfg.Coordinator != nil {
		if t := f.coordOK.Load(); now.Sub(time.Unix(0, t)) > 10*time.Second {
			return errors.New("the coordinator has not answered for 10 s")
		}
	}
	return nil
}

// Run reads until ctx ends, calling tick once a second with the point
// that second closed.
func (f *Feed) Run(ctx context.Context, tick func(Point)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	goRun := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	now := time.Now()
	tail := func(topic string, since time.Time, fn func(stream.Record)) {
		read := f.cfg.Metrics.read.WithLabelValues(topic)
		goRun(func() {
			err := stream.Tail(ctx, stream.TailConfig{Brokers: f.cfg.Brokers, Topic: topic, Since: since, Security: f.cfg.Security, Logger: f.cfg.Log},
				func(m stream.Record) {
					read.Inc()
					fn(m)
				})
			if err != nil {
				f.cfg.Log.Error("console: following a topic", "topic", topic, "err", err)
			}
		})
	}
	tail(f.cfg.AlertsTopic, now.Add(-f.cfg.Lookback), f.alert)
	tail(f.cfg.DLQTopic, now.Add(-f.cfg.Lookback), func(m stream.Record) { f.state.AddDeadLetter(header(m, scorer.HeaderReason)) })
	if f.cfg.ScoresTopic != "" {
		tail(f.cfg.ScoresTopic, now.Add(-f.cfg.ScoresLookback), f.score)
	}
	goRun(func() { f.pollLag(ctx) })
	if f.cfg.Coordinator != nil {
		goRun(func() { f.pollCoordinator(ctx) })
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			tick(f.state.Tick(now))
		}
	}
}

func header(m stream.Record, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func (f *Feed) alert(m stream.Record) {
	var a scorer.Alert
	if err := json.Unmarshal(m.Value, &a); err != nil || a.ID == "" {
		f.undecodable(m, err)
		return
	}
	f.state.AddAlert(string(m.Key), a, time.Now())
}

func (f *Feed) score(m stream.Record) {
	var r scorer.ScoreRecord
	if err := json.Unmarshal(m.Value, &r); err != nil || r.ID == "" {
		f.undecodable(m, err)
		return
	}
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	f.state.AddScore(string(m.Key), r, t)
}

func (f *Feed) undecodable(m stream.Record, err error) {
	if err == nil {
		err = errors.New("no id")
	}
	f.state.AddUndecodable(m.Topic)
	f.cfg.Metrics.undecodable.WithLabelValues(m.Topic).Inc()
	f.cfg.Log.Debug("console: a record it cannot read", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
}

// pollLag reads the groups' progress every 2 s.
func (f *Feed) pollLag(ctx context.Context) {
	admin := f.cfg.Security.Admin(f.cfg.Brokers)
	defer admin.Close()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		f.readLag(ctx, admin)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Feed) readLag(ctx context.Context, admin *stream.Admin) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var lags []GroupLag
	end, ok := int64(0), false
	for _, g := range []struct{ role, group string }{{RoleScorer, f.cfg.ScorerGroup}, {RoleTrainer, f.cfg.TrainerGroup}} {
		if g.group == "" {
			continue
		}
		gl := GroupLag{Role: g.role, Group: g.group, Partitions: []PartitionLag{}}
		prog, err := admin.GroupProgress(ctx, g.group, f.cfg.RecordsTopic)
		if err != nil {
			gl.Error = err.Error()
			lags = append(lags, gl)
			continue
		}
		holders, state, err := admin.Holders(ctx, g.group, f.cfg.RecordsTopic)
		if err == nil {
			gl.State = state
		}
		sum := int64(0)
		for p, pp := range prog {
			gl.Partitions = append(gl.Partitions, PartitionLag{Partition: p, Committed: pp.Committed, End: pp.End, Lag: pp.Lag(), Holder: holders[p]})
			gl.Total += pp.Lag()
			sum += pp.End
		}
		sort.Slice(gl.Partitions, func(i, j int) bool { return gl.Partitions[i].Partition < gl.Partitions[j].Partition })
		if !ok {
			end, ok = sum, true
		}
		lags = append(lags, gl)
	}
	if !ok {
		end = -1
	} else {
		f.kafkaOK.Store(time.Now().UnixNano())
	}
	f.state.SetLags(lags, end, time.Now())
}

// pollCoordinator reads the training status every second, and the stored
// versions when the newest changes (and every 30 s).
func (f *Feed) pollCoordinator(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var listed uint64
	var listedAt time.Time
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := f.cfg.Coordinator.Status(cctx, &reconv1.StatusRequest{})
		if err != nil {
			if ctx.Err() == nil {
				f.state.SetTrainingError(fmt.Errorf("coordinator: %w", err))
			}
		} else {
			f.coordOK.Store(time.Now().UnixNano())
			f.state.SetTraining(st, time.Now())
			if st.GetVersion() != listed || time.Since(listedAt) > 30*time.Second {
				resp, err := f.cfg.Coordinator.ListCheckpoints(cctx, &reconv1.ListCheckpointsRequest{})
				f.state.SetModels(resp.GetCheckpoints(), err)
				if err == nil {
					listed, listedAt = st.GetVersion(), time.Now()
				}
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// GRPCRollback rolls back through the coordinator's Rollback RPC.
type GRPCRollback struct {
	Client reconv1.CoordinatorClient // the coordinator
}

// Rollback implements Rollbacker.
func (g GRPCRollback) Rollback(ctx context.Context, version uint64) (uint64, error) {
	resp, err := g.Client.Rollback(ctx, &reconv1.RollbackRequest{Version: version})
	if err != nil {
		return 0, err
	}
	return resp.GetVersion(), nil
}
