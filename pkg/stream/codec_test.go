package stream

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

var names = []string{"a", "b", "c"}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		format Format
		in     string
		want   []float64
		reason DecodeReason
		detail string
	}{
		{JSONArray, `[1, 2.5, -3e2]`, []float64{1, 2.5, -300}, "", ""},
		{JSONArray, ` [0,0,0] `, []float64{0, 0, 0}, "", ""},
		{JSONArray, `[1,2]`, nil, ReasonWrongLength, "2 elements, want 3"},
		{JSONArray, `[1,2,3,4]`, nil, ReasonWrongLength, "more than 3"},
		{JSONArray, `[1,"x",3]`, nil, ReasonNotANumber, "b (element 1)"},
		{JSONArray, `[1,null,3]`, nil, ReasonNotANumber, "b (element 1)"},
		{JSONArray, `[1,NaN,3]`, nil, ReasonNonFinite, "b (element 1)"},
		{JSONArray, `[1,2,-Infinity]`, nil, ReasonNonFinite, "c (element 2)"},
		{JSONArray, `[1,1e999,3]`, nil, ReasonNonFinite, "b: \"1e999\" is out of range"},
		{JSONArray, `[1,2,3`, nil, ReasonBadJSON, ""},
		{JSONArray, `[1,2,3]x`, nil, ReasonBadJSON, "trailing"},
		{JSONArray, `{"a":1}`, nil, ReasonBadJSON, "JSON array"},
		{JSONArray, ``, nil, ReasonEmpty, ""},
		{JSONArray, `[01,2,3]`, nil, ReasonBadJSON, ""},
		{JSONObject, `{"a":1,"b":2,"c":3,"note":"ok"}`, []float64{1, 2, 3}, "", ""},
		{JSONObject, `{"c":3,"b":2,"\u0061":1}`, []float64{1, 2, 3}, "", ""},
		{JSONObject, `{"a":1,"b":2}`, nil, ReasonMissingField, `field "c" is missing`},
		{JSONObject, `{"a":1,"b":"2","c":3}`, nil, ReasonNotANumber, `b: "2" is not a number`},
		// What Python's json.dumps writes for nan and inf: non_finite.
		{JSONObject, `{"a": NaN, "b": 2, "c": 3}`, nil, ReasonNonFinite, "a: NaN is not finite"},
		{JSONObject, `{"a":1,"b":2,"c":-Infinity}`, nil, ReasonNonFinite, "c: -Infinity is not finite"},
		{JSONObject, `{"a":1,"b":2,"c":Infinity}`, nil, ReasonNonFinite, "c: Infinity"},
		{JSONObject, `[1,2,3]`, nil, ReasonBadJSON, "got a JSON array"},
		{JSONObject, `{"a":1 "b":2}`, nil, ReasonBadJSON, "not valid JSON at byte"},
		{JSONObject, `{"a":1,"b":2,"c":1e400}`, nil, ReasonNonFinite, "c:"},
		{JSONObject, `{"a":1,`, nil, ReasonBadJSON, ""},
		{JSONObject, `null`, nil, ReasonBadJSON, "null"},
		{JSONObject, `[1,2,3]`, nil, ReasonBadJSON, ""},
		{CSV, `1,2,3`, []float64{1, 2, 3}, "", ""},
		{CSV, " 1 , 2 , 3\r\n", []float64{1, 2, 3}, "", ""},
		{CSV, `"1","2","3"`, []float64{1, 2, 3}, "", ""},
		{CSV, `1,2`, nil, ReasonWrongLength, "2 fields, want 3"},
		{CSV, `1,two,3`, nil, ReasonNotANumber, `b: "two" is not a number`},
		{CSV, `1,NaN,3`, nil, ReasonNonFinite, "b:"},
		{CSV, `1,Inf,3`, nil, ReasonNonFinite, "b:"},
		{CSV, `1,,3`, nil, ReasonNotANumber, "b: empty value"},
		{CSV, `"1,2,3`, nil, ReasonBadCSV, ""},
	} {
		c, err := NewCodec(tc.format, names)
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]float64, 3)
		err = c.Decode(dst, []byte(tc.in))
		if tc.reason == "" {
			if err != nil {
				t.Errorf("%v %q: %v", tc.format, tc.in, err)
				continue
			}
			for i := range dst {
				if dst[i] != tc.want[i] {
					t.Errorf("%v %q: %v, want %v", tc.format, tc.in, dst, tc.want)
				}
			}
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) || de.Reason != tc.reason || !strings.Contains(de.Detail, tc.detail) {
			t.Errorf("%v %q: %v, want %s containing %q", tc.format, tc.in, err, tc.reason, tc.detail)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	x := []float64{1.5, -2e-300, math.MaxFloat64}
	for _, f := range []Format{JSONObject, JSONArray, CSV} {
		c, _ := NewCodec(f, names)
		dst := make([]float64, 3)
		b := c.Encode(nil, x)
		if err := c.Decode(dst, b); err != nil {
			t.Fatalf("%v: %s: %v", f, b, err)
		}
		for i := range x {
			if dst[i] != x[i] {
				t.Errorf("%v: %v after a round trip, want %v", f, dst, x)
			}
		}
	}
}

func TestDecodeDoesNotAllocateForArrays(t *testing.T) {
	c, _ := NewCodec(JSONArray, names)
	dst := make([]float64, 3)
	rec := []byte(`[1.25,2,3]`)
	if err := c.Decode(dst, rec); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = c.Decode(dst, rec) }); n != 0 {
		t.Errorf("%v allocations per JSON array record", n)
	}
}

// FuzzDecode: no input panics; every failure is a DecodeError; for JSON
// arrays, what decodes agrees with encoding/json.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`[1,2,3]`, `{"a":1,"b":2,"c":3}`, `1,2,3`, `[1,"x",3]`, `"1",2,3`} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(1))
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, in string, fm uint8) {
		format := Format(fm % 3)
		c, _ := NewCodec(format, names)
		dst := make([]float64, 3)
		err := c.Decode(dst, []byte(in))
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" || de.Detail == "" {
				t.Fatalf("error %v is not a DecodeError with a reason and detail", err)
			}
			return
		}
		for _, v := range dst {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("decoded non-finite %v from %q", v, in)
			}
		}
		if format == JSONArray {
			var ref []float64
			if e := json.Unmarshal([]byte(in), &ref); e != nil || len(ref) != 3 {
				t.Fatalf("decoded %q, encoding/json disagrees: %v %v", in, ref, e)
			}
			for i := range ref {
				if ref[i] != dst[i] {
					t.Fatalf("%q: %v, encoding/json %v", in, dst, ref)
				}
			}
		}
	})
}
