package scorer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/internal/redact"
	"github.com/recon-ad/recon/pkg/stream"
)

// Sink defaults.
const (
	DefaultSinkTimeout    = 10 * time.Second // per HTTP request
	DefaultResolveTimeout = 5 * time.Minute  // an Alertmanager alert's endsAt after its startsAt
	defaultSinkRetryMin   = 100 * time.Millisecond
	defaultSinkRetryMax   = 5 * time.Second
)

// ReasonSinkRefused is the dead-letter reason of an alert that an HTTP
// sink refused for good (a 4xx other than 429).
const ReasonSinkRefused = "sink_refused"

// AlertName is the alertname label of the alerts sent to Alertmanager.
const AlertName = "ReconAnomaly"

// SinkConfig sets the optional HTTP alert sinks, besides the Kafka alerts
// topic. The zero value configures none, and the replica works as without
// them. Every configured sink must acknowledge a batch's alerts (HTTP 2xx)
// before its offsets are committed; an alert a sink refuses for good (a
// 4xx other than 429) is dead-lettered with reason ReasonSinkRefused
// instead. Anything else (5xx, 429, no connection, a timeout) is retried
// with backoff, holding the commit, and makes the replica not ready after
// 5 s.
type SinkConfig struct {
	// Alertmanager lists the base URLs of an Alertmanager cluster's
	// instances ("http://am:9093"; alerts go to /api/v2/alerts). They
	// form one sink: each alert is posted to every instance, as
	// Prometheus does, and is acknowledged when one accepts it.
	Alertmanager []string
	// Webhooks lists URLs to POST the alerts' JSON to, as one JSON array
	// per request; each URL is a sink of its own.
	Webhooks []string
	// ResolveTimeout is how long after its record's time an Alertmanager
	// alert resolves unless sent again (its endsAt; default 5 min).
	ResolveTimeout time.Duration
	// Timeout bounds each HTTP request (default 10 s).
	Timeout time.Duration
	// Rate limits each sink to this many alerts a second, with bursts of
	// one second's worth (0: no limit).
	Rate float64
	// RetryMin and RetryMax bound the wait before a failed request is sent
	// again: it starts at RetryMin and doubles (defaults 100 ms and 5 s).
	// A 429 or 503 with a Retry-After header waits at least that long (at
	// most 5 minutes).
	RetryMin, RetryMax time.Duration
	// Group is the scorer's consumer group, the group label of the
	// alerts sent to Alertmanager ("": none).
	Group string
	// Client sends the requests (nil: a plain http.Client).
	Client *http.Client
}

// Validate checks the URLs and the settings.
func (c SinkConfig) Validate() error {
	for _, u := range append(append([]string(nil), c.Alertmanager...), c.Webhooks...) {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("sink URL %q: %w", redact.URL(u), err)
		}
		if (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("sink URL %q: want http:// or https:// and a host", redact.URL(u))
		}
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("sink rate %v: must be a finite number of alerts a second, 0 for no limit", c.Rate)
	}
	if c.Timeout < 0 || c.ResolveTimeout < 0 || c.RetryMin < 0 || c.RetryMax < 0 {
		return errors.New("sink timeouts and retry waits must not be negative")
	}
	return nil
}

func (c SinkConfig) withDefaults() SinkConfig {
	if c.ResolveTimeout == 0 {
		c.ResolveTimeout = DefaultResolveTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultSinkTimeout
	}
	if c.RetryMin == 0 {
		c.RetryMin = defaultSinkRetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = defaultSinkRetryMax
	}
	c.RetryMax = max(c.RetryMax, c.RetryMin)
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	return c
}

