// Package seccomp turns OCI/Docker seccomp profiles into classic BPF programs
// in pure Go. The compiler builds and is tested on any OS; the profile
// sources (moby's default, Localhost files) are Linux-only, and loading a
// program is the filter package's job.
//
// The compiler fails closed: an action, operator, architecture or flag it
// cannot express is an error, never a rule silently dropped or widened.
// Unknown syscall names are ignored only in rules whose action allows the
// call (the default action then denies it, as libseccomp does); in any other
// rule they are an error, because dropping a deny rule would widen the filter.
package seccomp

import (
	"errors"
	"fmt"
	"slices"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/seccomp/filter"
)

// ErrUnsupported marks profile content the compiler cannot express.
var ErrUnsupported = errors.New("cannot be expressed by the seccomp compiler")

// Instruction is one classic BPF instruction, laid out as struct sock_filter.
type Instruction = filter.Instruction

// Program is a compiled filter plus the seccomp(2) flags it wants; the
// filter package loads it.
type Program = filter.Program

// BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h),
// spelled out so the compiler builds on any OS.
const (
	opLdAbsW = 0x20 // BPF_LD|BPF_W|BPF_ABS
	opAndK   = 0x54 // BPF_ALU|BPF_AND|BPF_K
	opJeqK   = 0x15
	opJgtK   = 0x25
	opJgeK   = 0x35
	opRetK   = 0x06

	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000

	offNr   = 0
	offArch = 4
	offArgs = 16

	// maxInstructions is BPF_MAXINSNS: the kernel refuses longer programs.
	maxInstructions = 4096

	flagLog       = 2 // SECCOMP_FILTER_FLAG_LOG
	flagSpecAllow = 4 // SECCOMP_FILTER_FLAG_SPEC_ALLOW

	errnoEPERM  = 1
	errnoENOSYS = 38
	x32Bit      = 0x40000000
)

// action returns the seccomp return value for an OCI action.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	switch a {
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActErrno:
		e := uint(errnoEPERM)
		if errnoRet != nil {
			e = *errnoRet
		}
		if e > 0xffff {
			return 0, fmt.Errorf("errno %d: %w", e, ErrUnsupported)
		}
		return retErrno | uint32(e), nil
	case specs.ActKill, specs.ActKillThread:
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActLog:
		return retLog, nil
	default:
		// TRACE needs a tracer and NOTIFY a listener; neither exists here.
		return 0, fmt.Errorf("action %q: %w", a, ErrUnsupported)
	}
}

// permissive reports whether a return value lets the call run.
func permissive(ret uint32) bool { return ret == retAllow || ret == retLog }

// asm is a tiny forward-only assembler with labels for conditional jumps.
type asm struct {
	ins    []Instruction
	fixups []fixup
	labels map[int]int // label -> instruction index
	next   int
}

type fixup struct {
	at       int
	jt, jf   int // label ids; -1 = fall through
	hasLabel bool
}

func newAsm() *asm { return &asm{labels: map[int]int{}} }

func (a *asm) label() int { a.next++; return a.next }

func (a *asm) set(l int) { a.labels[l] = len(a.ins) }

func (a *asm) emit(code uint16, k uint32) { a.ins = append(a.ins, Instruction{Code: code, K: k}) }

// jump emits a conditional jump to label jt when true and jf when false
// (-1: fall through to the next instruction).
func (a *asm) jump(code uint16, k uint32, jt, jf int) {
	a.fixups = append(a.fixups, fixup{at: len(a.ins), jt: jt, jf: jf})
	a.emit(code, k)
}

func (a *asm) resolve() error {
	for _, f := range a.fixups {
		for _, p := range []struct {
			l   int
			dst *uint8
		}{{f.jt, &a.ins[f.at].Jt}, {f.jf, &a.ins[f.at].Jf}} {
			if p.l < 0 {
				continue
			}
			target, ok := a.labels[p.l]
			if !ok {
				return fmt.Errorf("internal: unresolved label %d", p.l)
			}
			off := target - f.at - 1
			if off < 0 || off > 255 {
				return fmt.Errorf("jump of %d instructions: %w", off, ErrUnsupported)
			}
			*p.dst = uint8(off)
		}
	}
	return nil
}

