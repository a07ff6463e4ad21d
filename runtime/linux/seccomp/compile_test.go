package seccomp

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// run interprets prog the way the kernel does for one call.
func run(t *testing.T, prog *Program, archID uint32, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], archID)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog.Instructions); pc++ {
		in := prog.Instructions[pc]
		switch in.Code {
		case opLdAbsW:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case opAndK:
			acc &= in.K
		case opRetK:
			return in.K
		case opJeqK, opJgtK, opJgeK:
			var ok bool
			switch in.Code {
			case opJeqK:
				ok = acc == in.K
			case opJgtK:
				ok = acc > in.K
			case opJgeK:
				ok = acc >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("unknown opcode %#x at %d", in.Code, pc)
		}
	}
	t.Fatal("program fell off the end")
	return 0
}

func nr(t *testing.T, name string) uint32 {
	n, ok := arch.X86_64.SyscallNames[name]
	if !ok {
		t.Fatalf("no syscall %q", name)
	}
	return uint32(n)
}

var x86_64 = uint32(arch.X86_64.ID)

func uintp(v uint) *uint { return &v }

func TestCompileOperators(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintp(errnoEPERM),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write"}, Action: specs.ActAllow},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 40, Op: specs.OpNotEqual}}},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0x7e020000, ValueTwo: 0, Op: specs.OpMaskedEqual}}},
			{Names: []string{"kill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 10, Op: specs.OpLessThan}}},
			{Names: []string{"tkill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 10, Op: specs.OpLessEqual}}},
			{Names: []string{"tgkill"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 1 << 33, Op: specs.OpGreaterThan}}},
			{Names: []string{"dup3"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 2, Value: 1 << 33, Op: specs.OpGreaterEqual}}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uintp(errnoENOSYS)},
			{Names: []string{"no_such_call_allowed"}, Action: specs.ActAllow},
		},
	}
	prog, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	eperm := uint32(retErrno | errnoEPERM)
	cases := []struct {
		call string
		args [6]uint64
		want uint32
	}{
		{"read", [6]uint64{}, retAllow},
		{"write", [6]uint64{}, retAllow},
		{"mount", [6]uint64{}, eperm},
		{"personality", [6]uint64{0xffffffff}, retAllow},
		{"personality", [6]uint64{0x1_ffffffff}, eperm},
		{"personality", [6]uint64{8}, eperm},
		{"socket", [6]uint64{2}, retAllow},
		{"socket", [6]uint64{40}, eperm},
		{"socket", [6]uint64{40 | 1<<32}, retAllow},
		{"clone", [6]uint64{0x11}, retAllow},
		{"clone", [6]uint64{0x10000000}, eperm}, // CLONE_NEWUSER
		{"clone", [6]uint64{0x20000}, eperm},    // CLONE_NEWNS
		{"kill", [6]uint64{0, 9}, retAllow},
		{"kill", [6]uint64{0, 10}, eperm},
		{"kill", [6]uint64{0, 1 << 32}, eperm},
		{"tkill", [6]uint64{0, 10}, retAllow},
		{"tkill", [6]uint64{0, 11}, eperm},
		{"tgkill", [6]uint64{0, 0, 1<<33 + 1}, retAllow},
		{"tgkill", [6]uint64{0, 0, 1 << 33}, eperm},
		{"tgkill", [6]uint64{0, 0, 1 << 34}, retAllow},
		{"tgkill", [6]uint64{0, 0, 1<<32 + 5}, eperm},
		{"dup3", [6]uint64{0, 0, 1 << 33}, retAllow},
		{"dup3", [6]uint64{0, 0, 1<<33 - 1}, eperm},
		{"clone3", [6]uint64{}, retErrno | errnoENOSYS},
	}
	for _, tc := range cases {
		if got := run(t, prog, x86_64, nr(t, tc.call), tc.args); got != tc.want {
			t.Errorf("%s%v = %#x, want %#x", tc.call, tc.args, got, tc.want)
		}
	}
	if got := run(t, prog, 0x40000003 /* i386 */, nr(t, "read"), [6]uint64{}); got != retKillProcess {
		t.Errorf("foreign arch = %#x, want kill", got)
	}
	if got := run(t, prog, x86_64, x32Bit|nr(t, "read"), [6]uint64{}); got != retErrno|errnoENOSYS {
		t.Errorf("x32 call = %#x, want ENOSYS", got)
	}
}

