//go:build goexperiment.simd && amd64 && !race

package ae

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestNoScalarSSEInVectorKernels disassembles the AVX kernels of this test
// binary (binutils objdump) and fails where a legacy SSE instruction (one
// without the VEX prefix, on an XMM register) follows a YMM or ZMM
// instruction with no VZEROUPPER between them, in the order the code is
// laid out. Go compiles scalar float64 code to legacy SSE; on a Zen 3 one
// such instruction in a loop with dirty upper halves made the loop 46 times
// slower, which no kernel test sees and only a benchmark on that CPU class
// shows. Under -race the instrumentation's calls spill and reload
// registers, so the test is built without it (make test-simd runs it so).
func TestNoScalarSSEInVectorKernels(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Skip("objdump (binutils) not installed")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	kernels := map[string]any{"affineAVX2": affineAVX2, "affineTail": affineTail, "affine512": affine512, "gradW": gradW,
		"sqErrColumns": sqErrColumns, "reluInPlace": reluInPlace, "reluMask": reluMask, "rowSums": rowSums,
		"sqErrGrad": sqErrGrad, "adamUpdate": adamUpdate}
	// disasm returns the disassembly of the function at pc; go test strips
	// the symbol table, so its extent comes from the runtime's own table.
	disasm := func(k string, pc uintptr) []byte {
		f := runtime.FuncForPC(pc)
		if f == nil {
			t.Fatalf("%s: no function at %#x", k, pc)
		}
		end := f.Entry()
		for g := f; g != nil && g.Entry() == f.Entry(); g = runtime.FuncForPC(end) {
			end++
		}
		out, err := exec.Command(objdump, "-d", "--no-show-raw-insn",
			fmt.Sprintf("--start-address=%#x", f.Entry()), fmt.Sprintf("--stop-address=%#x", end), exe).Output()
		if err != nil {
			t.Fatalf("objdump %s: %v", k, err)
		}
		return out
	}
	// An assembly kernel's func value is the compiler's ABI wrapper, which
	// calls the kernel itself: follow that call.
	call := regexp.MustCompile(`\tcall +(?:0x)?([0-9a-f]+)`)
	for k, fn := range kernels {
		out := disasm(k, reflect.ValueOf(fn).Pointer())
		if !bytes.Contains(out, []byte("%ymm")) && !bytes.Contains(out, []byte("%zmm")) {
			if m := call.FindSubmatch(out); m != nil {
				pc, err := strconv.ParseUint(string(m[1]), 16, 64)
				if err != nil {
					t.Fatal(err)
				}
				out = disasm(k, uintptr(pc))
			}
		}
		vector, dirty := 0, false
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			_, insn, ok := strings.Cut(line, ":\t")
			if !ok {
				continue
			}
			mnemonic, _, _ := strings.Cut(strings.TrimSpace(insn), " ")
			switch {
			case mnemonic == "vzeroupper":
				dirty = false
			case strings.Contains(insn, "%ymm") || strings.Contains(insn, "%zmm"):
				dirty = true
				vector++
			case dirty && !strings.HasPrefix(mnemonic, "v") && strings.Contains(insn, "%xmm"):
				t.Errorf("%s: legacy SSE with dirty upper halves: %s", k, strings.TrimSpace(line))
			}
		}
		if vector == 0 {
			t.Errorf("%s: no vector instruction found in the disassembly (%d bytes): is the kernel still built?", k, len(out))
		}
	}
}