// cond emits one argument comparison; it falls through when the comparison
// holds and jumps to fail otherwise. Arguments are 64 bits, compared as two
// 32-bit halves (little-endian: low word first) like libseccomp does.
func (a *asm) cond(arg specs.LinuxSeccompArg, fail int) error {
	if arg.Index > 5 {
		return fmt.Errorf("argument index %d: %w", arg.Index, ErrUnsupported)
	}
	lo := uint32(offArgs + 8*arg.Index)
	hi := lo + 4
	vlo, vhi := uint32(arg.Value), uint32(arg.Value>>32)
	ok := a.label()
	switch arg.Op {
	case specs.OpEqualTo:
		a.emit(opLdAbsW, hi)
		a.jump(opJeqK, vhi, -1, fail)
		a.emit(opLdAbsW, lo)
		a.jump(opJeqK, vlo, -1, fail)
	case specs.OpNotEqual:
		a.emit(opLdAbsW, hi)
		a.jump(opJeqK, vhi, -1, ok)
		a.emit(opLdAbsW, lo)
		a.jump(opJeqK, vlo, fail, -1)
	case specs.OpMaskedEqual:
		// (arg & Value) == ValueTwo
		mlo, mhi := vlo, vhi
		dlo, dhi := uint32(arg.ValueTwo), uint32(arg.ValueTwo>>32)
		a.emit(opLdAbsW, hi)
		a.emit(opAndK, mhi)
		a.jump(opJeqK, dhi, -1, fail)
		a.emit(opLdAbsW, lo)
		a.emit(opAndK, mlo)
		a.jump(opJeqK, dlo, -1, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.emit(opLdAbsW, hi)
		a.jump(opJgtK, vhi, ok, -1)
		a.jump(opJeqK, vhi, -1, fail)
		a.emit(opLdAbsW, lo)
		op := uint16(opJgtK)
		if arg.Op == specs.OpGreaterEqual {
			op = opJgeK
		}
		a.jump(op, vlo, -1, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.emit(opLdAbsW, hi)
		a.jump(opJgeK, vhi, -1, ok) // hi < vhi: holds
		a.jump(opJeqK, vhi, -1, fail)
		a.emit(opLdAbsW, lo)
		if arg.Op == specs.OpLessThan {
			a.jump(opJgeK, vlo, fail, -1)
		} else {
			a.jump(opJgtK, vlo, fail, -1)
		}
	default:
		return fmt.Errorf("operator %q: %w", arg.Op, ErrUnsupported)
	}
	a.set(ok)
	return nil
}

type rule struct {
	nr   uint32
	ret  uint32
	args []specs.LinuxSeccompArg
}

// Compile turns a profile into a BPF program for x86_64. Calls from other
// architectures kill the process and x32 calls get ENOSYS, so no ABI can
// bypass the rules.
func Compile(p *specs.LinuxSeccomp) (*Program, error) {
	if p == nil {
		return nil, errors.New("seccomp: nil profile")
	}
	info := arch.X86_64
	for _, a := range p.Architectures {
		switch a {
		case specs.ArchX86_64, specs.ArchX86, specs.ArchX32:
			// Only the native ABI is allowed by the program below; the
			// others are refused outright, which is stricter.
		default:
			return nil, fmt.Errorf("seccomp: architecture %q: %w", a, ErrUnsupported)
		}
	}
	var flags uint32
	for _, f := range p.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= flagLog
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= flagSpecAllow
		default:
			return nil, fmt.Errorf("seccomp: flag %q: %w", f, ErrUnsupported)
		}
	}
	if p.ListenerPath != "" {
		return nil, fmt.Errorf("seccomp: listenerPath: %w", ErrUnsupported)
	}
	defRet, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp: defaultAction: %w", err)
	}

	var deny, allow []rule
	for i, sc := range p.Syscalls {
		ret, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp: syscalls[%d]: %w", i, err)
		}
		seen := map[uint]bool{}
		for _, a := range sc.Args {
			if seen[a.Index] && !permissive(ret) {
				// runc ORs repeated comparisons of one argument; ANDing them
				// here would narrow a deny rule, i.e. widen the filter.
				return nil, fmt.Errorf("seccomp: syscalls[%d]: repeated argument %d in a non-allow rule: %w", i, a.Index, ErrUnsupported)
			}
			seen[a.Index] = true
		}
		for _, name := range sc.Names {
			nr, ok := info.SyscallNames[name]
			if !ok {
				if permissive(ret) {
					continue
				}
				return nil, fmt.Errorf("seccomp: syscalls[%d]: unknown syscall %q in a %s rule: %w", i, name, sc.Action, ErrUnsupported)
			}
			r := rule{nr: uint32(nr), ret: ret, args: sc.Args}
			if permissive(ret) {
				allow = append(allow, r)
			} else {
				deny = append(deny, r)
			}
		}
	}
	// Denying rules are checked first, so when a call matches both a deny
	// and an allow rule the deny wins: the conservative reading.
	rules := append(deny, allow...)
	if permissive(defRet) {
		// With a permissive default only the deny rules matter.
		rules = deny
	}

	a := newAsm()
	// Header: wrong architecture kills, x32 gets ENOSYS; both returns sit
	// right after their test because conditional jumps reach 255 at most.
	a.emit(opLdAbsW, offArch)
	a.ins = append(a.ins, Instruction{Code: opJeqK, Jt: 1, Jf: 0, K: uint32(info.ID)})
	a.emit(opRetK, retKillProcess)
	a.emit(opLdAbsW, offNr)
	a.ins = append(a.ins, Instruction{Code: opJgeK, Jt: 0, Jf: 1, K: x32Bit})
	a.emit(opRetK, retErrno|errnoENOSYS)
	for _, r := range rules {
		if len(r.args) == 0 {
			// jeq nr, 0, 1; ret action
			a.ins = append(a.ins, Instruction{Code: opJeqK, Jt: 0, Jf: 1, K: r.nr})
			a.emit(opRetK, r.ret)
			continue
		}
		skip, fail := a.label(), a.label()
		a.jump(opJeqK, r.nr, -1, skip)
		args := slices.Clone(r.args)
		for _, arg := range args {
			if err := a.cond(arg, fail); err != nil {
				return nil, fmt.Errorf("seccomp: syscall %s: %w", info.SyscallNumbers[int(r.nr)], err)
			}
		}
		a.emit(opRetK, r.ret)
		a.set(fail)
		a.emit(opLdAbsW, offNr)
		a.set(skip)
	}
	a.emit(opRetK, defRet)
	if err := a.resolve(); err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	if len(a.ins) > maxInstructions {
		return nil, fmt.Errorf("seccomp: program of %d instructions exceeds %d: %w", len(a.ins), maxInstructions, ErrUnsupported)
	}
	return &Program{Instructions: a.ins, Flags: flags}, nil
}
