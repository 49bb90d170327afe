package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/recon-ad/recon/pkg/stream"
)

// inputFormat is the layout of a replayed file.
type inputFormat int

const (
	inputCSV   inputFormat = iota // a header row of column names, then one row per record
	inputJSONL                    // one JSON object per line; its keys are the columns
)

// parseInputFormat returns the format named by --input-format, or, when
// that is empty, the one the file's extension implies.
func parseInputFormat(name, path string) (inputFormat, error) {
	switch name {
	case "csv":
		return inputCSV, nil
	case "jsonl":
		return inputJSONL, nil
	case "":
	default:
		return 0, fmt.Errorf("--input-format %q: want csv or jsonl", name)
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".csv":
		return inputCSV, nil
	case ".jsonl", ".ndjson", ".json":
		return inputJSONL, nil
	default:
		return 0, fmt.Errorf("--input %s: cannot tell the format from the extension %q (want .csv, .jsonl, .ndjson or .json): give --input-format csv or jsonl", path, ext)
	}
}

// selection names the columns of a file that make a record. The zero
// value takes every column as a feature and the row number as the key.
type selection struct {
	columns []string // the features in record order; nil: every column but the label and key columns
	label   string   // the label column; "": none
	// labelOptional drops the label when the file has no such column (the
	// --label default) instead of failing.
	labelOptional bool
	key           string // the key column; "": the row number
}

// table is a replayed file in memory: each row's features in record
// order, its key and its truth. Rows are numbered from 0 in file order.
type table struct {
	name     string    // the file, for messages
	columns  []string  // the file's columns in file order (JSON lines: the first object's keys)
	features []string  // the features sent, in record order
	label    string    // the label column; "": none
	key      string    // the key column; "": the row number
	values   []float64 // row i's features are values[i*len(features):][:len(features)]
	keys     []string  // with a key column: each row's key
	anomaly  []bool    // with a label column: whether each row is labelled an anomaly
}

// rows returns the number of rows.
func (t *table) rows() int { return len(t.values) / len(t.features) }

// row returns row i's features, a view of the table.
func (t *table) row(i int) []float64 {
	p := len(t.features)
	return t.values[i*p : (i+1)*p : (i+1)*p]
}

// message returns row i as a record in codec's format: keyed by its key
// column or row number, with its truth (when the file has a label) and
// row number as headers.
func (t *table) message(codec *stream.Codec, i int) stream.Record {
	n := strconv.Itoa(i)
	m := stream.Record{Key: []byte(n), Value: codec.Encode(nil, t.row(i))}
	if t.keys != nil {
		m.Key = []byte(t.keys[i])
	}
	if t.anomaly != nil {
		truth := "normal"
		if t.anomaly[i] {
			truth = "anomaly"
		}
		m.Headers = append(m.Headers, stream.Header{Key: TruthHeader, Value: []byte(truth)})
	}
	m.Headers = append(m.Headers, stream.Header{Key: RowHeader, Value: []byte(n)})
	return m
}

// plan is a selection resolved against a file's columns: indexes into
// them, -1 for none.
type plan struct {
	features   []int
	label, key int
}

// resolve checks the selection against the file's columns and settles the
// table's features, label and key.
func (t *table) resolve(sel selection) (plan, error) {
	index := make(map[string]int, len(t.columns))
	for i, c := range t.columns {
		if _, dup := index[c]; dup {
			return plan{}, fmt.Errorf("%s: column %q appears twice in the header", t.name, c)
		}
		index[c] = i
	}
	find := func(flag, name string) (int, error) {
		i, ok := index[name]
		if !ok {
			return -1, fmt.Errorf("%s: %s has no column %q (its columns: %s)", flag, t.name, name, strings.Join(t.columns, ", "))
		}
		return i, nil
	}
	pl := plan{label: -1, key: -1}
	var err error
	if sel.label != "" {
		if _, ok := index[sel.label]; ok || !sel.labelOptional {
			if pl.label, err = find("--label", sel.label); err != nil {
				return plan{}, err
			}
			t.label = sel.label
		}
	}
	if sel.key != "" {
		if pl.key, err = find("--key-column", sel.key); err != nil {
			return plan{}, err
		}
		t.key = sel.key
	}
	if sel.columns == nil {
		for i, c := range t.columns {
			if i != pl.label && i != pl.key {
				pl.features = append(pl.features, i)
				t.features = append(t.features, c)
			}
		}
		if len(pl.features) == 0 {
			return plan{}, fmt.Errorf("%s: no columns left to send besides the label and key (its columns: %s)", t.name, strings.Join(t.columns, ", "))
		}
		return pl, nil
	}
	for _, c := range sel.columns {
		i, err := find("--columns", c)
		if err != nil {
			return plan{}, err
		}
		if i == pl.label {
			return plan{}, fmt.Errorf("--columns: %q is the label column; it is sent as the %s header, never as a feature (--label \"\" makes it an ordinary column)", c, TruthHeader)
		}
		if slices.Contains(pl.features, i) {
			return plan{}, fmt.Errorf("--columns: %q named twice", c)
		}
		pl.features = append(pl.features, i)
		t.features = append(t.features, c)
	}
	return pl, nil
}

// readTable reads a whole file of the given format; name is the file's
// name for messages. Errors in the data name the line and column.
func readTable(r io.Reader, name string, f inputFormat, sel selection) (*table, error) {
	t := &table{name: name}
	var err error
	if f == inputJSONL {
		err = t.readJSONL(r, sel)
	} else {
		err = t.readCSV(r, sel)
	}
	if err != nil {
		return nil, err
	}
	if len(t.values) == 0 {
		return nil, fmt.Errorf("%s: no rows to replay", name)
	}
	return t, nil
}

