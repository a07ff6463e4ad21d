package filter

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Load installs prog on the calling thread. The caller has set no_new_privs
// or still holds CAP_SYS_ADMIN, keeps the thread locked and calls execve on
// it next: the filter is inherited across execve.
func Load(prog *Program) error {
	if prog == nil || len(prog.Instructions) == 0 {
		return errors.New("seccomp: load: empty program")
	}
	filters := make([]unix.SockFilter, len(prog.Instructions))
	for i, in := range prog.Instructions {
		filters[i] = unix.SockFilter{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(prog.Flags), uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return os.NewSyscallError("seccomp(SET_MODE_FILTER)", errno)
	}
	return nil
}
