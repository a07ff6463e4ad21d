// Package reexec lets the agent binary serve as its own helper processes
// (pause, shim, container init): a helper is the binary re-executed with a
// registered name as argv[0]. main calls Init before anything else; tests that
// start helpers call it from TestMain, so the test binary can play the part.
package reexec

import (
	"fmt"
	"os"
	"os/exec"
)

var handlers = map[string]func(){}

// Register makes fn the entry point for argv[0] == name. It panics on a
// duplicate name: that is a programming error caught at start-up.
func Register(name string, fn func()) {
	if _, dup := handlers[name]; dup {
		panic(fmt.Sprintf("reexec: %q registered twice", name))
	}
	handlers[name] = fn
}

// Init runs the handler registered for os.Args[0], if any, and reports whether
// it did. A handler normally exits the process itself.
func Init() bool {
	fn, ok := handlers[os.Args[0]]
	if !ok {
		return false
	}
	fn()
	return true
}

// Self is the path used to re-execute the running binary. /proc/self/exe still
// works after the binary on disk has been replaced by an upgrade.
const Self = "/proc/self/exe"

// Command returns a command that runs the helper registered as name.
func Command(name string, args ...string) *exec.Cmd {
	return &exec.Cmd{Path: Self, Args: append([]string{name}, args...)}
}
