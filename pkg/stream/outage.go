package stream

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// outage turns kafka-go's per-attempt errors into one warning per burst of
// attempts: the first failure after a healthy spell is reported at once,
// later ones at most every interval, which doubles up to a minute while
// the outage lasts; the first success after it says so once.
type outage struct {
	log     *slog.Logger
	what    string // "reader recon-events" and the like
	brokers string

	mu       sync.Mutex
	since    time.Time // start of the outage (zero: healthy)
	next     time.Time // when the next warning may be logged
	interval time.Duration
	failures int // attempts failed since the last warning
	now      func() time.Time
}

func newOutage(log *slog.Logger, what string, brokers []string) *outage {
	return &outage{log: log, what: what, brokers: strings.Join(brokers, ","), now: time.Now}
}

// Kinds of failed attempt, named for what they are: only "unreachable"
// says Kafka cannot be reached.
const (
	kindUnreachable = "unreachable" // no broker answers (refused, reset, dial timeout)
	kindAuth        = "auth"        // SASL or TLS refused
	kindTopic       = "topic"       // the topic (or partition) does not exist
	kindRebalance   = "rebalance"   // the consumer group is rebalancing: routine
	kindTooLarge    = "too_large"   // a record exceeds a broker or client size limit
	kindIdle        = "idle"        // a fetch long-poll timed out on an idle partition
	kindOffset      = "offset"      // an offset outside the partition's log
	kindOther       = "other"       // a Kafka error not named above
)

// classify names a kafka-go error message: its kind, and the line to log.
func classify(msg string) (kind, what string) {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
	switch {
	case authFailure(msg):
		return kindAuth, "Kafka refused the credentials (check the SASL mechanism, username and password); retrying with backoff"
	case has("unknown topic", "topic or partition that does not exist"):
		return kindTopic, "the topic does not exist on the brokers (create it, or check the topic name); retrying with backoff"
	case has("rebalance in progress", "illegal generation", "unknown member", "not coordinator", "coordinator not available", "coordinator load in progress"):
		return kindRebalance, "the consumer group is rebalancing; kafka-go rejoins"
	case has("too large", "message size", "record list"):
		return kindTooLarge, "a record is larger than Kafka accepts"
	case has("offset out of range", "passed the last offset", "before the first offset"):
		return kindOffset, "an offset is outside the partition's log (the log was truncated or the broker started empty)"
	case has("i/o timeout", "deadline exceeded") && !has("dial"):
		return kindIdle, "a fetch timed out (an idle partition); kafka-go retries"
	case has("connection refused", "dial", "connection reset", "broken pipe", "eof", "no such host", "network is unreachable", "no route to host", "connection closed"):
		return kindUnreachable, "cannot reach Kafka; retrying with backoff"
	}
	return kindOther, "a Kafka request failed; retrying with backoff"
}

// fail records one failed attempt. Routine ones (a rebalance, an idle
// partition's fetch timing out) are logged at debug level and start no
// outage; the rest are outages, reported in their own words.
func (o *outage) fail(msg string) {
	if o == nil || o.log == nil {
		return
	}
	kind, what := classify(msg)
	if kind == kindRebalance || kind == kindIdle {
		o.log.Debug(what, "client", o.what, "err", msg)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	o.failures++
	if o.since.IsZero() {
		o.since, o.interval, o.next = now, 5*time.Second, now
	}
	if now.Before(o.next) {
		return
	}
	o.log.Warn(what, "kind", kind, "client", o.what, "brokers", o.brokers,
		"err", msg, "failed_attempts", o.failures, "down_for", now.Sub(o.since).Round(time.Millisecond).String(),
		"next_report_in", o.interval.String())
	o.failures = 0
	o.next = now.Add(o.interval)
	o.interval = min(2*o.interval, time.Minute)
}

// ok records a success, ending any outage.
func (o *outage) ok() {
	if o == nil || o.log == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	o.log.Info("Kafka works again", "client", o.what, "brokers", o.brokers, "down_for", o.now().Sub(o.since).Round(time.Millisecond).String())
	o.since, o.failures = time.Time{}, 0
}

// started returns when the current outage began (zero: none, or no
// logger to report to).
func (o *outage) started() time.Time {
	if o == nil || o.log == nil {
		return time.Time{}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.since
}

// logf adapts kafka-go's ErrorLogger.
func (o *outage) logf(format string, a ...any) { o.fail(fmt.Sprintf(format, a...)) }
