package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/backoff"
)

// DefaultMaxWait is how long a batch waits to fill after its first record
// unless a ReaderConfig says otherwise.
const DefaultMaxWait = 20 * time.Millisecond

// ReaderConfig configures a consumer-group Reader.
type ReaderConfig struct {
	Brokers  []string      // bootstrap addresses
	Topic    string        // topic to consume
	Group    string        // consumer group
	MaxBatch int           // most records per batch (default 500)
	MaxWait  time.Duration // how long a batch waits to fill after its first record (default DefaultMaxWait)
	// StartFirst makes a group with no committed offsets start at the
	// oldest record (default: the newest).
	StartFirst bool
	Logger     *slog.Logger // optional: where outages are reported (one line per burst of failed attempts)
	Security   Security     // TLS and SASL (zero: plaintext)
}

// Reader hands out batches of a consumer group's records and commits only
// what the caller says it has finished, so a crash before Commit re-delivers
// (at least once, never lost).
type Reader struct {
	cfg ReaderConfig
	rc  kafka.ReaderConfig
	out *outage
	mu  sync.Mutex
	cur *membership // Rejoin replaces it
	// closed is set by Close; stopWatch and watched end and await the
	// stuck-partition watch, when Watch started one.
	closed    bool
	stopWatch context.CancelFunc
	watched   chan struct{}
	// stopMonitor and monitored end and await the progress monitor, when
	// Monitor started one.
	stopMonitor context.CancelFunc
	monitored   chan struct{}

	fetchFailing atomic.Pointer[fetchFailure]
}

// membership is one kafka-go group reader; ctx ends when Rejoin or Close
// ends it, before the reader is closed.
type membership struct {
	kr  *kafka.Reader
	ctx context.Context
	end context.CancelFunc
}

func newMembership(rc kafka.ReaderConfig) *membership {
	ctx, end := context.WithCancel(context.Background())
	return &membership{kr: kafka.NewReader(rc), ctx: ctx, end: end}
}

// NewReader joins cfg.Group on cfg.Topic.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("stream: a reader needs brokers, a topic and a group")
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 500
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = DefaultMaxWait
	}
	rc := kafka.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, GroupID: cfg.Group,
		// MaxWait here is the broker's long-poll and, in kafka-go, also the
		// fetch's socket deadline: at the batch-fill wait (milliseconds) an
		// idle topic or a large fetch times the connection out, and kafka-go
		// redials and retries forever. With MinBytes 1 the broker answers
		// as soon as a record exists, so a long poll costs no latency.
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: time.Second,
		CommitInterval: 0, // synchronous commits: only what the caller finished
		StartOffset:    kafka.LastOffset,
		QueueCapacity:  max(cfg.MaxBatch, 100),
		// A member that dies without leaving holds its partitions until
		// the session times out: 10 s rather than kafka-go's 30 s. The
		// broker answers a JoinGroup only when every member has rejoined
		// or the rebalance timeout has passed, and kafka-go gives up on
		// any group request after 5 s; a rebalance timeout above that (the
		// default is 30 s) turns a dead member into join attempts that
		// time out one after another (found by the fault tests).
		SessionTimeout: 10 * time.Second, RebalanceTimeout: 4 * time.Second, HeartbeatInterval: time.Second,
		Dialer: cfg.Security.dialer(),
	}
	if cfg.StartFirst {
		rc.StartOffset = kafka.FirstOffset
	}
	out := newOutage(cfg.Logger, "reader "+cfg.Topic, cfg.Brokers)
	rc.ErrorLogger = kafka.LoggerFunc(out.logf)
	if l := cfg.Logger; l != nil && l.Enabled(context.Background(), slog.LevelDebug) {
		// kafka-go's own account of the group (joins, assignments, the
		// offsets each partition starts from): a few lines a rebalance.
		l = l.With("client", "reader "+cfg.Topic)
		rc.Logger = kafka.LoggerFunc(func(format string, args ...any) {
			if strings.HasPrefix(format, "committed offsets for group") {
				return // one per batch: the recon_*_records_total metrics count these
			}
			l.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
		})
	}
	return &Reader{cur: newMembership(rc), rc: rc, cfg: cfg, out: out}, nil
}

// current returns the current membership, and whether Close was called.
func (r *Reader) current() (*membership, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur, r.closed
}

