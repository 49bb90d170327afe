package stream

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestScanNumberMatchesParseFloat: the one-pass parser gives bit-identical
// values to strconv.ParseFloat on numbers written every way a producer
// writes them (shortest, fixed, exponent, few and many digits, huge and
// tiny), and refuses what is not a JSON number.
func TestScanNumberMatchesParseFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var toks []string
	for i := 0; i < 200000; i++ {
		var v float64
		switch i % 4 {
		case 0:
			v = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
		case 1:
			v = math.Float64frombits(rng.Uint64())
		case 2:
			v = float64(rng.IntN(2000000)-1000000) / 1000
		default:
			v = rng.Float64()
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		prec := []int{-1, 3, 6, 17, 20}[rng.IntN(5)]
		f := []byte{'g', 'e', 'f', 'E'}[rng.IntN(4)]
		if f == 'f' && math.Abs(v) > 1e30 {
			f = 'e'
		}
		toks = append(toks, strconv.FormatFloat(v, f, prec, 64))
	}
	toks = append(toks, "0", "-0", "0.0", "0.0012", "-0.000000000000000000000000001", "1e22", "1e23", "123456789012345678901234567890",
		"0.1234567890123456789012345", "9007199254740993", "1E-5", "5e-324", "1.7976931348623157e308")
	// Every mantissa length the 128-bit path takes, at every exponent,
	// and integers just past 2^53 (ties between two floats).
	var upow10 [20]uint64
	upow10[0] = 1
	for i := 1; i < len(upow10); i++ {
		upow10[i] = 10 * upow10[i-1]
	}
	for i := 0; i < 100000; i++ {
		digits := 16 + rng.IntN(4)
		m := rng.Uint64N(upow10[digits]-upow10[digits-1]) + upow10[digits-1]
		toks = append(toks, strconv.FormatUint(m, 10)+"e"+strconv.Itoa(rng.IntN(39)-19))
		toks = append(toks, strconv.FormatUint(1<<53+uint64(rng.IntN(1000)), 10))
	}
	// Every power of ten in the Eisel-Lemire table, with short and long
	// mantissas.
	for e := pow10Min; e <= pow10Max; e++ {
		for _, m := range []string{"1", "9.999999999999999", "1.2345678901234567", "4.9406564584124654", "123456789012345678901234"} {
			toks = append(toks, m+"e"+strconv.Itoa(e))
		}
	}
	for _, tok := range toks {
		want, err := strconv.ParseFloat(tok, 64)
		if err != nil || math.IsInf(want, 0) {
			if _, _, ok := scanNumber([]byte(tok), 0); ok {
				t.Fatalf("scanNumber(%q): ok, ParseFloat: %v, %v", tok, want, err)
			}
			continue
		}
		// Short suffixes: the end of a record (the digit-at-a-time
		// path); long ones: the middle (eight bytes at a time).
		for _, suffix := range []string{"", ",", "]", " ", ",0,0,0,0,0,0,0,0,0]", "]        ", " , 1.5]          ", "}\n\n\n\n\n\n\n\n\n\n"} {
			got, end, ok := scanNumber([]byte(tok+suffix), 0)
			if !ok || end != len(tok) || math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("scanNumber(%q) = %v, %d, %v; want %v, %d", tok+suffix, got, end, ok, want, len(tok))
			}
		}
	}
	for _, bad := range []string{"", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1x", "0x10", "1.5.2", "NaN", "1e400", "-1e999",
		"-01.5", "1.e5", "1e+x", "1.5e", "1.25x", "12345678.9x", "1.2345678901234567x", "1" + strings.Repeat("0", 400)} {
		for _, suffix := range []string{"", ",0,0,0,0,0,0,0,0,0]"} {
			if v, _, ok := scanNumber([]byte(bad+suffix), 0); ok {
				t.Errorf("scanNumber(%q): ok, %v", bad+suffix, v)
			}
		}
	}
}

// benchRecords returns n JSON arrays of p features written as producers
// write float64s (shortest exact: 16 or 17 significant digits), as the
// scorer benchmark's records (tools/benchscore: p = 30, about 580 bytes).
func benchRecords(n, p int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, p)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	c, _ := NewCodec(JSONArray, names)
	x := make([]float64, p)
	recs := make([][]byte, n)
	for i := range recs {
		for f := range x {
			x[f] = 3 * rng.NormFloat64()
		}
		recs[i] = c.Encode(nil, x)
	}
	return recs
}

// BenchmarkDecodeArray decodes the same JSON-array records three ways:
// the codec (one pass), strconv.ParseFloat on each comma-separated token
// (the least a decoder must do, checking nothing but the numbers), and
// encoding/json into a []float64.
func BenchmarkDecodeArray(b *testing.B) {
	const n, p = 1024, 30
	recs := benchRecords(n, p)
	size := 0
	for _, r := range recs {
		size += len(r)
	}
	names := make([]string, p)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i)
	}
	c, _ := NewCodec(JSONArray, names)
	dst := make([]float64, p)
	report := func(b *testing.B) {
		b.SetBytes(int64(size / n))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*p), "ns/number")
	}
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := c.Decode(dst, recs[i%n]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		report(b)
	})
	b.Run("strconv", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			s := unsafeString(recs[i%n])
			s = s[1 : len(s)-1]
			for f := range dst {
				tok, rest, _ := strings.Cut(s, ",")
				v, err := strconv.ParseFloat(tok, 64)
				if err != nil {
					b.Fatal(err)
				}
				dst[f], s = v, rest
			}
			i++
		}
		report(b)
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		v := make([]float64, 0, p)
		for b.Loop() {
			v = v[:0]
			if err := json.Unmarshal(recs[i%n], &v); err != nil {
				b.Fatal(err)
			}
			i++
		}
		report(b)
	})
}
