package stream

import (
	"encoding/binary"
	"math"
	"math/big"
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
// The first 19 significant digits are read eight at a time where they
// can be (the fraction's last run at once too); a mantissa exact in a float64 with a power of ten of at most 22
// is scaled directly (Clinger's fast path: one correctly rounded
// operation on exact operands), any other by the Eisel-Lemire algorithm;
// the rare numbers neither decides go to strconv.ParseFloat. The result
// is always ParseFloat's, bit for bit.
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
			// Integer parts are mostly short: only whole runs of eight
			// are taken at once (a failed try costs less than digitRun).
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
				run, k := digitRun(b, i)
				mant = mant*upow10[k] + run
				nd += k
				exp -= k
				i += k
				if k == 8 {
					continue
				}
				break
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
		// Clinger's fast path: exact operands, one rounding.
		v = float64(mant)
		if exp < 0 {
			v /= pow10[-exp]
		} else {
			v *= pow10[exp]
		}
	default:
		f, fast := eiselLemire(mant, exp)
		if fast && trunc {
			// Digits beyond the 19th were dropped: the value lies in
			// [mant, mant+1) x 10^exp, so it is exact when both ends
			// round to the same float64 (as strconv does).
			g, ok := eiselLemire(mant+1, exp)
			fast = ok && f == g
		}
		if !fast {
			f, err := strconv.ParseFloat(unsafeString(b[start:i]), 64)
			if err != nil || math.IsInf(f, 0) {
				return 0, i, false
			}
			return f, i, true
		}
		v = f
	}
	if neg {
		v = -v
	}
	return v, i, true
}

// Powers of ten for eiselLemire: pow10Tab[e-pow10Min] is 10^e as a
// 128-bit mantissa with its top bit set, rounded down, for pow10Min <= e
// <= pow10Max; that is, 10^e ~ (hi:lo / 2^128) x 2^exp2 with exp2 =
// bits.Len(10^e) for e >= 0 and 1 - bits.Len(10^-e) below. Computed
// exactly at start (math/big), as strconv's own table is generated.
const (
	pow10Min = -348
	pow10Max = 347
)

type pow10Entry struct {
	hi, lo uint64
	exp2   int
}

var pow10Tab = func() (t [pow10Max - pow10Min + 1]pow10Entry) {
	ten := big.NewInt(10)
	p := big.NewInt(1) // 10^|e|
	one := big.NewInt(1)
	mask := new(big.Int).SetUint64(math.MaxUint64)
	var m, hi, lo big.Int
	entry := func(m *big.Int, exp2 int) pow10Entry {
		return pow10Entry{hi.Rsh(m, 64).Uint64(), lo.And(m, mask).Uint64(), exp2}
	}
	for e := 0; e <= max(pow10Max, -pow10Min); e++ {
		l := p.BitLen()
		if e <= pow10Max {
			if l > 128 {
				m.Rsh(p, uint(l-128))
			} else {
				m.Lsh(p, uint(128-l))
			}
			t[e-pow10Min] = entry(&m, l)
		}
		if e > 0 && -e >= pow10Min {
			// floor(2^(l+127) / 10^e): 128 bits, top bit set (10^e is
			// not a power of two).
			m.Div(m.Lsh(one, uint(l+127)), p)
			t[-e-pow10Min] = entry(&m, 1-l)
		}
		p.Mul(p, ten)
	}
	return t
}()

// eiselLemire returns mant x 10^exp10 correctly rounded to a float64 by
// the Eisel-Lemire algorithm (one or two 64x64-bit products against the
// 128-bit power of ten; strconv.ParseFloat's own fast path, which follows
// https://nigeltao.github.io/blog/2020/eisel-lemire.html). ok is false
// when the product is too close to a halfway point to decide, or the
// result is not a normal finite float64: then strconv.ParseFloat decides.
func eiselLemire(mant uint64, exp10 int) (f float64, ok bool) {
	if mant == 0 {
		return 0, true
	}
	if exp10 < pow10Min || exp10 > pow10Max {
		return 0, false
	}
	pow := &pow10Tab[exp10-pow10Min]
	// Normalization.
	clz := bits.LeadingZeros64(mant)
	mant <<= uint(clz)
	retExp2 := uint64(pow.exp2+63+1023) - uint64(clz)
	// Multiplication.
	xHi, xLo := bits.Mul64(mant, pow.hi)
	// Wider approximation.
	if xHi&0x1FF == 0x1FF && xLo+mant < mant {
		yHi, yLo := bits.Mul64(mant, pow.lo)
		mergedHi, mergedLo := xHi, xLo+yHi
		if mergedLo < xLo {
			mergedHi++
		}
		if mergedHi&0x1FF == 0x1FF && mergedLo+1 == 0 && yLo+mant < mant {
			return 0, false
		}
		xHi, xLo = mergedHi, mergedLo
	}
	// Shifting to 54 bits.
	msb := xHi >> 63
	retMant := xHi >> (msb + 9)
	retExp2 -= 1 ^ msb
	// Halfway ambiguity.
	if xLo == 0 && xHi&0x1FF == 0 && retMant&3 == 1 {
		return 0, false
	}
	// From 54 to 53 bits.
	retMant += retMant & 1
	retMant >>= 1
	if retMant>>53 > 0 {
		retMant >>= 1
		retExp2++
	}
	// Zero or underflow: subnormal; 0x7FF or above: infinite.
	if retExp2-1 >= 0x7FF-1 {
		return 0, false
	}
	return math.Float64frombits(retExp2<<52 | retMant&(1<<52-1)), true
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

// upow10 holds 10^0 .. 10^8, the scales of a run of digits.
var upow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// digitRun parses the run of ASCII digits that starts at b[i], up to 8
// of them, and returns its value and length (0 to 8); b must have 8 bytes
// from i on. One load and no branch (the SWAR method): a byte is a digit
// when its high nibble is 3 and adding 6 leaves it so; the run ends at
// the lowest byte that is not (a carry out of a byte of 0xFA or above
// reaches only later bytes); its digits are shifted to the top of the
// word, behind zeros, and combined in three multiplications.
func digitRun(b []byte, i int) (uint64, int) {
	v := binary.LittleEndian.Uint64(b[i:])
	t := (v & 0xF0F0F0F0F0F0F0F0) | (((v + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)
	n := bits.TrailingZeros64(t^0x3333333333333333) >> 3
	d := (v & 0x0F0F0F0F0F0F0F0F) << (64 - 8*n) // n = 0: shifted out
	d = d * 2561 >> 8
	d = (d & 0x00FF00FF00FF00FF) * 6553601 >> 16
	return (d & 0x0000FFFF0000FFFF) * 42949672960001 >> 32, n
}
