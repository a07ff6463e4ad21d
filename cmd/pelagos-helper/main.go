// The runtime must not keep a descriptor of the host's cgroup files open
// (to follow the CPU limit): an init would carry it into the container.
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command pelagos-helper is the agent's helper for every container: the
// shim that supervises one container, and the init that builds its root
// filesystem and execs the workload (or a process exec'd into it). The
// agent embeds this binary and runs it only from a sealed copy; the mode is
// argv[0]. It imports only what those jobs need, so that it starts in about
// a millisecond and keeps little memory (TestHelperDependencies).
package main

import (
	"fmt"
	"os"
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
)

// The main goroutine keeps the main thread: goroutines that enter a pod's
// namespaces lock their thread and end without unlocking it, so that Go
// discards the thread, which it cannot do with the main one.
func init() { goruntime.LockOSThread() }

// No memory profiling in a helper: nothing reads the profile.
func init() { goruntime.MemProfileRate = 0 }

func main() { os.Exit(run(os.Args)) }

func run(args []string) int {
	// Run from /proc/self/fd/N, the process would be called "N" in ps.
	setName(args[0])
	switch args[0] {
	case shim.DaemonName:
		return shim.DaemonMain(args)
	case shim.LauncherName:
		return shim.LauncherMain(args)
	case nsinit.Name:
		return nsinit.Main()
	}
	exe, _ := os.Readlink("/proc/self/exe")
	fmt.Fprintf(os.Stderr, "pelagos-helper: started as %q (from %s): only the pelagos agent runs this\n", args[0], exe)
	return 2
}

// setName makes the calling (main) thread's name, which ps shows as the
// process's, the helper's mode.
func setName(name string) {
	b := append([]byte(name), 0)
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}
