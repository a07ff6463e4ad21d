package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// attack runs one escape attempt and prints what it reached, one
// "key=value" per line; the test judges the result on the host.
func attack(mode string, args []string) int {
	switch mode {
	case "chroot-escape":
		// The classic: chroot into a subdirectory, walk ".." past the old
		// root (a chroot does not move the cwd), chroot to where we landed.
		// A process whose root is a chroot in the host's mount namespace
		// reaches the host this way; one that is in the container's mount
		// namespace stays in the container.
		if err := os.MkdirAll("/tmp/jail", 0o755); err != nil {
			fmt.Printf("mkdir=%v\n", err)
		}
		report("chroot-jail", syscall.Chroot("/tmp/jail"))
		for range 64 {
			syscall.Chdir("..")
		}
		report("chroot-dot", syscall.Chroot("."))
		return tryHost(args)
	case "setns-self":
		// With CAP_SYS_ADMIN: joining one's own mount namespace resets the
		// root to that namespace's root; for a process left in the host's
		// namespace, that is the host's "/". A thread must not share its
		// filesystem information to join a mount namespace.
		runtime.LockOSThread()
		report("unshare-fs", syscall.Unshare(syscall.CLONE_FS))
		fd, err := syscall.Open("/proc/self/ns/mnt", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("open-ns=%v\n", err)
		} else {
			_, _, e := syscall.RawSyscall(308 /* setns */, uintptr(fd), syscall.CLONE_NEWNS, 0)
			fmt.Printf("setns=%s\n", errno(0, 0, e))
		}
		return tryHost(args)
	}
	fmt.Printf("unknown attack %q\n", mode)
	return 2
}

// tryHost reads args[0] and creates args[1], absolute host paths the test
// made, and lists the root the process ended up in.
func tryHost(args []string) int {
	if len(args) != 2 {
		fmt.Println("want: <host file to read> <host file to create>")
		return 2
	}
	if b, err := os.ReadFile(args[0]); err != nil {
		fmt.Printf("read=%v\n", err)
	} else {
		fmt.Printf("read=ok %s\n", strings.TrimSpace(string(b)))
	}
	if err := os.WriteFile(args[1], []byte("written from a container\n"), 0o644); err != nil {
		fmt.Printf("write=%v\n", err)
	} else {
		fmt.Println("write=ok")
	}
	var names []string
	if ents, err := os.ReadDir("/"); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	fmt.Printf("root=%s\n", strings.Join(names, ","))
	mnt, err := os.Readlink("/proc/self/ns/mnt")
	fmt.Printf("mntns=%s%v\n", mnt, errOrNil(err))
	return 0
}

func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

func report(key string, err error) {
	if err != nil {
		fmt.Printf("%s=%v\n", key, err)
		return
	}
	fmt.Printf("%s=ok\n", key)
}