// newSinks builds the configured sinks, their metrics at 0.
func newSinks(c SinkConfig, m *Metrics, log *slog.Logger) ([]*httpSink, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	var sinks []*httpSink
	add := func(name string, urls []string, encode func([]stream.Record) ([]byte, error)) {
		s := &httpSink{name: name, urls: urls, encode: encode, cfg: c, log: log,
			sent: m.sinkSent.WithLabelValues(name), failures: m.sinkFailures.WithLabelValues(name), retries: m.sinkRetries.WithLabelValues(name)}
		if c.Rate > 0 {
			s.bucket = newBucket(c.Rate)
		}
		sinks = append(sinks, s)
	}
	if len(c.Alertmanager) > 0 {
		urls := make([]string, len(c.Alertmanager))
		for i, u := range c.Alertmanager {
			u = strings.TrimRight(u, "/")
			if !strings.HasSuffix(u, "/api/v2/alerts") {
				u += "/api/v2/alerts"
			}
			urls[i] = u
		}
		add("alertmanager", urls, func(alerts []stream.Record) ([]byte, error) {
			return alertmanagerBody(alerts, c.Group, c.ResolveTimeout)
		})
	}
	for i, u := range c.Webhooks {
		name := "webhook"
		if len(c.Webhooks) > 1 {
			name = "webhook-" + strconv.Itoa(i+1)
		}
		add(name, []string{u}, webhookBody)
	}
	return sinks, nil
}

// webhookBody is alerts' JSON, as the alerts topic has it, in one array.
func webhookBody(alerts []stream.Record) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, a := range alerts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(a.Value)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

// postableAlert is Alertmanager's API v2 alert.
type postableAlert struct {
	Labels      map[string]string `json:"labels"`      // identify the alert; routed and grouped on
	Annotations map[string]string `json:"annotations"` // what it says
	StartsAt    time.Time         `json:"startsAt"`    // the record's time
	EndsAt      time.Time         `json:"endsAt"`      // when it resolves unless sent again
}

// alertmanagerBody is alerts as Alertmanager's postable alerts: labels
// alertname, key (the record's key), top_feature, model_version and
// group; annotations summary, id, score, threshold and features; startsAt
// the record's time, endsAt resolve later.
func alertmanagerBody(alerts []stream.Record, group string, resolve time.Duration) ([]byte, error) {
	out := make([]postableAlert, 0, len(alerts))
	for _, m := range alerts {
		var a Alert
		if err := json.Unmarshal(m.Value, &a); err != nil {
			return nil, fmt.Errorf("alert JSON: %w", err)
		}
		start := a.Source.Timestamp
		if start.IsZero() {
			start = a.ScoredAt
		}
		top := ""
		feats := make([]string, 0, len(a.Features))
		for i, f := range a.Features {
			if i == 0 {
				top = f.Name
			}
			feats = append(feats, fmt.Sprintf("%s=%.4g (value %.6g, expected %.6g)", f.Name, f.Error, f.Value, f.Reconstruction))
		}
		labels := map[string]string{"alertname": AlertName, "key": strings.ToValidUTF8(string(m.Key), "\uFFFD"),
			"top_feature": top, "model_version": strconv.FormatUint(a.Model.Version, 10)}
		if group != "" {
			labels["group"] = group
		}
		for k, v := range labels {
			if v == "" || !utf8.ValidString(v) {
				delete(labels, k) // Alertmanager drops empty labels anyway
			}
		}
		out = append(out, postableAlert{Labels: labels,
			Annotations: map[string]string{
				"summary":   fmt.Sprintf("record %s scored %.4g, above the threshold %.4g (top feature %s)", a.ID, a.Score, a.Threshold, top),
				"id":        a.ID,
				"score":     strconv.FormatFloat(a.Score, 'g', -1, 64),
				"threshold": strconv.FormatFloat(a.Threshold, 'g', -1, 64),
				"features":  strings.Join(feats, ", "),
			},
			StartsAt: start.UTC(), EndsAt: start.Add(resolve).UTC()})
	}
	return json.Marshal(out)
}

// sendOutcome is how a request to a sink ended.
type sendOutcome int

const (
	sendOK        sendOutcome = iota // 2xx: acknowledged
	sendRefused                      // a 4xx other than 429: refused for good
	sendTransient                    // anything else: retried
)

// httpSink posts alerts to one or more URLs (one acknowledgement is
// enough) with a rate limit, retrying transient failures with backoff.
// It is used by the publisher goroutine only, but for failing.
type httpSink struct {
	name   string
	urls   []string
	encode func([]stream.Record) ([]byte, error)
	cfg    SinkConfig
	log    *slog.Logger
	bucket *bucket // nil: no rate limit

	sent, failures, retries prometheus.Counter

	refused   int       // alerts refused since the last line saying so
	refusedAt time.Time // that line

	run failureRun // of requests not answered
}

