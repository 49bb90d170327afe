package scorer

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// The output records' JSON, appended without reflection: byte for byte
// what encoding/json's Marshal writes for Alert and ScoreRecord (tested
// against it), so readers see no difference. Whatever these appenders do
// not write themselves (a string that needs escaping) comes from
// json.Marshal; whatever it would refuse (a non-finite number, a year
// outside 0-9999) makes them return false, and the caller marshals the
// whole record to get its error.

// appendAlert appends a's JSON to dst; ok false: see above.
func appendAlert(dst []byte, a *Alert) (_ []byte, ok bool) {
	dst = append(dst, `{"schema":`...)
	dst = strconv.AppendInt(dst, int64(a.Schema), 10)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, a.ID)
	dst = append(dst, `,"source":{"topic":`...)
	dst = appendString(dst, a.Source.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(a.Source.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, a.Source.Offset, 10)
	dst = append(dst, `,"timestamp":`...)
	if dst, ok = appendTime(dst, a.Source.Timestamp); !ok {
		return dst, false
	}
	dst = append(dst, `},"scored_at":`...)
	if dst, ok = appendTime(dst, a.ScoredAt); !ok {
		return dst, false
	}
	dst = append(dst, `,"model":{"version":`...)
	dst = strconv.AppendUint(dst, a.Model.Version, 10)
	dst = append(dst, `,"variant":`...)
	dst = appendString(dst, a.Model.Variant)
	dst = append(dst, `},"score":`...)
	if dst, ok = appendFloat(dst, a.Score); !ok {
		return dst, false
	}
	dst = append(dst, `,"threshold":`...)
	if dst, ok = appendFloat(dst, a.Threshold); !ok {
		return dst, false
	}
	dst = append(dst, `,"features":`...)
	if a.Features == nil {
		return append(dst, "null}"...), true
	}
	dst = append(dst, '[')
	for i, f := range a.Features {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, f.Name)
		for _, kv := range [...]struct {
			key string
			v   float64
		}{{`,"value":`, f.Value}, {`,"reconstruction":`, f.Reconstruction}, {`,"error":`, f.Error}} {
			dst = append(dst, kv.key...)
			if dst, ok = appendFloat(dst, kv.v); !ok {
				return dst, false
			}
		}
		dst = append(dst, '}')
	}
	return append(dst, "]}"...), true
}

// appendScore appends s's JSON to dst; ok false: see above. quotedScorer
// is s.Scorer as a JSON string (appendString), which is the same for
// every record of a replica.
func appendScore(dst []byte, s *ScoreRecord, quotedScorer []byte) (_ []byte, ok bool) {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, s.ID)
	dst = append(dst, `,"score":`...)
	if dst, ok = appendFloat(dst, s.Score); !ok {
		return dst, false
	}
	dst = append(dst, `,"threshold":`...)
	if dst, ok = appendFloat(dst, s.Threshold); !ok {
		return dst, false
	}
	dst = append(dst, `,"alert":`...)
	dst = strconv.AppendBool(dst, s.Alert)
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, s.Version, 10)
	dst = append(dst, `,"scorer":`...)
	dst = append(dst, quotedScorer...)
	return append(dst, '}'), true
}

// appendRecordID appends "topic/partition/offset", the id of alerts and
// score records, to dst.
func appendRecordID(dst []byte, topic string, partition int, offset int64) []byte {
	dst = append(dst, topic...)
	dst = append(dst, '/')
	dst = strconv.AppendInt(dst, int64(partition), 10)
	dst = append(dst, '/')
	return strconv.AppendInt(dst, offset, 10)
}

// appendString appends s as encoding/json writes a string: quoted as is
// when every byte is printable ASCII that needs no escape (encoding/json
// escapes <, > and & for HTML too), else through json.Marshal.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// decimal that reads back exactly, in exponent form below 1e-6 and from
// 1e21 on, with no leading zero in a negative exponent. ok false: f is
// not finite, which encoding/json refuses.
func appendFloat(dst []byte, f float64) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, true
}

// appendTime appends t as time.Time's MarshalJSON writes it: quoted
// RFC 3339 with nanoseconds. ok false: a year outside 0-9999, which it
// refuses, or a zone other than UTC's offset (the scorer writes UTC),
// left to it.
func appendTime(dst []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, false
	}
	if _, off := t.Zone(); off != 0 {
		return dst, false
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), true
}