func TestCompileFailsClosed(t *testing.T) {
	cases := map[string]*specs.LinuxSeccomp{
		"notify action": {DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}},
		"trace default": {DefaultAction: specs.ActTrace},
		"unknown deny under allow default": {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"frobnicate"}, Action: specs.ActErrno}}},
		"bad operator": {DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_WAT"}}}}},
		"arg index 6": {DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}},
		"repeated arg in deny": {DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 2, Op: specs.OpEqualTo}}}}},
		"foreign arch":   {DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchAARCH64}},
		"listener":       {DefaultAction: specs.ActErrno, ListenerPath: "/run/x.sock"},
		"unknown flag":   {DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW_LISTENER"}},
		"huge errno":     {DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(1 << 20)},
		"unknown action": {DefaultAction: "SCMP_ACT_MAYBE"},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile(p); !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Compile = %v, want ErrUnsupported", err)
			}
		})
	}
}

func TestCompilePermissiveDefault(t *testing.T) {
	prog, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mount"}, Action: specs.ActErrno},
		{Names: []string{"read"}, Action: specs.ActAllow},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, prog, x86_64, nr(t, "mount"), [6]uint64{}); got != retErrno|errnoEPERM {
		t.Errorf("mount = %#x, want EPERM", got)
	}
	if got := run(t, prog, x86_64, nr(t, "getpid"), [6]uint64{}); got != retAllow {
		t.Errorf("getpid = %#x, want allow", got)
	}
}

func FuzzCompile(f *testing.F) {
	f.Add(uint8(0), uint64(5), uint64(7), uint8(3), "read")
	f.Add(uint8(6), uint64(0x7e020000), uint64(0), uint8(0), "clone")
	ops := []specs.LinuxSeccompOperator{specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
		specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual}
	f.Fuzz(func(t *testing.T, op uint8, v1, v2 uint64, idx uint8, name string) {
		if name == "read" || name == "mount" {
			// An unconditional rule for the same call would mask the
			// comparison under test.
			name = "getpid"
		}
		arg := specs.LinuxSeccompArg{Index: uint(idx % 6), Value: v1, ValueTwo: v2, Op: ops[int(op)%len(ops)]}
		prog, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{arg}},
			{Names: []string{name}, Action: specs.ActAllow},
		}})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever the argument, the program must terminate and only ever
		// answer allow or EPERM for read, and EPERM for a call it never named.
		for _, a := range []uint64{0, v1, v2, v1 & v2, v1 + 1, v1 - 1, ^uint64(0)} {
			got := run(t, prog, x86_64, nr(t, "read"), [6]uint64{a, a, a, a, a, a})
			if got != retAllow && got != retErrno|errnoEPERM {
				t.Fatalf("read(%#x) = %#x", a, got)
			}
			want := uint32(retAllow)
			switch arg.Op {
			case specs.OpEqualTo:
				if a != v1 {
					want = retErrno | errnoEPERM
				}
			case specs.OpNotEqual:
				if a == v1 {
					want = retErrno | errnoEPERM
				}
			case specs.OpLessThan:
				if !(a < v1) {
					want = retErrno | errnoEPERM
				}
			case specs.OpLessEqual:
				if !(a <= v1) {
					want = retErrno | errnoEPERM
				}
			case specs.OpGreaterThan:
				if !(a > v1) {
					want = retErrno | errnoEPERM
				}
			case specs.OpGreaterEqual:
				if !(a >= v1) {
					want = retErrno | errnoEPERM
				}
			case specs.OpMaskedEqual:
				if a&v1 != v2 {
					want = retErrno | errnoEPERM
				}
			}
			if got != want {
				t.Fatalf("%s %#x vs %#x/%#x: got %#x, want %#x", arg.Op, a, v1, v2, got, want)
			}
		}
		if got := run(t, prog, x86_64, nr(t, "mount"), [6]uint64{}); got != retErrno|errnoEPERM {
			t.Fatalf("mount = %#x", got)
		}
	})
}
