package trainer

import (
	"errors"
	"fmt"
	"time"
)

// readyFetchFailing is how long a Kafka source's fetches may fail before
// the worker is not ready.
const readyFetchFailing = 15 * time.Second

// Ready returns nil while the worker is training: in a session the
// coordinator has welcomed, and, for a Kafka source, fetching records
// (waiting for new records is fine); or else what is wrong. It is safe
// to call while Run runs (a readiness probe).
func (w *Worker) Ready() error {
	if w.inSession.Load() == 0 {
		if why := w.ended.Load(); why != nil {
			return fmt.Errorf("not in a training session with the coordinator (the last one ended: %s)", *why)
		}
		return errors.New("not in a training session with the coordinator yet")
	}
	if k, ok := w.cfg.Source.(*KafkaSource); ok {
		return k.Ready()
	}
	return nil
}

// Ready returns nil unless the source's fetches have failed for longer
// than readyFetchFailing.
func (k *KafkaSource) Ready() error {
	if since, why := k.r.FetchFailing(); !since.IsZero() && time.Since(since) > readyFetchFailing {
		return fmt.Errorf("fetching records has failed for %v: %s", time.Since(since).Round(time.Second), why)
	}
	return nil
}
