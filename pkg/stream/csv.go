package stream

import (
	"encoding/csv"
	"strconv"
	"strings"
)

// csvDecoder reads CSV: one line, the features in configured order.
type csvDecoder struct{ names []string }

func newCSVDecoder(features []string) (Decoder, error) { return csvDecoder{names: features}, nil }

// Decode implements Decoder.
func (c csvDecoder) Decode(dst []float64, value []byte) error {
	line := unsafeString(value)
	line = strings.TrimRight(line, "\r\n")
	if strings.ContainsAny(line, "\"\n") {
		// Quoted fields: the standard reader gets them right.
		rec, err := csv.NewReader(strings.NewReader(line)).Read()
		if err != nil {
			return fail(ReasonBadCSV, "%v", err)
		}
		if len(rec) != len(dst) {
			return fail(ReasonWrongLength, "%d fields, want %d", len(rec), len(dst))
		}
		for i, f := range rec {
			v, err := number(f, c.names[i])
			if err != nil {
				return err
			}
			dst[i] = v
		}
		return nil
	}
	n := strings.Count(line, ",") + 1
	if n != len(dst) {
		return fail(ReasonWrongLength, "%d fields, want %d", n, len(dst))
	}
	for i := range dst {
		f, rest, _ := strings.Cut(line, ",")
		line = rest
		v, err := number(f, c.names[i])
		if err != nil {
			return err
		}
		dst[i] = v
	}
	return nil
}

// Encode implements Encoder.
func (c csvDecoder) Encode(dst []byte, x []float64) []byte {
	for i, v := range x {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	return dst
}