// Rejoin joins the group again as a new member and then leaves as the old
// one, so that the group rebalances and assigns every partition anew.
// Records fetched by the old member and not yet committed are re-delivered
// to whoever gets their partitions; a Batch waiting for its first record
// goes on with the new member, and one filling stops filling. Committing
// records the old member fetched goes through the new one: if their
// partitions moved to another member that already committed further, its
// offset moves back (records scored twice, none lost).
func (r *Reader) Rejoin() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	old := r.cur
	r.cur = newMembership(r.rc)
	r.mu.Unlock()
	old.end()
	return old.kr.Close()
}

// Watch starts watching the group for a partition stuck for after (see
// watchStuck) and rejoins whenever one is found, until Close; ready, when
// not nil, says when the caller's own work is going on, so that a stall
// is the group's. Only the first call starts a watch; after <= 0 starts
// none.
func (r *Reader) Watch(after time.Duration, ready func() bool) {
	if after <= 0 {
		return
	}
	log := r.log()
	sw := &stuckWatch{security: r.cfg.Security, brokers: r.cfg.Brokers, group: r.cfg.Group, topic: r.cfg.Topic,
		after: after, ready: ready, log: log}
	r.background(&r.stopWatch, &r.watched, func(ctx context.Context) {
		for sw.wait(ctx) {
			if err := r.Rejoin(); err != nil {
				log.Warn("leaving the group to rejoin it", "group", r.cfg.Group, "err", err)
			}
		}
	})
}

// background runs f in a goroutine that Close ends (through *stop) and
// awaits (through *done), unless the reader is closed or *stop is set
// already (one of each kind per reader).
func (r *Reader) background(stop *context.CancelFunc, done *chan struct{}, f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	if r.closed || *stop != nil {
		r.mu.Unlock()
		cancel()
		return
	}
	ch := make(chan struct{})
	*stop, *done = cancel, ch
	r.mu.Unlock()
	go func() {
		defer close(ch)
		f(ctx)
	}()
}

// log returns the configured logger, or one that discards.
func (r *Reader) log() *slog.Logger {
	if r.cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.cfg.Logger
}

// Batch returns the next records: it blocks for the first, then gathers
// more until MaxBatch or MaxWait. The records are not committed. A failed
// fetch is not returned: kafka-go heals by itself (its group reader keeps
// rejoining, its partition readers redial), so Batch reports it (one line
// per burst, in its own words) and fetches again with capped backoff. It
// returns an error only when ctx ends or the reader is closed.
func (r *Reader) Batch(ctx context.Context) ([]Record, error) {
	return r.BatchInto(ctx, nil)
}

// BatchInto is Batch with the records in dst[:0]'s array while they fit
// (a caller that is done with a batch hands its slice back, so that a
// steady stream allocates no batches).
func (r *Reader) BatchInto(ctx context.Context, dst []Record) ([]Record, error) {
	var wait backoff.Backoff
	for {
		m, closed := r.current()
		if closed {
			return nil, ErrClosed
		}
		first, err := m.kr.FetchMessage(ctx)
		if err == nil {
			r.fetchFailing.Store(nil)
			r.out.ok()
			if cap(dst) == 0 {
				dst = make([]Record, 0, min(r.cfg.MaxBatch, 256))
			}
			var slab []Header
			return r.fill(ctx, m, append(dst[:0], recordOf(first, &slab)), &slab), nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if now, closed := r.current(); closed {
			return nil, ErrClosed
		} else if now != m {
			continue // Rejoin closed the reader this fetch was on
		}
		f := &fetchFailure{since: time.Now(), err: err.Error()}
		if prev := r.fetchFailing.Load(); prev != nil {
			f.since = prev.since
		}
		r.fetchFailing.Store(f)
		r.out.fail(err.Error())
		if err := wait.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// ErrClosed is Batch's error on a closed Reader.
var ErrClosed = errors.New("stream: reader closed")

// fetchFailure is a run of failed fetches.
type fetchFailure struct {
	since time.Time
	err   string
}

// FetchFailing returns since when fetches have been failing and the last
// error (zero time: the last fetch worked, or none failed).
func (r *Reader) FetchFailing() (time.Time, string) {
	if f := r.fetchFailing.Load(); f != nil {
		return f.since, f.err
	}
	return time.Time{}, ""
}

// fill appends records from membership m to batch, which holds the
// first, until MaxBatch or MaxWait.
func (r *Reader) fill(ctx context.Context, m *membership, batch []Record, slab *[]Header) []Record {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.MaxWait)
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)() // rejoined: no more from the old member
	for len(batch) < r.cfg.MaxBatch && m.ctx.Err() == nil {
		msg, err := m.kr.FetchMessage(wctx)
		if err != nil {
			break // the wait ran out, the caller stops (these were not committed), or a fetch failed: hand out what there is
		}
		batch = append(batch, recordOf(msg, slab))
	}
	return batch
}

// Commit commits the offsets of finished records (per partition, the
// highest given). A commit under way when Rejoin ends its membership is
// made again through the new one.
func (r *Reader) Commit(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs)) // a commit needs the topic, partition and offset
	for i := range recs {
		msgs[i] = kafka.Message{Topic: recs[i].Topic, Partition: recs[i].Partition, Offset: recs[i].Offset}
	}
	for {
		m, _ := r.current()
		// kafka-go may take a commit request that a closing reader never
		// answers: the membership's end ends the wait.
		cctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(m.ctx, cancel)
		err := m.kr.CommitMessages(cctx, msgs...)
		stop()
		cancel()
		if err == nil {
			return nil
		}
		if now, closed := r.current(); ctx.Err() == nil && !closed && now != m {
			continue
		}
		return fmt.Errorf("commit %d records of %s: %w", len(msgs), r.cfg.Topic, err)
	}
}

