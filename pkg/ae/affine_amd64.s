//go:build goexperiment.simd && amd64

#include "textflag.h"

// func affineAVX2(dst, w, src, bias *float64, out, in, n, n8 int)
//
// Columns [0, n8) of affine (kernel.go): dst (out x n) = w (out x in) times
// src (in x n), plus bias[o] on row o when bias is not nil. n8 is a positive
// multiple of 8, out and in are positive; the Go caller checks the lengths.
//
// Column blocks of 8 are the outer loop, so a block of src (in x 8) stays in
// L1 across the rows of w; four rows of w at a time, the rows past the last
// stood in for by the last one, whose block is then computed and stored more
// than once with the same bits. Eight accumulators (Y0-Y7) take one
// VFMADD231PD each per element of w: the inner loop is two loads of src,
// four broadcasts of w and eight FMAs, with no spill and no scalar
// floating-point instruction.
//
// Registers: AX last row (out-1), BX row o, CX -in counting up to 0, DX the
// row stride of src and dst in bytes (n*8), SI src pointer, R8-R11 the ends
// of the four rows of w. Frame: 0(SP) column c, 8/16/24(SP) rows o+1..o+3
// (clamped).
TEXT ·affineAVX2(SB), NOSPLIT, $32-64
	MOVQ out+32(FP), AX
	DECQ AX
	MOVQ n+48(FP), DX
	SHLQ $3, DX
	MOVQ $0, 0(SP)

col:
	XORQ BX, BX

block:
	// rows o+1, o+2, o+3, clamped to the last
	LEAQ 1(BX), R12
	CMPQ R12, AX
	CMOVQGT AX, R12
	LEAQ 2(BX), R13
	CMPQ R13, AX
	CMOVQGT AX, R13
	LEAQ 3(BX), DI
	CMPQ DI, AX
	CMOVQGT AX, DI
	MOVQ R12, 8(SP)
	MOVQ R13, 16(SP)
	MOVQ DI, 24(SP)

	// accumulators start at the bias, or zero
	MOVQ bias+24(FP), CX
	TESTQ CX, CX
	JZ nobias
	VBROADCASTSD (CX)(BX*8), Y0
	VMOVAPD Y0, Y1
	VBROADCASTSD (CX)(R12*8), Y2
	VMOVAPD Y2, Y3
	VBROADCASTSD (CX)(R13*8), Y4
	VMOVAPD Y4, Y5
	VBROADCASTSD (CX)(DI*8), Y6
	VMOVAPD Y6, Y7
	JMP rows

nobias:
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y2, Y2, Y2
	VXORPD Y3, Y3, Y3
	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7

rows:
	// R8-R11: one past the end of rows o..o+3 of w, (r+1)*in elements in
	MOVQ in+40(FP), CX
	LEAQ 1(BX), R8
	IMULQ CX, R8
	INCQ R12
	IMULQ CX, R12
	INCQ R13
	IMULQ CX, R13
	INCQ DI
	IMULQ CX, DI
	MOVQ w+8(FP), SI
	LEAQ (SI)(R8*8), R8
	LEAQ (SI)(R12*8), R9
	LEAQ (SI)(R13*8), R10
	LEAQ (SI)(DI*8), R11
	NEGQ CX

	// SI: column c of row 0 of src
	MOVQ 0(SP), DI
	MOVQ src+16(FP), SI
	LEAQ (SI)(DI*8), SI

inner:
	VMOVUPD (SI), Y8
	VMOVUPD 32(SI), Y9
	ADDQ DX, SI
	VBROADCASTSD (R8)(CX*8), Y10
	VFMADD231PD Y8, Y10, Y0
	VFMADD231PD Y9, Y10, Y1
	VBROADCASTSD (R9)(CX*8), Y11
	VFMADD231PD Y8, Y11, Y2
	VFMADD231PD Y9, Y11, Y3
	VBROADCASTSD (R10)(CX*8), Y12
	VFMADD231PD Y8, Y12, Y4
	VFMADD231PD Y9, Y12, Y5
	VBROADCASTSD (R11)(CX*8), Y13
	VFMADD231PD Y8, Y13, Y6
	VFMADD231PD Y9, Y13, Y7
	INCQ CX
	JNZ inner

	// store rows o..o+3 at column c: dst + r*n*8 + c*8
	MOVQ 0(SP), DI
	MOVQ dst+0(FP), SI
	LEAQ (SI)(DI*8), SI
	MOVQ BX, R8
	IMULQ DX, R8
	VMOVUPD Y0, (SI)(R8*1)
	VMOVUPD Y1, 32(SI)(R8*1)
	MOVQ 8(SP), R8
	IMULQ DX, R8
	VMOVUPD Y2, (SI)(R8*1)
	VMOVUPD Y3, 32(SI)(R8*1)
	MOVQ 16(SP), R8
	IMULQ DX, R8
	VMOVUPD Y4, (SI)(R8*1)
	VMOVUPD Y5, 32(SI)(R8*1)
	MOVQ 24(SP), R8
	IMULQ DX, R8
	VMOVUPD Y6, (SI)(R8*1)
	VMOVUPD Y7, 32(SI)(R8*1)

	ADDQ $4, BX
	CMPQ BX, AX
	JLE block

	MOVQ 0(SP), DI
	ADDQ $8, DI
	MOVQ DI, 0(SP)
	CMPQ DI, n8+56(FP)
	JLT col

	VZEROUPPER
	RET
