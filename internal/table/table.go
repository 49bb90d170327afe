// Package table reads numeric CSV data for recon's offline tools: a header
// row (optional, detected or forced), feature columns chosen by name or
// index, an optional label column carried aside. Every bad cell is an error
// naming its line and column; nothing non-finite gets through.
package table

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Header says whether the first line names the columns.
type Header int

// Header modes.
const (
	HeaderAuto Header = iota // a header if any cell of the first line is not a number
	HeaderYes
	HeaderNo
)

// ParseHeader parses "auto", "yes" or "no".
func ParseHeader(s string) (Header, error) {
	switch s {
	case "auto", "":
		return HeaderAuto, nil
	case "yes", "true":
		return HeaderYes, nil
	case "no", "false":
		return HeaderNo, nil
	}
	return 0, fmt.Errorf("header %q: want auto, yes or no", s)
}

// Options select what Read keeps.
type Options struct {
	Header Header // whether the first line is a header
	// Columns are the feature columns, by header name or 0-based index; empty
	// means every column but the label.
	Columns []string
	// Label is the label column (name or index), kept aside in Labels and
	// never used as a feature; empty means none.
	Label string
	// ColumnsIfHeader are the feature columns by name when the input turns
	// out to have a header (detected or forced); without one they are
	// ignored and Columns applies. A scorer passes its model's feature names.
	ColumnsIfHeader []string
	// Skip is how many lines to skip before the header or first row.
	Skip int
}

// Table is numeric data read from CSV.
type Table struct {
	Names  []string  // feature names (header names, or "c<index>" without a header)
	X      []float64 // Rows x len(Names), row-major
	Labels []string  // the label column's values, one per row; nil without a label
	Lines  []int     // the 1-based source line of each row
	Rows   int       // number of rows
}

// Width returns the number of features.
func (t *Table) Width() int { return len(t.Names) }

// ErrEmpty is returned for input with no data rows.
var ErrEmpty = errors.New("no data rows")

// Read parses CSV from r.
func Read(r io.Reader, opts Options) (*Table, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // ragged rows get our own error, with the line
	cr.ReuseRecord = true
	cr.TrimLeadingSpace = true
	line := 0
	next := func() ([]string, error) {
		rec, err := cr.Read()
		if err == nil {
			line, _ = cr.FieldPos(0)
		}
		return rec, err
	}
	for i := 0; i < opts.Skip; i++ {
		if _, err := next(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, ErrEmpty
			}
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
	}
	first, err := next()
	if errors.Is(err, io.EOF) {
		return nil, ErrEmpty
	}
	if err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	first = append([]string(nil), first...)
	ncol := len(first)
	header := opts.Header == HeaderYes
	if opts.Header == HeaderAuto {
		for _, f := range first {
			if _, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err != nil {
				header = true
				break
			}
		}
	}
	names := make([]string, ncol)
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
		if header {
			names[i] = strings.TrimSpace(first[i])
		}
	}
	find := func(sel string) (int, error) {
		if header {
			for i, n := range names {
				if n == sel {
					return i, nil
				}
			}
		}
		if i, err := strconv.Atoi(sel); err == nil && i >= 0 && i < ncol {
			return i, nil
		}
		if header {
			return 0, fmt.Errorf("column %q is not in the header (%s)", sel, strings.Join(names, ","))
		}
		return 0, fmt.Errorf("column %q: without a header, name columns by 0-based index below %d", sel, ncol)
	}
	if header && len(opts.ColumnsIfHeader) > 0 {
		opts.Columns = opts.ColumnsIfHeader
	}
	label := -1
	if opts.Label != "" {
		if label, err = find(opts.Label); err != nil {
			return nil, fmt.Errorf("label %w", err)
		}
	}
	var cols []int
	if len(opts.Columns) == 0 {
		for i := 0; i < ncol; i++ {
			if i != label {
				cols = append(cols, i)
			}
		}
	} else {
		seen := map[int]bool{}
		for _, sel := range opts.Columns {
			i, err := find(sel)
			if err != nil {
				return nil, err
			}
			if i == label {
				return nil, fmt.Errorf("column %q is the label column, not a feature", sel)
			}
			if seen[i] {
				return nil, fmt.Errorf("column %q chosen twice", sel)
			}
			seen[i] = true
			cols = append(cols, i)
		}
	}
	if len(cols) == 0 {
		return nil, errors.New("no feature columns")
	}
	t := &Table{}
	for _, c := range cols {
		t.Names = append(t.Names, names[c])
	}
	add := func(rec []string) error {
		if len(rec) != ncol {
			return fmt.Errorf("line %d: %d fields, want %d (ragged row)", line, len(rec), ncol)
		}
		for _, c := range cols {
			s := strings.TrimSpace(rec[c])
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return fmt.Errorf("line %d, column %q: %q is not a number", line, names[c], s)
			}
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("line %d, column %q: %s is not a finite number", line, names[c], s)
			}
			t.X = append(t.X, v)
		}
		if label >= 0 {
			t.Labels = append(t.Labels, strings.TrimSpace(rec[label]))
		}
		t.Lines = append(t.Lines, line)
		t.Rows++
		return nil
	}
	if !header {
		if err := add(first); err != nil {
			return nil, err
		}
	}
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line+1, err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a blank line
		}
		if err := add(rec); err != nil {
			return nil, err
		}
	}
	if t.Rows == 0 {
		return nil, ErrEmpty
	}
	return t, nil
}
