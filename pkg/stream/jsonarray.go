package stream

import (
	"math"
	"strconv"
)

// arrayDecoder reads a JSON array of numbers: the features in configured
// order.
type arrayDecoder struct{ names []string }

func newArrayDecoder(features []string) (Decoder, error) { return arrayDecoder{names: features}, nil }

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

// Decode implements Decoder.
func (c arrayDecoder) Decode(dst []float64, value []byte) error {
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
func (c arrayDecoder) arrayElement(s *scanner, dst []float64, n int) error {
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

// Encode implements Encoder.
func (c arrayDecoder) Encode(dst []byte, x []float64) []byte {
	dst = append(dst, '[')
	for i, v := range x {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendFloat(dst, v, 'g', -1, 64)
	}
	return append(dst, ']')
}
