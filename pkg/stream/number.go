package stream

import (
	"encoding/binary"
	"math"
	"math/bits"
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
			if nd <= 11 && i+8 <= len(b) {
				if v8, ok := eightDigits(b[i:]); ok {
					mant = mant*1e8 + v8
					nd += 8
					i += 8
					continue
				}
			}
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
			if mant != 0 && nd <= 11 && i+8 <= len(b) {
				if v8, ok := eightDigits(b[i:]); ok {
					mant = mant*1e8 + v8
					nd += 8
					exp -= 8
					i += 8
					continue
				}
			}
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
	case !trunc && exp >= -19 && exp <= 19:
		// 16 to 19 digits, as most producers write floats: exact
		// 128-bit scaling, rounded once.
		v = scale(mant, exp)
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

// upow10 holds 10^0 .. 10^19, the powers of ten a uint64 holds.
var upow10 = func() (t [20]uint64) {
	t[0] = 1
	for i := 1; i < len(t); i++ {
		t[i] = t[i-1] * 10
	}
	return t
}()

// scale returns mant x 10^exp correctly rounded, for mant > 0 and
// -19 <= exp <= 19: the exact product, or a quotient of at least 64
// significant bits with its remainder as the sticky bit, rounded to 53
// bits once (to nearest, ties to even).
func scale(mant uint64, exp int) float64 {
	if exp >= 0 {
		hi, lo := bits.Mul64(mant, upow10[exp])
		return round128(hi, lo, false, 0)
	}
	d := upow10[-exp]
	lz := bits.LeadingZeros64(mant)
	m := mant << lz // mant x 2^lz, top bit set
	q1, r1 := m/d, m%d
	q0, r0 := bits.Div64(r1, 0, d) // (m x 2^64) / d = q1:q0 rest r0
	return round128(q1, q0, r0 != 0, -64-lz)
}

// round128 returns (hi:lo + something below lo's last bit when sticky) x
// 2^e2 rounded to the nearest float64, ties to even. The result must be a
// normal number, which it is for scale's operands.
func round128(hi, lo uint64, sticky bool, e2 int) float64 {
	n := bits.LeadingZeros64(hi)
	if hi == 0 {
		n = 64 + bits.LeadingZeros64(lo)
	}
	// Shift left by n so that bit 127 is set.
	switch {
	case n >= 64:
		hi, lo = lo<<(n-64), 0
	case n > 0:
		hi, lo = hi<<n|lo>>(64-n), lo<<n
	}
	e2 -= n
	m := hi >> 11 // 53 bits
	rem := hi & 0x7ff
	if rem > 0x400 || rem == 0x400 && (lo != 0 || sticky || m&1 == 1) {
		m++
		if m == 1<<53 {
			m >>= 1
			e2++
		}
	}
	return math.Ldexp(float64(m), e2+11+64)
}

// eightDigits parses b[:8] when all eight bytes are ASCII digits, eight at
// a time in one word (the SWAR method).
func eightDigits(b []byte) (uint64, bool) {
	v := binary.LittleEndian.Uint64(b)
	if (v&0xF0F0F0F0F0F0F0F0)|(((v+0x0606060606060606)&0xF0F0F0F0F0F0F0F0)>>4) != 0x3333333333333333 {
		return 0, false
	}
	v = (v & 0x0F0F0F0F0F0F0F0F) * 2561 >> 8
	v = (v & 0x00FF00FF00FF00FF) * 6553601 >> 16
	return (v & 0x0000FFFF0000FFFF) * 42949672960001 >> 32, true
}
