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

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nsinit"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/shim"
)

// The main goroutine keeps the main thread: goroutines that enter a pod's
// namespaces lock their thread and end without unlocking it, so that Go
// discards the thread, which it cannot do with the main one.
func init() { goruntime.LockOSThread() }

func main() { os.Exit(run(os.Args)) }

func run(args []string) int {
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