// Close stops the watch, if any, and leaves the group.
func (r *Reader) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	m, stopWatch, stopMonitor := r.cur, r.stopWatch, r.stopMonitor
	r.mu.Unlock()
	if stopWatch != nil {
		stopWatch()
		<-r.watched
	}
	if stopMonitor != nil {
		stopMonitor()
		<-r.monitored
	}
	m.end()
	return m.kr.Close()
}

// WriterConfig configures a Writer.
type WriterConfig struct {
	Brokers      []string      // bootstrap addresses
	Topic        string        // topic to write
	BatchTimeout time.Duration // longest a record waits to be batched (default 5 ms; kafka-go's 1 s default is far too slow for alerts)
	MaxAttempts  int           // tries per batch before an error (default 10)
	Logger       *slog.Logger  // optional: where outages are reported (one line per burst of failed attempts)
	Security     Security      // TLS and SASL (zero: plaintext)
}

// Writer produces records with acknowledgement from all in-sync replicas.
type Writer struct {
	w   *kafka.Writer
	tr  *kafka.Transport // its own: kafka-go's Close leaves a given transport's connections open
	out *outage
	cfg WriterConfig

	mu      sync.Mutex
	diagFor time.Time // the outage (its start) diagnosed last
	diag    error     // what the dial said then (nil: nothing to add)
}

// NewWriter returns a writer to cfg.Topic; records with the same key go to
// the same partition.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("stream: a writer needs brokers and a topic")
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 5 * time.Millisecond
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.Topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: cfg.BatchTimeout, MaxAttempts: cfg.MaxAttempts,
		BatchSize: 1000, AllowAutoTopicCreation: false,
	}
	tr := cfg.Security.transport()
	w.Transport = tr
	out := newOutage(cfg.Logger, "writer "+cfg.Topic, cfg.Brokers)
	w.ErrorLogger = kafka.LoggerFunc(out.logf)
	return &Writer{w: w, tr: tr, out: out, cfg: cfg}, nil
}

// Write produces msgs and returns once the brokers have acknowledged all
// of them (or with the error of the first that failed).
func (w *Writer) Write(ctx context.Context, recs ...Record) error {
	ms := make([]kafka.Message, len(recs))
	var slab []kafka.Header
	for i := range recs {
		ms[i] = messageOf(&recs[i], &slab)
	}
	return w.write(ctx, ms)
}

func (w *Writer) write(ctx context.Context, msgs []kafka.Message) error {
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		// kafka-go's ErrorLogger reports some failed attempts, not all
		// (none when no broker can be dialled): the failed Write is one
		// more.
		err = w.diagnose(ctx, err)
		if ctx.Err() == nil {
			w.out.fail(err.Error())
		}
		return fmt.Errorf("write %d records to %s: %w", len(msgs), w.w.Topic, err)
	}
	w.out.ok()
	return nil
}

