// Command ctrprobe runs inside test containers and reports, one "key=value"
// per line, what the container sees: the security fields of
// /proc/self/status and the errno of calls the default seccomp profile must
// refuse. It is compiled statically at test time.
//
// With an argument it plays an attacker instead (see attacks.go): it tries
// an escape and reports what it reached, so that the test can check on the
// host that nothing was.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

func errno(_, _ uintptr, e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return e.Error()
}

func main() {
	if len(os.Args) > 1 {
		os.Exit(attack(os.Args[1], os.Args[2:]))
	}
	f, err := os.Open("/proc/self/status")
	if err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch k {
			case "CapEff", "CapBnd", "CapInh", "CapAmb", "CapPrm", "NoNewPrivs", "Seccomp", "Uid", "Gid", "Groups":
				fmt.Printf("%s=%s\n", k, strings.Join(strings.Fields(v), " "))
			}
		}
		f.Close()
	}
	const keyctlGetKeyringID = 0
	fmt.Printf("keyctl=%s\n", errno(syscall.Syscall(syscall.SYS_KEYCTL, keyctlGetKeyringID, ^uintptr(0), 0)))
	var attr [128]byte
	fmt.Printf("bpf=%s\n", errno(syscall.Syscall(321 /* bpf */, 0, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))))
	fmt.Printf("unshare=%s\n", errno(syscall.Syscall(syscall.SYS_UNSHARE, syscall.CLONE_NEWNS|syscall.CLONE_NEWUTS, 0, 0)))
	tmp, _ := syscall.BytePtrFromString("/tmp")
	none, _ := syscall.BytePtrFromString("tmpfs")
	fmt.Printf("mount=%s\n", errno(syscall.Syscall6(syscall.SYS_MOUNT, uintptr(unsafe.Pointer(none)), uintptr(unsafe.Pointer(tmp)), uintptr(unsafe.Pointer(none)), 0, 0, 0)))
	ents, _ := os.ReadDir("/proc/self/fd")
	var fds []string
	for _, e := range ents {
		fds = append(fds, e.Name())
	}
	fmt.Printf("fds=%s\n", strings.Join(fds, ","))
}
