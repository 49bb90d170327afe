package stream

import (
	"math"
	"strconv"
)

// pow10 holds the powers of ten a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// scanNumber parses the JSON number at b[i:] in one pass and returns its
// value and the index after it. ok is false when b[i:] is not a JSON number
// followed by a delimiter (or the end), or when it is out of float64's
// range; the caller then takes the slow path, which says what is wrong.
// Numbers of at most 19 significant digits whose mantissa is exact in a
// float64 and whose power of ten is at most 22 are computed directly
// (Clinger's fast path, exact: one correctly rounded operation on exact
// operands); the rest go to strconv.ParseFloat.
func scanNumber(b []byte, i int) (v float64, end int, ok bool) {
	start := i
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	nd, exp := 0, 0 // significant digits taken; power of ten to apply
	trunc := false  // digits beyond 19 were dropped
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if nd < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				nd++
			} else {
				trunc = true
				exp++
			}
			i++
		}
	default:
		return 0, i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, i, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if nd < 19 {
				mant = mant*10 + uint64(b[i]-'0')
				if mant != 0 {
					nd++ // leading zeros are not significant
				}
				exp--
			} else {
				trunc = true
			}
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, i, false
		}
		e := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
			i++
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i < len(b) {
		switch b[i] {
		case ',', ']', '}', ' ', '\t', '\n', '\r':
		default:
			return 0, i, false
		}
	}
	switch {
	case mant == 0 && !trunc:
		v = 0
	case !trunc && mant <= 1<<53 && exp >= -22 && exp <= 22:
		v = float64(mant)
		if exp < 0 {
			v /= pow10[-exp]
		} else {
			v *= pow10[exp]
		}
	default:
		f, err := strconv.ParseFloat(unsafeString(b[start:i]), 64)
		if err != nil || math.IsInf(f, 0) {
			return 0, i, false
		}
		return f, i, true
	}
	if neg {
		v = -v
	}
	return v, i, true
}
