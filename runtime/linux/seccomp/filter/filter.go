// Package filter is a compiled seccomp program and its loader: what a
// helper process needs of seccomp. Compiling profiles, which pulls moby's
// profiles and the syscall tables, stays in the seccomp package, so the
// small helper binary does not carry them.
package filter

// Instruction is one classic BPF instruction, laid out as struct sock_filter.
type Instruction struct {
	Code uint16
	Jt   uint8
	Jf   uint8
	K    uint32
}

// Program is a compiled filter plus the seccomp(2) flags it wants.
type Program struct {
	Instructions []Instruction
	Flags        uint32
}
