package stream

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// Format is the encoding of a record's value: one of the built-in formats
// below or one added with RegisterFormat. The zero Format is JSONObject.
type Format int

// The built-in record formats.
const (
	JSONObject Format = iota // {"name": number, ...}: the configured features by name; other keys ignored
	JSONArray                // [number, ...]: the features in configured order
	CSV                      // one CSV line: the features in configured order
)

// FormatSpec describes a record format: what RegisterFormat needs to add
// one. A new format is one file: its decoder, and a RegisterFormat call
// from the file's init function.
type FormatSpec struct {
	Name string // as --format and ParseFormat take it: lower case, no spaces
	// Named: records name their features (so the feature names, not a
	// width, configure a reader); otherwise features are by position.
	Named bool
	// New returns a decoder for records of the named features, in model
	// input order (at least one name, none twice). A decoder that also
	// implements Encoder can write records too (loadgen, tests).
	New func(features []string) (Decoder, error)
}

// Decoder decodes the record values of one format into feature vectors. A
// Decoder is safe for concurrent use.
type Decoder interface {
	// Decode parses one non-empty record value into dst (one value per
	// feature). A bad record is a *DecodeError naming what is wrong; dst
	// is then unspecified. value is only read, and not kept.
	Decode(dst []float64, value []byte) error
}

// Encoder is implemented by decoders that can also write their format.
type Encoder interface {
	// Encode appends x (one value per feature) encoded to dst and returns it.
	Encode(dst []byte, x []float64) []byte
}

// formats are the registered formats, indexed by Format; the built-in
// ones first, in the order of their constants.
var (
	formatsMu sync.RWMutex
	formats   = []FormatSpec{
		JSONObject: {Name: "json-object", Named: true, New: newObjectDecoder},
		JSONArray:  {Name: "json-array", New: newArrayDecoder},
		CSV:        {Name: "csv", New: newCSVDecoder},
	}
)

// RegisterFormat adds a record format and returns its Format. It panics if
// the name is empty or taken, or New is nil: formats are registered from
// init functions, where that is a programming error.
func RegisterFormat(s FormatSpec) Format {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	if s.Name == "" || s.New == nil {
		panic("stream: RegisterFormat: a format needs a name and a constructor")
	}
	for _, f := range formats {
		if f.Name == s.Name {
			panic(fmt.Sprintf("stream: RegisterFormat: format %q registered twice", s.Name))
		}
	}
	formats = append(formats, s)
	return Format(len(formats) - 1)
}

func (f Format) spec() (FormatSpec, bool) {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	if f < 0 || int(f) >= len(formats) {
		return FormatSpec{}, false
	}
	return formats[f], true
}

// FormatNames returns the registered formats' names, built-in ones first.
func FormatNames() []string {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = f.Name
	}
	return names
}

// String returns the format's name.
func (f Format) String() string {
	if s, ok := f.spec(); ok {
		return s.Name
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Named reports whether the format's records name their features.
func (f Format) Named() bool {
	s, _ := f.spec()
	return s.Named
}

// MarshalText returns the format's name (encoding.TextMarshaler).
func (f Format) MarshalText() ([]byte, error) {
	if _, ok := f.spec(); !ok {
		return nil, fmt.Errorf("stream: unknown format %d", int(f))
	}
	return []byte(f.String()), nil
}

// UnmarshalText sets the format from its name (encoding.TextUnmarshaler),
// so that flag.TextVar takes a format.
func (f *Format) UnmarshalText(b []byte) error {
	g, err := ParseFormat(string(b))
	if err != nil {
		return err
	}
	*f = g
	return nil
}

// ParseFormat parses a registered format's name: "json-object",
// "json-array", "csv", or one added with RegisterFormat.
func ParseFormat(s string) (Format, error) {
	names := FormatNames()
	for i, n := range names {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("stream: unknown record format %q (want %s)", s, strings.Join(names, ", "))
}

// DecodeReason is why a record could not be decoded; it names the dead-letter
// reason.
type DecodeReason string

// Decode failure reasons.
const (
	ReasonEmpty        DecodeReason = "empty"
	ReasonBadJSON      DecodeReason = "bad_json"
	ReasonBadCSV       DecodeReason = "bad_csv"
	ReasonWrongLength  DecodeReason = "wrong_length"
	ReasonMissingField DecodeReason = "missing_field"
	ReasonNotANumber   DecodeReason = "not_a_number"
	ReasonNonFinite    DecodeReason = "non_finite"
)

// Reasons lists every decode failure reason, for metrics that start each
// label at 0.
var Reasons = []DecodeReason{ReasonEmpty, ReasonBadJSON, ReasonBadCSV, ReasonWrongLength, ReasonMissingField, ReasonNotANumber, ReasonNonFinite}

// DecodeError is a record that could not be decoded.
type DecodeError struct {
	Reason DecodeReason // the class of problem
	Detail string       // what exactly is wrong, naming the field or position
}

// Error describes the problem.
func (e *DecodeError) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Detail) }

func fail(r DecodeReason, format string, a ...any) error {
	return &DecodeError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// Codec decodes record values of one format into feature vectors, with
// the checks every format shares (the destination's width, an empty
// record), and encodes them where the format can. A Codec is safe for
// concurrent use.
type Codec struct {
	format Format
	names  []string
	dec    Decoder
	enc    Encoder // dec, when it can also write; nil otherwise
}

// NewCodec returns a codec for records of the given format with the given
// feature names, in model input order.
func NewCodec(f Format, features []string) (*Codec, error) {
	if len(features) == 0 {
		return nil, errors.New("stream: a codec needs the feature names")
	}
	spec, ok := f.spec()
	if !ok {
		return nil, fmt.Errorf("stream: unknown format %d", int(f))
	}
	seen := make(map[string]bool, len(features))
	for _, n := range features {
		if seen[n] {
			return nil, fmt.Errorf("stream: feature %q named twice", n)
		}
		seen[n] = true
	}
	names := append([]string(nil), features...)
	dec, err := spec.New(names)
	if err != nil {
		return nil, fmt.Errorf("stream: %s records: %w", spec.Name, err)
	}
	enc, _ := dec.(Encoder)
	return &Codec{format: f, names: names, dec: dec, enc: enc}, nil
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
	return c.dec.Decode(dst, value)
}

// CanEncode reports whether the codec's format can be written (Encode).
func (c *Codec) CanEncode() bool { return c.enc != nil }

// Encode appends x encoded in the codec's format to dst and returns it. It
// panics if the format cannot be written (CanEncode) or x is not Width
// long.
func (c *Codec) Encode(dst []byte, x []float64) []byte {
	if len(x) != len(c.names) {
		panic(fmt.Sprintf("stream: Encode: %d values, codec width %d", len(x), len(c.names)))
	}
	if c.enc == nil {
		panic(fmt.Sprintf("stream: Encode: %s records cannot be written", c.format))
	}
	return c.enc.Encode(dst, x)
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
