package scorer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/recon-ad/recon/internal/backoff"
	"github.com/recon-ad/recon/pkg/stream"
)

// Headers of a dead letter cut to fit: the source record's size and
// SHA-256 before it was cut.
const (
	HeaderTruncated      = "recon-dlq-truncated"       // "true" when the value (or key) was cut
	HeaderOriginalSize   = "recon-source-size"         // the source value's size in bytes
	HeaderOriginalSHA256 = "recon-source-value-sha256" // hex SHA-256 of the source value
)

// Outputs, as metric labels and in log lines.
const (
	outAlerts      = "alerts"
	outDeadLetters = "dead_letters"
	outScores      = "scores"
)

// cutTo are the sizes a dead letter's value is cut to, in turn, when it
// is too large: to fit the client's limit, then smaller for brokers with a
// lower max.message.bytes. Refused even at the last, it is dropped with an
// error line (and counted): the brokers refuse a few KiB.
var cutTo = []int{stream.MaxRecordBytes - 64<<10, 64 << 10, 4 << 10}

// fitDeadLetter returns dead letter m cut to fit within stream's record
// limit when it is larger; level 0 is the first cut.
func fitDeadLetter(m stream.Record) stream.Record {
	if stream.RecordSize(m) <= stream.MaxRecordBytes {
		return m
	}
	return cutDeadLetter(m, 0)
}

// cutDeadLetter cuts m's value to cutTo[level] bytes, its key and each
// header to 1 KiB, and adds the source value's size and digest (once).
func cutDeadLetter(m stream.Record, level int) stream.Record {
	size := len(m.Value)
	sum := sha256.Sum256(m.Value)
	digest := hex.EncodeToString(sum[:])
	var hs []stream.Header
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderTruncated:
			continue
		case HeaderOriginalSize:
			size, _ = strconv.Atoi(string(h.Value)) // cut before: keep the first figures
			continue
		case HeaderOriginalSHA256:
			digest = string(h.Value)
			continue
		}
		if len(h.Value) > 1<<10 {
			h.Value = h.Value[:1<<10]
		}
		hs = append(hs, h)
	}
	hs = append(hs, stream.Header{Key: HeaderTruncated, Value: []byte("true")},
		stream.Header{Key: HeaderOriginalSize, Value: []byte(strconv.Itoa(size))},
		stream.Header{Key: HeaderOriginalSHA256, Value: []byte(digest)})
	out := m
	out.Headers = hs
	if len(out.Key) > 1<<10 {
		out.Key = out.Key[:1<<10]
	}
	if n := cutTo[level]; len(out.Value) > n {
		out.Value = out.Value[:n]
	}
	return out
}

// sink is one output topic's writer.
type sink struct {
	name string
	w    *stream.Writer
}

// publisher writes batches' output to the sinks: each record until the
// brokers acknowledge it, never one already acknowledged again.
type publisher struct {
	alerts, dlq, scores sink // scores.w nil: no scores topic
	metrics             *Metrics
	log                 *slog.Logger
	run                 failureRun // of failed writes
}

// item is one record waiting for its sink; cut is how often a dead
// letter was cut already.
type item struct {
	msg stream.Record
	cut int
}

// publish writes out to the sinks, retrying with capped backoff what
// failed until it is acknowledged or ctx ends. A record the brokers refuse
// as too large goes to the dead-letter topic, cut (an alert or a score:
// its own JSON, with the reason "output_too_large").
func (p *publisher) publish(ctx context.Context, alerts, deadLetters, scores []stream.Record) error {
	pend := map[string][]item{}
	add := func(name string, msgs []stream.Record) {
		for _, m := range msgs {
			pend[name] = append(pend[name], item{msg: m})
		}
	}
	add(outAlerts, alerts)
	for _, m := range deadLetters {
		pend[outDeadLetters] = append(pend[outDeadLetters], item{msg: fitDeadLetter(m)})
	}
	if p.scores.w != nil {
		add(outScores, scores)
	}
	var wait backoff.Backoff
	for {
		var lastErr error
		config := false
		for _, s := range []sink{p.alerts, p.dlq, p.scores} {
			items := pend[s.name]
			if len(items) == 0 {
				continue
			}
			msgs := make([]stream.Record, len(items))
			for i, it := range items {
				msgs[i] = it.msg
			}
			errs := s.w.WriteEach(ctx, msgs...)
			var again []item
			for i, err := range errs {
				if err == nil {
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				it := items[i]
				switch stream.ClassifyWrite(err) {
				case stream.WriteTooLarge:
					p.metrics.outputTooLarge.WithLabelValues(s.name).Inc()
					if s.name != outDeadLetters {
						dl := deadLetter(it.msg, "output_too_large", fmt.Sprintf("the %s record is larger than the brokers accept: %v", s.name, err))
						pend[outDeadLetters] = append(pend[outDeadLetters], item{msg: fitDeadLetter(dl)})
						continue
					}
					if it.cut >= len(cutTo) {
						p.metrics.outputDropped.Inc()
						p.log.Error("the brokers refuse a dead letter even cut to a few KiB; it is dropped (raise the topic's max.message.bytes)",
							"topic", header(it.msg, HeaderTopic), "partition", header(it.msg, HeaderPartition), "offset", header(it.msg, HeaderOffset), "err", err)
						continue
					}
					it.msg = cutDeadLetter(it.msg, it.cut)
					it.cut++
					again = append(again, it)
				case stream.WriteRefused:
					config = true
					fallthrough
				default:
					p.metrics.outputFailures.WithLabelValues(s.name).Inc()
					lastErr = err
					again = append(again, it)
				}
			}
			pend[s.name] = again
		}
		if len(pend[outAlerts])+len(pend[outDeadLetters])+len(pend[outScores]) == 0 {
			p.ok()
			return nil
		}
		if lastErr == nil {
			continue // only records cut or moved to the dead-letter topic: at once
		}
		p.fail(lastErr, config, wait.Delay())
		for _, s := range []string{outAlerts, outDeadLetters, outScores} {
			if len(pend[s]) > 0 {
				p.metrics.outputRetries.WithLabelValues(s).Inc()
			}
		}
		if err := wait.Wait(ctx); err != nil {
			return err
		}
	}
}

// fail records a failed attempt, logging the first of a run at once and
// then at most every interval (doubling to a minute).
func (p *publisher) fail(err error, config bool, retryIn time.Duration) {
	p.metrics.outputFailing.Set(1)
	kind := "transient"
	if config {
		kind = "refused"
	}
	failingFor, warn := p.run.fail(err, kind)
	if !warn {
		return
	}
	what := "writing scorer output failed; retrying what failed (offsets stay uncommitted, nothing acknowledged is sent again)"
	if config {
		what = "Kafka refuses the scorer's output (a missing topic, or not authorized): create the topic or grant access; retrying (offsets stay uncommitted)"
	}
	p.log.Warn(what, "kind", kind, "err", err, "failing_for", failingFor.Round(time.Millisecond), "retry_in", retryIn)
}

func (p *publisher) ok() {
	if failedFor, ended := p.run.ok(); ended {
		p.log.Info("writing scorer output works again", "failed_for", failedFor.Round(time.Millisecond))
		p.metrics.outputFailing.Set(0)
	}
}

// failing returns since when writes have been failing, and the last error
// (zero time: they work).
func (p *publisher) failing() (time.Time, string) { return p.run.failing() }
