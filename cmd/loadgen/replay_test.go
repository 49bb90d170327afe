package main

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/recon-ad/recon/pkg/stream"
)

// write makes a file named name holding text in a fresh directory.
func write(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// sameValues compares exactly, NaN equal to NaN.
func sameValues(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) })
}

// byDefault is the selection the flags' defaults make.
var byDefault = selection{label: "label", labelOptional: true}

func TestLoad(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	for _, tc := range []struct {
		name, file, text string
		sel              selection
		features         []string
		values           []float64
		keys             []string
		anomaly          []bool
		err              string // a substring of the error; "" for none
	}{
		{name: "csv defaults", file: "a.csv", text: "f0,f1,label\n1,2,0\n3.5,-4e-3,1\n", sel: byDefault,
			features: []string{"f0", "f1"}, values: []float64{1, 2, 3.5, -4e-3}, anomaly: []bool{false, true}},
		{name: "csv without a label column", file: "a.csv", text: "x,y\n1,2\n", sel: byDefault,
			features: []string{"x", "y"}, values: []float64{1, 2}},
		{name: "csv label of any value", file: "a.csv", text: "x,class\n1,0.0\n2,2\n3,normal\n4,attack\n5,false\n", sel: selection{label: "class"},
			features: []string{"x"}, values: []float64{1, 2, 3, 4, 5}, anomaly: []bool{false, true, false, true, false}},
		{name: "csv columns picked and ordered", file: "a.csv", text: "a,b,c,label\n1,2,3,1\n", sel: selection{columns: []string{"c", "a"}, label: "label", labelOptional: true},
			features: []string{"c", "a"}, values: []float64{3, 1}, anomaly: []bool{true}},
		{name: "csv key column", file: "a.csv", text: "id,f0,label\nh-1,1,0\nh-2,2,0\n", sel: selection{label: "label", labelOptional: true, key: "id"},
			features: []string{"f0"}, values: []float64{1, 2}, keys: []string{"h-1", "h-2"}, anomaly: []bool{false, false}},
		{name: "csv no label", file: "a.csv", text: "f0,label\n1,1\n", sel: selection{},
			features: []string{"f0", "label"}, values: []float64{1, 1}},
		{name: "csv NaN and infinities pass", file: "a.csv", text: "f0,f1\nNaN,+Inf\n-inf, 7 \n", sel: byDefault,
			features: []string{"f0", "f1"}, values: []float64{nan, inf, -inf, 7}},
		{name: "csv byte-order mark, CRLF, quotes", file: "a.csv", text: "\ufeff\"f 0\",f1\r\n\"1\",2\r\n\r\n3,4\r\n", sel: byDefault,
			features: []string{"f 0", "f1"}, values: []float64{1, 2, 3, 4}},
		{name: "csv not a number", file: "a.csv", text: "f0,f1\n1,2\n3,abc\n", sel: byDefault,
			err: `a.csv:3: column "f1": "abc" is not a number`},
		{name: "csv empty value", file: "a.csv", text: "f0,f1\n1,\n", sel: byDefault,
			err: `a.csv:2: column "f1": empty value`},
		{name: "csv empty label", file: "a.csv", text: "f0,label\n1,\n", sel: byDefault,
			err: `a.csv:2: label column "label": no label`},
		{name: "csv wrong field count", file: "a.csv", text: "f0,f1\n1,2\n3\n", sel: byDefault,
			err: "line 3"},
		{name: "csv missing feature column", file: "a.csv", text: "f0,f1,label\n1,2,0\n", sel: selection{columns: []string{"f0", "f9"}},
			err: `--columns: a.csv has no column "f9" (its columns: f0, f1, label)`},
		{name: "csv missing label column", file: "a.csv", text: "f0,f1\n1,2\n", sel: selection{label: "label"},
			err: `--label: a.csv has no column "label" (its columns: f0, f1)`},
		{name: "csv missing key column", file: "a.csv", text: "f0,f1\n1,2\n", sel: selection{key: "id"},
			err: `--key-column: a.csv has no column "id" (its columns: f0, f1)`},
		{name: "csv label as a feature", file: "a.csv", text: "f0,label\n1,0\n", sel: selection{columns: []string{"f0", "label"}, label: "label", labelOptional: true},
			err: `--columns: "label" is the label column`},
		{name: "csv a column twice", file: "a.csv", text: "f0,f1\n1,0\n", sel: selection{columns: []string{"f0", "f0"}},
			err: `--columns: "f0" named twice`},
		{name: "csv only label and key", file: "a.csv", text: "id,label\n1,0\n", sel: selection{label: "label", key: "id"},
			err: "no columns left to send"},
		{name: "csv header only", file: "a.csv", text: "f0,f1\n", sel: byDefault, err: "a.csv: no rows to replay"},
		{name: "csv empty", file: "a.csv", text: "", sel: byDefault, err: "a.csv: empty file"},

		{name: "jsonl defaults in key order", file: "a.jsonl", text: `{"b": 1, "a": 2, "label": 0}` + "\n" + `{"a": 4, "label": 1, "b": 3}` + "\n", sel: byDefault,
			features: []string{"b", "a"}, values: []float64{1, 2, 3, 4}, anomaly: []bool{false, true}},
		{name: "jsonl blank lines, strings, NaN, no final newline", file: "a.ndjson", text: "\n{\"x\": \"1.5\", \"y\": \"NaN\"}\n  \n{\"x\": -2, \"y\": 1e3, \"extra\": [1]}", sel: byDefault,
			features: []string{"x", "y"}, values: []float64{1.5, nan, -2, 1e3}},
		{name: "jsonl key and boolean label", file: "a.json", text: `{"id": 17, "v": 1, "label": false}` + "\n" + `{"id": "s", "v": 2, "label": true}` + "\n", sel: selection{label: "label", labelOptional: true, key: "id"},
			features: []string{"v"}, values: []float64{1, 2}, keys: []string{"17", "s"}, anomaly: []bool{false, true}},
		{name: "jsonl a row lacks a column", file: "a.jsonl", text: `{"x": 1, "y": 2}` + "\n\n" + `{"x": 3}` + "\n", sel: byDefault,
			err: `a.jsonl:3: no value for column "y"`},
		{name: "jsonl not a number", file: "a.jsonl", text: `{"x": 1}` + "\n" + `{"x": true}` + "\n", sel: byDefault,
			err: `a.jsonl:2: column "x": "true" is not a number`},
		{name: "jsonl null", file: "a.jsonl", text: `{"x": null}` + "\n", sel: byDefault,
			err: `a.jsonl:1: column "x": "null" is not a number`},
		{name: "jsonl bad JSON", file: "a.jsonl", text: `{"x": 1}` + "\n" + `{"x": 1,}` + "\n", sel: byDefault,
			err: "a.jsonl:2: bad JSON"},
		{name: "jsonl not an object", file: "a.jsonl", text: "[1, 2]\n", sel: byDefault,
			err: "a.jsonl:1: want a JSON object"},
		{name: "jsonl two objects on a line", file: "a.jsonl", text: `{"x": 1} {"x": 2}` + "\n", sel: byDefault,
			err: "a.jsonl:1: bad JSON: data after the object"},
		{name: "jsonl missing feature column", file: "a.jsonl", text: `{"x": 1, "label": 0}` + "\n", sel: selection{columns: []string{"z"}},
			err: `--columns: a.jsonl has no column "z" (its columns: x, label)`},
		{name: "jsonl empty", file: "a.jsonl", text: "\n\n", sel: byDefault, err: "a.jsonl: empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, tc.file, tc.text)
			in, err := parseInputFormat("", path)
			if err != nil {
				t.Fatal(err)
			}
			tab, err := load(path, in, tc.sel)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tab.features, tc.features) || !sameValues(tab.values, tc.values) ||
				!slices.Equal(tab.keys, tc.keys) || !slices.Equal(tab.anomaly, tc.anomaly) {
				t.Errorf("features %q values %v keys %q anomaly %v, want %q %v %q %v",
					tab.features, tab.values, tab.keys, tab.anomaly, tc.features, tc.values, tc.keys, tc.anomaly)
			}
			if want := len(tc.values) / len(tc.features); tab.rows() != want {
				t.Errorf("%d rows, want %d", tab.rows(), want)
			}
		})
	}
}

