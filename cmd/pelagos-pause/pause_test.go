package main

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"unsafe"

	"golang.org/x/net/bpf"
)

// The filter's expected behaviour, written independently of the assembly:
// the architecture, then the wait loop's seven calls, else kill.
type arch struct {
	goarch   string
	audit    uint32
	allowed  map[string]uint32 // the calls the wait loop makes
	refused  map[string]uint32 // a few it must never be allowed to make
	x32Style bool              // x86-64 also carries x32 calls under its audit arch
}

var arches = []arch{
	{
		goarch: "amd64", audit: 0xc000003e, x32Style: true,
		allowed: map[string]uint32{"rt_sigtimedwait": 128, "wait4": 61, "exit": 60, "exit_group": 231, "rt_sigreturn": 15, "restart_syscall": 219, "close": 3},
		refused: map[string]uint32{"read": 0, "write": 1, "open": 2, "getpid": 39, "execve": 59, "kill": 62, "ptrace": 101, "openat": 257, "setns": 308},
	},
	{
		goarch: "arm64", audit: 0xc00000b7,
		allowed: map[string]uint32{"rt_sigtimedwait": 137, "wait4": 260, "exit": 93, "exit_group": 94, "rt_sigreturn": 139, "restart_syscall": 128, "close": 57},
		refused: map[string]uint32{"read": 63, "write": 64, "openat": 56, "getpid": 172, "execve": 221, "kill": 129, "ptrace": 117, "setns": 268},
	},
}

const (
	retKill  = 0x80000000 // SECCOMP_RET_KILL_PROCESS
	retAllow = 0x7fff0000 // SECCOMP_RET_ALLOW
)

// expected builds the program with x/net/bpf, in the order the assembly
// lays it out.
func expected(t *testing.T, a arch) []bpf.RawInstruction {
	t.Helper()
	order := []string{"rt_sigtimedwait", "wait4", "exit", "exit_group", "rt_sigreturn", "restart_syscall", "close"}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.audit, SkipFalse: uint8(len(order) + 1)},
		bpf.LoadAbsolute{Off: 0, Size: 4},
	}
	for i, name := range order {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: a.allowed[name], SkipTrue: uint8(len(order) - i)})
	}
	prog = append(prog, bpf.RetConstant{Val: retKill}, bpf.RetConstant{Val: retAllow})
	raw, err := bpf.Assemble(prog)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func decode(b []byte) []bpf.RawInstruction {
	var out []bpf.RawInstruction
	for i := 0; i+8 <= len(b); i += 8 {
		out = append(out, bpf.RawInstruction{
			Op: binary.LittleEndian.Uint16(b[i:]), Jt: b[i+2], Jf: b[i+3], K: binary.LittleEndian.Uint32(b[i+4:]),
		})
	}
	return out
}

// verdict runs the program on a seccomp_data for nr and audit arch. The VM
// loads words big-endian; the kernel hands them over in the machine's
// order, which the program never depends on beyond these two loads.
func verdict(t *testing.T, prog []bpf.RawInstruction, nr, audit uint32) uint32 {
	t.Helper()
	var insns []bpf.Instruction
	for _, r := range prog {
		insns = append(insns, r.Disassemble())
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], audit)
	v, err := vm.Run(data)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

func checkProgram(t *testing.T, a arch, got []bpf.RawInstruction) {
	t.Helper()
	want := expected(t, a)
	if len(got) != len(want) {
		t.Fatalf("%s: %d instructions, want %d", a.goarch, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: instruction %d = %+v, want %+v", a.goarch, i, got[i], want[i])
		}
	}
	for name, nr := range a.allowed {
		if v := verdict(t, got, nr, a.audit); v != retAllow {
			t.Errorf("%s: %s (%d) gets %#x, want allow", a.goarch, name, nr, v)
		}
	}
	for name, nr := range a.refused {
		if v := verdict(t, got, nr, a.audit); v != retKill {
			t.Errorf("%s: %s (%d) gets %#x, want kill", a.goarch, name, nr, v)
		}
	}
	for _, other := range arches {
		if other.audit == a.audit {
			continue
		}
		// The same number under another architecture is another call.
		if v := verdict(t, got, a.allowed["close"], other.audit); v != retKill {
			t.Errorf("%s: a call from %s gets %#x, want kill", a.goarch, other.goarch, v)
		}
	}
	if a.x32Style {
		const x32 = 0x40000000 // __X32_SYSCALL_BIT
		if v := verdict(t, got, x32|a.allowed["close"], a.audit); v != retKill {
			t.Errorf("%s: an x32 close gets %#x, want kill", a.goarch, v)
		}
	}
}

// TestFilter compares the program in this build's data (the assembly of
// the running architecture) with the one x/net/bpf assembles.
func TestFilter(t *testing.T) {
	for _, a := range arches {
		if a.goarch != goruntime.GOARCH {
			continue
		}
		p := filterAddr()
		b := unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
		checkProgram(t, a, decode(b))
		return
	}
	t.Fatalf("no pause for %s", goruntime.GOARCH)
}

// TestEveryArchitectureLinks builds the pause for each architecture as
// make helpers does (but keeping symbols) and checks that its entry point
// is main.entry and that the filter in its data is the expected one: the
// arm64 assembly is proved to assemble, link and carry the right program
// on an amd64 machine, and the other way round.
func TestEveryArchitectureLinks(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	for _, a := range arches {
		t.Run(a.goarch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "pause")
			cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-E main.entry", "-o", out, ".")
			cmd.Env = append(os.Environ(), "GOARCH="+a.goarch, "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			syms, err := f.Symbols()
			if err != nil {
				t.Fatal(err)
			}
			// The assembly body is main.entry.abi0 (main.entry is the
			// wrapper Go calls it through); -E main.entry resolves to it.
			var entry, filter *elf.Symbol
			for i := range syms {
				switch syms[i].Name {
				case "main.entry.abi0":
					entry = &syms[i]
				case "main.filter":
					filter = &syms[i]
				}
			}
			if entry == nil || filter == nil {
				t.Fatalf("symbols main.entry %v, main.filter %v", entry != nil, filter != nil)
			}
			if f.Entry != entry.Value {
				t.Errorf("ELF entry %#x, main.entry is at %#x", f.Entry, entry.Value)
			}
			sec := f.Sections[filter.Section]
			data, err := sec.Data()
			if err != nil {
				t.Fatal(err)
			}
			off := filter.Value - sec.Addr
			checkProgram(t, a, decode(data[off:off+filter.Size]))
		})
	}
}
