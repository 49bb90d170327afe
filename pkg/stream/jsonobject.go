package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// objectDecoder reads a JSON object: the configured features by name,
// other keys ignored.
type objectDecoder struct{ names []string }

func newObjectDecoder(features []string) (Decoder, error) { return objectDecoder{names: features}, nil }

// decodeObject uses encoding/json: object keys may be escaped and values of
// keys recon does not use may be anything.
func (c objectDecoder) Decode(dst []float64, value []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(value, &obj); err != nil {
		return c.objectError(value, err)
	}
	if obj == nil {
		return fail(ReasonBadJSON, "want a JSON object of named numbers, got null")
	}
	for i, name := range c.names {
		raw, ok := obj[name]
		if !ok {
			return fail(ReasonMissingField, "field %q is missing", name)
		}
		tok := []byte(strings.TrimSpace(string(raw)))
		if !jsonNumber(tok) {
			return fail(ReasonNotANumber, "%s: %s is not a number", name, clipRaw(string(tok)))
		}
		v, err := number(string(tok), name)
		if err != nil {
			return err
		}
		dst[i] = v
	}
	return nil
}

// objectError says in the user's terms why value is not a JSON object of
// named numbers: a feature written as NaN or Infinity (what Python's
// json.dumps writes) is non_finite, not bad JSON.
func (c objectDecoder) objectError(value []byte, err error) error {
	for _, name := range c.names {
		if tok := fieldToken(value, name); tok != nil && nonFiniteToken(tok) {
			return fail(ReasonNonFinite, "%s: %s is not finite (nor valid JSON)", name, clipRaw(string(tok)))
		}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fail(ReasonBadJSON, "want a JSON object of named numbers, got a JSON %s", te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fail(ReasonBadJSON, "want a JSON object of named numbers; not valid JSON at byte %d", se.Offset)
	}
	return fail(ReasonBadJSON, "want a JSON object of named numbers")
}

// fieldToken returns the raw token after "name": in value (nil: none),
// without parsing the rest, for values that are not JSON.
func fieldToken(value []byte, name string) []byte {
	key := []byte(strconv.Quote(name))
	for i := 0; ; {
		j := bytes.Index(value[i:], key)
		if j < 0 {
			return nil
		}
		k := i + j + len(key)
		for k < len(value) && (value[k] == ' ' || value[k] == '\t' || value[k] == '\n' || value[k] == '\r') {
			k++
		}
		if k < len(value) && value[k] == ':' {
			k++
			for k < len(value) && (value[k] == ' ' || value[k] == '\t' || value[k] == '\n' || value[k] == '\r') {
				k++
			}
			e := k
			for e < len(value) && !strings.ContainsRune(",}] \t\r\n", rune(value[e])) {
				e++
			}
			return value[k:e]
		}
		i = k
	}
}

// Encode implements Encoder.
func (c objectDecoder) Encode(dst []byte, x []float64) []byte {
	dst = append(dst, '{')
	for i, v := range x {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendQuote(dst, c.names[i])
		dst = append(dst, ':')
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	return append(dst, '}')
}