func TestParseInputFormat(t *testing.T) {
	for _, tc := range []struct {
		flag, path string
		want       inputFormat
		err        bool
	}{
		{"", "x.csv", inputCSV, false},
		{"", "dir/X.CSV", inputCSV, false},
		{"", "x.jsonl", inputJSONL, false},
		{"", "x.ndjson", inputJSONL, false},
		{"", "x.json", inputJSONL, false},
		{"", "x.txt", 0, true},
		{"", "data", 0, true},
		{"csv", "x.txt", inputCSV, false},
		{"jsonl", "x.csv", inputJSONL, false},
		{"parquet", "x.csv", 0, true},
	} {
		got, err := parseInputFormat(tc.flag, tc.path)
		if (err != nil) != tc.err || err == nil && got != tc.want {
			t.Errorf("parseInputFormat(%q, %q) = %v, %v; want %v (error %v)", tc.flag, tc.path, got, err, tc.want, tc.err)
		}
	}
}

func TestMessage(t *testing.T) {
	header := func(m stream.Record, k string) (string, bool) {
		for _, h := range m.Headers {
			if h.Key == k {
				return string(h.Value), true
			}
		}
		return "", false
	}
	for _, tc := range []struct {
		name, text string
		sel        selection
		format     stream.Format
		row        int
		key, value string
		truth      string // "": no truth header
	}{
		{name: "label to truth, row number key", text: "f0,f1,label\n1,2,0\n0.5,-3,1\n", sel: byDefault, format: stream.JSONObject,
			row: 1, key: "1", value: `{"f0":0.5,"f1":-3}`, truth: "anomaly"},
		{name: "normal", text: "f0,f1,label\n1,2,0\n0.5,-3,1\n", sel: byDefault, format: stream.JSONArray,
			row: 0, key: "0", value: `[1,2]`, truth: "normal"},
		{name: "key column, no label", text: "host,b,a\nweb-1,1,2\nweb-2,3,4\n", sel: selection{columns: []string{"a", "b"}, key: "host"}, format: stream.CSV,
			row: 1, key: "web-2", value: "4,3"},
		{name: "NaN sent on", text: "f0,f1\nnan,1\n", sel: byDefault, format: stream.JSONArray,
			row: 0, key: "0", value: `[NaN,1]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, err := load(write(t, "a.csv", tc.text), inputCSV, tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			codec, err := stream.NewCodec(tc.format, tab.features)
			if err != nil {
				t.Fatal(err)
			}
			m := tab.message(codec, tc.row)
			if string(m.Key) != tc.key || string(m.Value) != tc.value {
				t.Errorf("key %q value %s, want %q %s", m.Key, m.Value, tc.key, tc.value)
			}
			if truth, ok := header(m, TruthHeader); truth != tc.truth || ok != (tc.truth != "") {
				t.Errorf("%s header %q (present %v), want %q", TruthHeader, truth, ok, tc.truth)
			}
			if row, _ := header(m, RowHeader); row != strconv.Itoa(tc.row) {
				t.Errorf("%s header %q, want %d", RowHeader, row, tc.row)
			}
		})
	}
}

// drain takes every row o hands out, up to limit.
func drain(o *order, limit int) []int {
	var got []int
	for len(got) < limit {
		i, ok := o.next()
		if !ok {
			break
		}
		got = append(got, i)
	}
	return got
}

func TestOrder(t *testing.T) {
	if got, want := drain(newOrder(3, 2, nil), 100), []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("file order, 2 passes: %v, want %v", got, want)
	}
	if got := drain(newOrder(3, 0, nil), 100); len(got) != 100 || got[99] != 0 {
		t.Errorf("passes 0: %d rows, want no end", len(got))
	}
	shuffled := func(seed uint64) []int {
		return drain(newOrder(50, 3, rand.New(rand.NewPCG(seed, 0x10ad))), 1000)
	}
	a, b := shuffled(7), shuffled(7)
	if !slices.Equal(a, b) {
		t.Error("the same seed shuffled two ways")
	}
	if slices.Equal(a, shuffled(8)) {
		t.Error("seeds 7 and 8 shuffled alike")
	}
	if len(a) != 150 {
		t.Fatalf("%d rows, want 3 passes of 50", len(a))
	}
	for p := range 3 {
		pass := slices.Clone(a[50*p : 50*(p+1)])
		if p > 0 && slices.Equal(pass, a[:50]) {
			t.Errorf("pass %d repeats the first pass's order", p+1)
		}
		if slices.IsSorted(pass) {
			t.Errorf("pass %d is in file order", p+1)
		}
		slices.Sort(pass)
		for i, r := range pass {
			if r != i {
				t.Fatalf("pass %d is not a permutation of the rows: %v", p+1, a[50*p:50*(p+1)])
			}
		}
	}
}

// sink collects what produce writes; its first fail writes fail.
type sink struct {
	got  []stream.Record
	fail int
}

func (s *sink) Write(_ context.Context, msgs ...stream.Record) error {
	if s.fail > 0 {
		s.fail--
		return errors.New("broker away")
	}
	s.got = append(s.got, msgs...)
	return nil
}

func TestProduce(t *testing.T) {
	tab, err := load(write(t, "a.csv", "f0,label\n10,0\n11,1\n12,0\n13,0\n14,1\n"), inputCSV, byDefault)
	if err != nil {
		t.Fatal(err)
	}
	codec, _ := stream.NewCodec(stream.JSONArray, tab.features)
	for _, tc := range []struct {
		name          string
		passes        int
		count         int64
		rate          float64
		fail          int
		want          int
		summaryPasses string
	}{
		{name: "one pass", passes: 1, want: 5, summaryPasses: "1 pass"},
		{name: "two passes", passes: 2, want: 10, summaryPasses: "2 passes"},
		{name: "count ends mid-pass", passes: 2, count: 7, want: 7, summaryPasses: "1 pass and 2 rows"},
		{name: "count ends endless passes", passes: 0, count: 12, want: 12, summaryPasses: "2 passes and 2 rows"},
		{name: "paced", passes: 1, rate: 1000, want: 5, summaryPasses: "1 pass"},
		{name: "a failed write is retried", passes: 1, fail: 1, want: 5, summaryPasses: "1 pass"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrder(tab.rows(), tc.passes, nil)
			next := func() (stream.Record, bool) {
				i, ok := o.next()
				if !ok {
					return stream.Record{}, false
				}
				return tab.message(codec, i), true
			}
			s := &sink{fail: tc.fail}
			sent := produce(context.Background(), s, next, tc.rate, tc.count)
			if sent != int64(tc.want) || len(s.got) != tc.want {
				t.Fatalf("sent %d, written %d, want %d", sent, len(s.got), tc.want)
			}
			for i, m := range s.got {
				if want := "[" + strconv.Itoa(10+i%5) + "]"; string(m.Value) != want {
					t.Errorf("record %d is %s, want %s", i, m.Value, want)
				}
			}
			if got := passesDone(sent, tab.rows()); got != tc.summaryPasses {
				t.Errorf("passes %q, want %q", got, tc.summaryPasses)
			}
		})
	}
}
