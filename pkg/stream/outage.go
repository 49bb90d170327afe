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

// fail records one failed attempt.
func (o *outage) fail(msg string) {
	if o == nil || o.log == nil {
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
	what := "cannot reach Kafka; kafka-go retries with backoff"
	if authFailure(msg) {
		what = "Kafka refused the credentials (check the SASL mechanism, username and password); retrying with backoff"
	}
	o.log.Warn(what, "client", o.what, "brokers", o.brokers,
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
	o.log.Info("Kafka reachable again", "client", o.what, "brokers", o.brokers, "down_for", o.now().Sub(o.since).Round(time.Millisecond).String())
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
