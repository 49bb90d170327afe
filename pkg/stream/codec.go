package stream

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// Format is the encoding of a record's value.
type Format int

// The record formats.
const (
	JSONObject Format = iota // {"name": number, ...}: the configured features by name; other keys ignored
	JSONArray                // [number, ...]: the features in configured order
	CSV                      // one CSV line: the features in configured order
)

var formatNames = [...]string{"json-object", "json-array", "csv"}

// String returns the format's name.
func (f Format) String() string {
	if f < 0 || int(f) >= len(formatNames) {
		return fmt.Sprintf("Format(%d)", int(f))
	}
	return formatNames[f]
}

// ParseFormat parses "json-object", "json-array" or "csv".
func ParseFormat(s string) (Format, error) {
	for i, n := range formatNames {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("stream: unknown record format %q (want json-object, json-array or csv)", s)
}

// Reason is why a record could not be decoded; it names the dead-letter
// reason.
type Reason string

// Decode failure reasons.
const (
	ReasonEmpty        Reason = "empty"
	ReasonBadJSON      Reason = "bad_json"
	ReasonBadCSV       Reason = "bad_csv"
	ReasonWrongLength  Reason = "wrong_length"
	ReasonMissingField Reason = "missing_field"
	ReasonNotANumber   Reason = "not_a_number"
	ReasonNonFinite    Reason = "non_finite"
)

// Reasons lists every decode failure reason, for metrics that start each
// label at 0.
var Reasons = []Reason{ReasonEmpty, ReasonBadJSON, ReasonBadCSV, ReasonWrongLength, ReasonMissingField, ReasonNotANumber, ReasonNonFinite}

// DecodeError is a record that could not be decoded.
type DecodeError struct {
	Reason Reason // the class of problem
	Detail string // what exactly is wrong, naming the field or position
}

// Error describes the problem.
func (e *DecodeError) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Detail) }

func fail(r Reason, format string, a ...any) error {
	return &DecodeError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// Codec decodes record values of one format into feature vectors.
// A Codec is safe for concurrent use.
type Codec struct {
	format Format
	names  []string
	index  map[string]int
}

// NewCodec returns a codec for records of the given format with the given
// feature names, in model input order.
func NewCodec(f Format, features []string) (*Codec, error) {
	if len(features) == 0 {
		return nil, errors.New("stream: a codec needs the feature names")
	}
	if f < JSONObject || f > CSV {
		return nil, fmt.Errorf("stream: unknown format %d", int(f))
	}
	c := &Codec{format: f, names: append([]string(nil), features...), index: make(map[string]int, len(features))}
	for i, n := range features {
		if _, dup := c.index[n]; dup {
			return nil, fmt.Errorf("stream: feature %q named twice", n)
		}
		c.index[n] = i
	}
	return c, nil
}

// Width returns the number of features.
func (c *Codec) Width() int { return len(c.names) }

// Format returns the codec's format.
func (c *Codec) Format() Format { return c.format }

// Decode parses one record value into dst (length Width). A bad record is a
// *DecodeError naming what is wrong; dst is then unspecified.
func (c *Codec) Decode(dst []float64, value []byte) error {
	if len(dst) != len(c.names) {
		panic(fmt.Sprintf("stream: Decode: destination length %d, codec width %d", len(dst), len(c.names)))
	}
	if len(strings.TrimSpace(unsafeString(value))) == 0 {
		return fail(ReasonEmpty, "empty record")
	}
	switch c.format {
	case JSONArray:
		return c.decodeArray(dst, value)
	case CSV:
		return c.decodeCSV(dst, value)
	default:
		return c.decodeObject(dst, value)
	}
}

// unsafeString views b as a string without copying; the result must not
// outlive b or be retained.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// number parses one JSON or CSV number token for the named field. tok may
// be a view of the record's bytes: nothing keeps it.
func number(tok string, field string) (float64, error) {
	s := strings.TrimSpace(tok)
	if s == "" {
		return 0, fail(ReasonNotANumber, "%s: empty value", field)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 0, fail(ReasonNonFinite, "%s: %s is out of range", field, clip(s))
		}
		return 0, fail(ReasonNotANumber, "%s: %s is not a number", field, clip(s))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fail(ReasonNonFinite, "%s: %s is not finite", field, clip(s))
	}
	return v, nil
}

// clip copies s for an error message, shortened and quoted.
func clip(s string) string {
	return strconv.Quote(clipRaw(s))
}

// clipRaw shortens JSON text for an error message, as written (a JSON
// string keeps its one pair of quotes).
func clipRaw(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

func (c *Codec) decodeCSV(dst []float64, value []byte) error {
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

// scanner walks JSON text.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// token returns the bytes of a JSON scalar (number or literal) at i.
func (s *scanner) scalar() []byte {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
			return s.b[start:s.i]
		}
		s.i++
	}
	return s.b[start:s.i]
}