// deliver sends alerts, in order, in requests of at most one second's
// worth of the rate, each until it is answered or ctx ends. It returns the
// alerts refused for good, as dead letters.
func (s *httpSink) deliver(ctx context.Context, alerts []stream.Record) ([]stream.Record, error) {
	chunk := len(alerts)
	if s.bucket != nil {
		chunk = int(s.bucket.burst)
	}
	var refused []stream.Record
	for i := 0; i < len(alerts); i += chunk {
		r, err := s.deliverPart(ctx, alerts[i:min(i+chunk, len(alerts))])
		if err != nil {
			return nil, err
		}
		refused = append(refused, r...)
	}
	return refused, nil
}

// deliverPart sends part until it is answered. A part refused whole is
// sent again one alert at a time, so only the alerts refused alone are
// dead-lettered (the others may then reach the sink twice: at least once).
func (s *httpSink) deliverPart(ctx context.Context, part []stream.Record) ([]stream.Record, error) {
	body, err := s.encode(part)
	if err != nil {
		return s.refuse(ctx, part, err)
	}
	wait := backoff.Backoff{Min: s.cfg.RetryMin, Max: s.cfg.RetryMax}
	for attempt := 0; ; attempt++ {
		if s.bucket != nil {
			if err := backoff.Sleep(ctx, s.bucket.reserve(time.Now(), len(part))); err != nil {
				return nil, err
			}
		}
		if attempt > 0 {
			s.retries.Inc()
		}
		out, err := s.post(ctx, body)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		switch out {
		case sendOK:
			s.ok()
			s.sent.Add(float64(len(part)))
			return nil, nil
		case sendRefused:
			s.ok() // answered: the sink works
			s.failures.Inc()
			return s.refuse(ctx, part, err)
		}
		s.failures.Inc()
		next := retryWait(err, wait.Next())
		s.fail(err, next)
		if err := backoff.Sleep(ctx, next); err != nil {
			return nil, err
		}
	}
}

// refuse dead-letters an alert refused alone; a part of several is sent
// again one by one.
func (s *httpSink) refuse(ctx context.Context, part []stream.Record, why error) ([]stream.Record, error) {
	if len(part) == 1 {
		s.refusedLog(why)
		return []stream.Record{sinkDeadLetter(part[0], s.name, why)}, nil
	}
	var refused []stream.Record
	for i := range part {
		r, err := s.deliverPart(ctx, part[i:i+1])
		if err != nil {
			return nil, err
		}
		refused = append(refused, r...)
	}
	return refused, nil
}

// refusedLog counts a refused alert, logging the first at once and then
// at most one line every refusedEvery with the count since.
func (s *httpSink) refusedLog(why error) {
	s.refused++
	if now := time.Now(); now.Sub(s.refusedAt) >= refusedEvery {
		s.log.Warn("an alert sink refused alerts for good; they are dead-lettered (reason "+ReasonSinkRefused+")",
			"sink", s.name, "alerts", s.refused, "err", why)
		s.refused, s.refusedAt = 0, now
	}
}

const refusedEvery = 5 * time.Second

// sinkDeadLetter is alert m, refused by sink, for the dead-letter topic:
// the alert's JSON, with the source record's position in the headers.
func sinkDeadLetter(m stream.Record, sink string, why error) stream.Record {
	var a struct {
		Source RecordRef `json:"source"`
	}
	_ = json.Unmarshal(m.Value, &a) // the scorer's own JSON; at worst the position is empty
	m.Topic, m.Partition, m.Offset = a.Source.Topic, a.Source.Partition, a.Source.Offset
	return deadLetter(m, ReasonSinkRefused, fmt.Sprintf("alert sink %s refused the alert: %v", sink, why))
}

// post sends body to every URL at once and returns the best outcome: one
// 2xx acknowledges it; it is refused only when every URL refuses it.
func (s *httpSink) post(ctx context.Context, body []byte) (sendOutcome, error) {
	if len(s.urls) == 1 {
		return s.postOne(ctx, s.urls[0], body)
	}
	outs := make([]sendOutcome, len(s.urls))
	errs := make([]error, len(s.urls))
	var wg sync.WaitGroup
	for i, u := range s.urls {
		wg.Go(func() { outs[i], errs[i] = s.postOne(ctx, u, body) })
	}
	wg.Wait()
	best := sendRefused
	for _, o := range outs {
		switch o {
		case sendOK:
			return sendOK, nil
		case sendTransient:
			best = sendTransient
		}
	}
	return best, errors.Join(errs...)
}