// add appends one row: get returns a column's text and whether it is
// there, and the number of the line it is on.
func (t *table) add(pl plan, line int, get func(col int) (string, bool)) error {
	cell := func(col int) (string, error) {
		s, ok := get(col)
		if !ok {
			return "", fmt.Errorf("%s:%d: no value for column %q", t.name, line, t.columns[col])
		}
		return s, nil
	}
	for _, col := range pl.features {
		s, err := cell(col)
		if err != nil {
			return err
		}
		v, err := parseValue(s)
		if err != nil {
			return fmt.Errorf("%s:%d: column %q: %w", t.name, line, t.columns[col], err)
		}
		t.values = append(t.values, v)
	}
	if pl.label >= 0 {
		s, err := cell(pl.label)
		if err != nil {
			return err
		}
		a, err := isAnomaly(s)
		if err != nil {
			return fmt.Errorf("%s:%d: label column %q: %w", t.name, line, t.columns[pl.label], err)
		}
		t.anomaly = append(t.anomaly, a)
	}
	if pl.key >= 0 {
		s, err := cell(pl.key)
		if err != nil {
			return err
		}
		t.keys = append(t.keys, s)
	}
	return nil
}

// parseValue parses a feature's text: a number, NaN or an infinity (sent
// on as they are, for the pipeline to deal with).
func parseValue(s string) (float64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty value, want a number")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s is out of the float64 range", strconv.Quote(clip(s)))
		}
		return 0, fmt.Errorf("%s is not a number", strconv.Quote(clip(s)))
	}
	return v, nil
}

// isAnomaly reads a label: 0, false and normal are normal; any other
// value is an anomaly.
func isAnomaly(s string) (bool, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "null" {
		return false, errors.New("no label")
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		return v != 0, nil
	}
	return !strings.EqualFold(s, "false") && !strings.EqualFold(s, "normal"), nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (t *table) readCSV(r io.Reader, sel selection) error {
	cr := csv.NewReader(skipBOM(bufio.NewReader(r)))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: empty file, want a header row of column names", t.name)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	for _, c := range header {
		t.columns = append(t.columns, strings.TrimSpace(c))
	}
	pl, err := t.resolve(sel)
	if err != nil {
		return err
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err) // a *csv.ParseError names the line
		}
		line, _ := cr.FieldPos(0)
		if err := t.add(pl, line, func(col int) (string, bool) { return rec[col], true }); err != nil {
			return err
		}
	}
}

func (t *table) readJSONL(r io.Reader, sel selection) error {
	br := skipBOM(bufio.NewReader(r))
	var pl plan
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			keys, obj, derr := decodeObject(b)
			if derr != nil {
				return fmt.Errorf("%s:%d: %w", t.name, line, derr)
			}
			if t.columns == nil {
				t.columns = keys
				if pl, derr = t.resolve(sel); derr != nil {
					return derr
				}
			}
			derr = t.add(pl, line, func(col int) (string, bool) {
				raw, ok := obj[t.columns[col]]
				if !ok {
					return "", false
				}
				return jsonText(raw), true
			})
			if derr != nil {
				return derr
			}
		}
		if err == io.EOF {
			if t.columns == nil {
				return fmt.Errorf("%s: empty file, want one JSON object per line", t.name)
			}
			return nil
		}
	}
}

// skipBOM drops the UTF-8 byte-order mark some tools write at the start of
// a file.
func skipBOM(br *bufio.Reader) *bufio.Reader {
	if b, err := br.Peek(3); err == nil && string(b) == "\ufeff" {
		_, _ = br.Discard(3) // peeked: they are buffered
	}
	return br
}

// decodeObject decodes one JSON object: its keys in order, and its values.
func decodeObject(b []byte) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("want a JSON object")
	}
	var keys []string
	obj := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("bad JSON: %w", err)
		}
		k := tok.(string) // object keys are strings once Token has checked the syntax
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("bad JSON in %q: %w", k, err)
		}
		if _, dup := obj[k]; !dup {
			keys = append(keys, k)
		}
		obj[k] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("bad JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("bad JSON: data after the object")
	}
	return keys, obj, nil
}

// jsonText returns a JSON value as text: a string's contents, or the
// value as written.
func jsonText(raw json.RawMessage) string {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// order hands out row numbers pass after pass: in file order, or shuffled
// afresh at the start of every pass.
type order struct {
	passes int        // passes to make; 0: no end
	rng    *rand.Rand // nil: file order
	perm   []int
	pass   int // passes begun
	i      int // next position in perm
}

// newOrder returns an order over rows rows; rng shuffles them (nil: file
// order).
func newOrder(rows, passes int, rng *rand.Rand) *order {
	o := &order{passes: passes, rng: rng, perm: make([]int, rows)}
	for i := range o.perm {
		o.perm[i] = i
	}
	o.i = rows // the first next begins pass 1
	return o
}

// next returns the next row, or false after the last pass.
func (o *order) next() (int, bool) {
	if o.i == len(o.perm) {
		if o.passes > 0 && o.pass == o.passes {
			return 0, false
		}
		o.pass++
		o.i = 0
		if o.rng != nil {
			o.rng.Shuffle(len(o.perm), func(i, j int) { o.perm[i], o.perm[j] = o.perm[j], o.perm[i] })
		}
	}
	o.i++
	return o.perm[o.i-1], true
}