func (c *Codec) decodeArray(dst []float64, value []byte) error {
	s := &scanner{b: value}
	if s.peek() != '[' {
		return fail(ReasonBadJSON, "want a JSON array of %d numbers", len(dst))
	}
	s.i++
	n := 0
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			if err := c.arrayElement(s, dst, n); err != nil {
				return err
			}
			n++
			if s.i < len(s.b) && s.b[s.i] == ',' { // the common case, at once
				s.i++
				continue
			}
			switch s.peek() {
			case ',':
				s.i++
				continue
			case ']':
				s.i++
			default:
				return fail(ReasonBadJSON, "want , or ] at offset %d", s.i)
			}
			break
		}
	}
	if s.peek() != 0 {
		return fail(ReasonBadJSON, "trailing data at offset %d", s.i)
	}
	if n != len(dst) {
		return fail(ReasonWrongLength, "%d elements, want %d", n, len(dst))
	}
	return nil
}

// arrayElement decodes the array element at s into dst[n]: a number in
// one pass in the common case, anything unusual through the token path and
// its error messages.
func (c *Codec) arrayElement(s *scanner, dst []float64, n int) error {
	if n < len(dst) && s.i < len(s.b) { // the common case at once: a number right here
		if ch := s.b[s.i]; ch == '-' || ch >= '0' && ch <= '9' {
			if v, end, ok := scanNumber(s.b, s.i); ok {
				dst[n], s.i = v, end
				return nil
			}
		}
	}
	switch ch := s.peek(); {
	case ch == '"' || ch == '[' || ch == '{':
		if n < len(dst) {
			return fail(ReasonNotANumber, "%s (element %d) is not a number", c.names[n], n)
		}
		return fail(ReasonWrongLength, "more than %d elements", len(dst))
	case n < len(dst) && (ch == '-' || ch >= '0' && ch <= '9'):
		if v, end, ok := scanNumber(s.b, s.i); ok {
			dst[n], s.i = v, end
			return nil
		}
	}
	tok := s.scalar()
	if len(tok) == 0 {
		return fail(ReasonBadJSON, "missing element at offset %d", s.i)
	}
	if n >= len(dst) {
		return fail(ReasonWrongLength, "more than %d elements", len(dst))
	}
	if !jsonNumber(tok) {
		if isLiteral(tok) {
			return fail(ReasonNotANumber, "%s (element %d): %s is not a number", c.names[n], n, clipRaw(string(tok)))
		}
		if nonFiniteToken(tok) {
			return fail(ReasonNonFinite, "%s (element %d): %s is not finite (nor valid JSON)", c.names[n], n, clipRaw(string(tok)))
		}
		return fail(ReasonBadJSON, "element %d: %s is not a JSON value", n, clip(string(tok)))
	}
	v, err := number(unsafeString(tok), c.names[n])
	if err != nil {
		return err
	}
	dst[n] = v
	return nil
}

func isLiteral(tok []byte) bool {
	switch string(tok) {
	case "true", "false", "null":
		return true
	}
	return false
}

// jsonNumber reports whether tok is a number by JSON's grammar.
func jsonNumber(tok []byte) bool {
	i := 0
	if i < len(tok) && tok[i] == '-' {
		i++
	}
	switch {
	case i < len(tok) && tok[i] == '0':
		i++
	case i < len(tok) && tok[i] >= '1' && tok[i] <= '9':
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(tok) && tok[i] == '.' {
		i++
		if i >= len(tok) || tok[i] < '0' || tok[i] > '9' {
			return false
		}
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
		}
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		if i >= len(tok) || tok[i] < '0' || tok[i] > '9' {
			return false
		}
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
		}
	}
	return i == len(tok)
}

// nonFiniteToken reports whether tok is how Python, JavaScript and others
// write a non-finite number (NaN, Infinity, -inf, …): not JSON, but meant
// as one.
func nonFiniteToken(tok []byte) bool {
	f, err := strconv.ParseFloat(string(tok), 64)
	return err == nil && (math.IsNaN(f) || math.IsInf(f, 0))
}

// decodeObject uses encoding/json: object keys may be escaped and values of
// keys recon does not use may be anything.
func (c *Codec) decodeObject(dst []float64, value []byte) error {
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
func (c *Codec) objectError(value []byte, err error) error {
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

// Encode appends x encoded in the codec's format to dst and returns it.
func (c *Codec) Encode(dst []byte, x []float64) []byte {
	if len(x) != len(c.names) {
		panic(fmt.Sprintf("stream: Encode: %d values, codec width %d", len(x), len(c.names)))
	}
	switch c.format {
	case JSONObject:
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
	case JSONArray:
		dst = append(dst, '[')
		for i, v := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
		}
		return append(dst, ']')
	default:
		for i, v := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
		}
		return dst
	}
}