func (s *httpSink) postOne(ctx context.Context, u string, body []byte) (sendOutcome, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return sendRefused, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, query and all
		}
		return sendTransient, fmt.Errorf("POST %s: %w", redact.URL(u), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return sendOK, nil
	case c >= 400 && c < 500 && c != http.StatusTooManyRequests:
		return sendRefused, fmt.Errorf("POST %s: %s: %s", redact.URL(u), resp.Status, strings.TrimSpace(string(msg)))
	default:
		err := fmt.Errorf("POST %s: %s: %s", redact.URL(u), resp.Status, strings.TrimSpace(string(msg)))
		if c == http.StatusTooManyRequests || c == http.StatusServiceUnavailable {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				err = &retryAfterError{wait: d, err: err}
			}
		}
		return sendTransient, err
	}
}

// maxRetryAfter bounds the wait a sink's Retry-After may ask for.
const maxRetryAfter = 5 * time.Minute

// retryAfterError is a transient failure whose answer (429 or 503) asked
// for a wait before the next request.
type retryAfterError struct {
	wait time.Duration
	err  error
}

// Error says the failure and the wait asked for.
func (e *retryAfterError) Error() string { return fmt.Sprintf("%v (retry after %v)", e.err, e.wait) }

// Unwrap returns the failure.
func (e *retryAfterError) Unwrap() error { return e.err }

// parseRetryAfter reads a Retry-After header: delay-seconds or an
// HTTP-date (RFC 9110 10.2.3), as a wait from now (0 for a date past, at
// most maxRetryAfter).
func parseRetryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter), true
	}
	return 0, false
}

// retryWait is the wait before the next request after a failure err,
// with backoff at wait: at least what a Retry-After asked for (at most
// maxRetryAfter).
func retryWait(err error, wait time.Duration) time.Duration {
	var ra *retryAfterError
	if errors.As(err, &ra) {
		return max(wait, min(ra.wait, maxRetryAfter))
	}
	return wait
}

// fail records a failed request, logging the first of a run at once and
// then at most every interval (doubling to a minute).
func (s *httpSink) fail(err error, retryIn time.Duration) {
	if failingFor, warn := s.run.fail(err, ""); warn {
		s.log.Warn("sending alerts to a sink failed; retrying (offsets stay uncommitted)", "sink", s.name, "err", err,
			"failing_for", failingFor.Round(time.Millisecond), "retry_in", retryIn)
	}
}

func (s *httpSink) ok() {
	if failedFor, ended := s.run.ok(); ended {
		s.log.Info("sending alerts to a sink works again", "sink", s.name, "failed_for", failedFor.Round(time.Millisecond))
	}
}

// failing returns since when requests have been failing, and the last
// error (zero time: they work).
func (s *httpSink) failing() (time.Time, string) { return s.run.failing() }

// deliverSinks sends alerts to every sink at once and returns the dead
// letters of the alerts any refused, when all have answered.
func deliverSinks(ctx context.Context, sinks []*httpSink, alerts []stream.Record) ([]stream.Record, error) {
	if len(sinks) == 0 || len(alerts) == 0 {
		return nil, nil
	}
	refused := make([][]stream.Record, len(sinks))
	errs := make([]error, len(sinks))
	var wg sync.WaitGroup
	for i, s := range sinks {
		wg.Go(func() { refused[i], errs[i] = s.deliver(ctx, alerts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []stream.Record
	for _, r := range refused {
		out = append(out, r...)
	}
	return out, nil
}

// bucket is a token bucket: rate tokens a second, up to burst. It is a
// plain type with the time passed in.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// newBucket returns a full bucket of rate a second, bursts of one
// second's worth (at least 1).
func newBucket(rate float64) *bucket {
	b := max(1, math.Floor(rate))
	return &bucket{rate: rate, burst: b, tokens: b}
}

// reserve takes n tokens (n <= burst) at now and returns how long to wait
// before using them; the tokens may go into debt, repaid at the rate.
func (b *bucket) reserve(now time.Time, n int) time.Duration {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(math.Ceil(-b.tokens / b.rate * float64(time.Second)))
}
