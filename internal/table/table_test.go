package table

import (
	"errors"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		opts    Options
		names   []string
		x       []float64
		labels  []string
		wantErr string
	}{
		{name: "header auto", in: "a,b,y\n1,2,n\n3,4,p\n", opts: Options{Label: "y"},
			names: []string{"a", "b"}, x: []float64{1, 2, 3, 4}, labels: []string{"n", "p"}},
		{name: "no header", in: "1,2\n3,4\n", names: []string{"c0", "c1"}, x: []float64{1, 2, 3, 4}},
		{name: "columns by name and index", in: "a,b,c\n1,2,3\n", opts: Options{Columns: []string{"c", "0"}},
			names: []string{"c", "a"}, x: []float64{3, 1}},
		{name: "label by index without header", in: "1,2,0\n3,4,1\n", opts: Options{Label: "2"},
			names: []string{"c0", "c1"}, x: []float64{1, 2, 3, 4}, labels: []string{"0", "1"}},
		{name: "forced header of numbers", in: "1,2\n3,4\n", opts: Options{Header: HeaderYes}, names: []string{"1", "2"}, x: []float64{3, 4}},
		{name: "skip", in: "junk line\na,b\n1,2\n", opts: Options{Skip: 1}, names: []string{"a", "b"}, x: []float64{1, 2}},
		{name: "blank lines and spaces", in: "a, b\n\n 1, 2\n", names: []string{"a", "b"}, x: []float64{1, 2}},
		{name: "columns if header, with a header", in: "b,a\n1,2\n", opts: Options{ColumnsIfHeader: []string{"a", "b"}},
			names: []string{"a", "b"}, x: []float64{2, 1}},
		{name: "columns if header, without one", in: "1,2\n", opts: Options{ColumnsIfHeader: []string{"a", "b"}},
			names: []string{"c0", "c1"}, x: []float64{1, 2}},
		{name: "empty", in: "", wantErr: "no data rows"},
		{name: "header only", in: "a,b\n", wantErr: "no data rows"},
		{name: "ragged", in: "a,b\n1,2\n3\n", wantErr: "line 3: 1 fields, want 2 (ragged row)"},
		{name: "text cell", in: "a,b\n1,2\n3,x\n", wantErr: `line 3, column "b": "x" is not a number`},
		{name: "NaN cell", in: "a,b\n1,NaN\n", wantErr: `line 2, column "b": NaN is not a finite number`},
		{name: "Inf cell", in: "a,b\n1,-Inf\n", wantErr: `line 2, column "b": -Inf is not a finite number`},
		{name: "missing column", in: "a,b\n1,2\n", opts: Options{Columns: []string{"z"}}, wantErr: `column "z" is not in the header`},
		{name: "missing label", in: "a,b\n1,2\n", opts: Options{Label: "y"}, wantErr: `label column "y" is not in the header`},
		{name: "label as feature", in: "a,b\n1,2\n", opts: Options{Columns: []string{"a"}, Label: "a"}, wantErr: "is the label column"},
		{name: "bad quoting", in: "a,b\n1,\"2\n", wantErr: "line 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := Read(strings.NewReader(tc.in), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Read = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(tb.Names, ",") != strings.Join(tc.names, ",") {
				t.Errorf("names %v, want %v", tb.Names, tc.names)
			}
			if len(tb.X) != len(tc.x) {
				t.Fatalf("x %v, want %v", tb.X, tc.x)
			}
			for i := range tc.x {
				if tb.X[i] != tc.x[i] {
					t.Fatalf("x %v, want %v", tb.X, tc.x)
				}
			}
			if strings.Join(tb.Labels, ",") != strings.Join(tc.labels, ",") {
				t.Errorf("labels %v, want %v", tb.Labels, tc.labels)
			}
			if tb.Rows*tb.Width() != len(tb.X) || len(tb.Lines) != tb.Rows {
				t.Errorf("rows %d, width %d, len(X) %d, lines %v", tb.Rows, tb.Width(), len(tb.X), tb.Lines)
			}
		})
	}
	if _, err := Read(strings.NewReader(""), Options{}); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty input: %v, want ErrEmpty", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add("a,b,y\n1,2,n\n3,4,p\n", "y")
	f.Add("1,2\n3,x\n", "")
	f.Fuzz(func(t *testing.T, in, label string) {
		tb, err := Read(strings.NewReader(in), Options{Label: label})
		if err != nil {
			return
		}
		if tb.Rows*tb.Width() != len(tb.X) {
			t.Fatalf("rows %d x width %d != %d values", tb.Rows, tb.Width(), len(tb.X))
		}
	})
}