// WriteEach produces msgs and returns each one's error (nil: acknowledged
// by the brokers), so that a caller retries only what failed. A record
// larger than MaxRecordBytes fails alone with ErrRecordTooLarge, without
// being sent or holding up the rest; the brokers' own refusals (too large,
// a missing topic) come per partition batch. ClassifyWrite says what each
// error means for the record.
func (w *Writer) WriteEach(ctx context.Context, recs ...Record) []error {
	errs := make([]error, len(recs))
	send := make([]kafka.Message, 0, len(recs))
	idx := make([]int, 0, len(recs))
	var slab []kafka.Header
	for i := range recs {
		if size := RecordSize(recs[i]); size > MaxRecordBytes {
			errs[i] = fmt.Errorf("%w: about %d bytes, at most %d", ErrRecordTooLarge, size, MaxRecordBytes)
			continue
		}
		send, idx = append(send, messageOf(&recs[i], &slab)), append(idx, i)
	}
	if len(send) == 0 {
		return errs
	}
	err := w.write(ctx, send)
	if err == nil {
		return errs
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(send) {
		for j, e := range we {
			if e != nil {
				errs[idx[j]] = fmt.Errorf("write to %s: %w", w.w.Topic, e)
			}
		}
		return errs
	}
	for _, i := range idx {
		errs[i] = err
	}
	return errs
}

// MaxRecordBytes is the largest record a Writer sends: kafka-go's batch
// limit (1 MiB, which is also Kafka's default max.message.bytes) less
// room for the batch's framing.
const MaxRecordBytes = 1<<20 - 1024

// RecordSize bounds m's size on the wire from above (kafka-go's record
// size plus slack), for comparing with MaxRecordBytes.
func RecordSize(m Record) int {
	n := 64 + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 16 + len(h.Key) + len(h.Value)
	}
	return n
}

// diagnose adds the reason to a failed write when the brokers refused the
// SASL credentials: kafka-go's producer sees only a closed connection
// (unexpected EOF), a dial says why. It dials once per outage, not once
// per failed write.
func (w *Writer) diagnose(ctx context.Context, err error) error {
	if w.cfg.Security.SASL == nil || authFailure(err.Error()) || ctx.Err() != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if since := w.out.started(); since.IsZero() || !since.Equal(w.diagFor) {
		w.diagFor, w.diag = since, nil
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		conn, derr := w.cfg.Security.dialer().DialContext(dctx, "tcp", w.cfg.Brokers[0])
		if derr == nil {
			conn.Close()
		} else if authFailure(derr.Error()) {
			w.diag = derr
		}
	}
	if w.diag != nil {
		return fmt.Errorf("%w (%v)", err, w.diag) //nolint:errorlint // a note on err: a failed write is classified (the scorer's classifyWrite) by err's chain alone
	}
	return err
}

// Close flushes and closes the writer.
func (w *Writer) Close() error {
	err := w.w.Close()
	w.tr.CloseIdleConnections()
	return err
}

// EnsureTopics creates the topics that do not exist yet with the given
// partition counts (replication factor 1 on a one-broker cluster, else 3).
func EnsureTopics(ctx context.Context, brokers []string, topics map[string]int) error {
	return Security{}.EnsureTopics(ctx, brokers, topics)
}

// EnsureTopics is the package's EnsureTopics over connections secured by s.
func (s Security) EnsureTopics(ctx context.Context, brokers []string, topics map[string]int) error {
	if len(brokers) == 0 {
		return errors.New("stream: no brokers")
	}
	d := s.dialer()
	conn, err := d.DialContext(ctx, "tcp", brokers[0])
	if err != nil {
		return fmt.Errorf("connect to %s: %w", brokers[0], err)
	}
	defer conn.Close()
	ctl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("find the controller: %w", err)
	}
	bs, err := conn.Brokers()
	if err != nil {
		return fmt.Errorf("list brokers: %w", err)
	}
	rf := 3
	if len(bs) < 3 {
		rf = 1
	}
	cc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ctl.Host, strconv.Itoa(ctl.Port)))
	if err != nil {
		return fmt.Errorf("connect to the controller: %w", err)
	}
	defer cc.Close()
	var cfgs []kafka.TopicConfig
	for name, parts := range topics {
		if parts < 1 {
			return fmt.Errorf("stream: topic %s: %d partitions", name, parts)
		}
		cfgs = append(cfgs, kafka.TopicConfig{Topic: name, NumPartitions: parts, ReplicationFactor: rf})
	}
	if err := cc.CreateTopics(cfgs...); err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("create topics: %w", err)
	}
	return nil
}
