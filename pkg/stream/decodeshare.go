package stream

import (
	"fmt"
	"time"
)

// The decode-share watch: over consecutive windows of DecodeWindow records
// in the order they are consumed, a window where more than half did not
// decode is worth a warning (a wrong --format or feature names), at most
// one per DecodeWarnEvery.
const (
	DecodeWindow    = 1000
	DecodeWarnEvery = time.Minute
)

// DecodeShare counts the records of a stream that do not decode and says
// when most of a window failed. Counting allocates nothing. It is not safe
// for concurrent use: one consumer loop feeds it.
type DecodeShare struct {
	total, bad int       // this window's records and undecodable ones
	first      error     // this window's first decode error
	firstPart  int       // its record's partition
	firstOff   int64     // and offset
	warnedAt   time.Time // last warning (zero: none yet)
}

// DecodeWarning describes a window where most records did not decode.
type DecodeWarning struct {
	Topic       string // the topic of the record that completed the window
	Undecodable int    // records of the window that did not decode
	Of          int    // records in the window
	First       string // the first one's partition, offset and error
}

// Count counts record m, which failed to decode with err (nil: it
// decoded), at time now; ok says a warning is due, described by w.
func (d *DecodeShare) Count(m *Record, err error, now time.Time) (w DecodeWarning, ok bool) {
	d.total++
	if err != nil {
		if d.bad == 0 {
			d.first, d.firstPart, d.firstOff = err, m.Partition, m.Offset
		}
		d.bad++
	}
	if d.total < DecodeWindow {
		return w, false
	}
	if 2*d.bad > d.total && (d.warnedAt.IsZero() || now.Sub(d.warnedAt) >= DecodeWarnEvery) {
		d.warnedAt, ok = now, true
		w = DecodeWarning{Topic: m.Topic, Undecodable: d.bad, Of: d.total,
			First: fmt.Sprintf("partition %d offset %d: %v", d.firstPart, d.firstOff, d.first)}
	}
	d.total, d.bad, d.first = 0, 0, nil
	return w, ok
}
