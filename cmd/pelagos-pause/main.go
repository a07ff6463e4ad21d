// Command pelagos-pause holds a pod's namespaces and, as PID 1 of a shared
// PID namespace, reaps orphans. It is written in assembly (pause_amd64.s,
// pause_arm64.s) and linked with -ldflags '-E main.entry': the Go runtime
// is linked in but never started, so the process makes a dozen system
// calls, locks itself down and sleeps in about 24 kB of memory. The agent
// embeds it and runs it from a sealed copy (runtime/linux/helperbin).
//
// In order: close every descriptor above 4 (what the agent itself
// inherited); fchdir(3) + chroot(".") + close(3), fd 3 being an empty
// read-only tmpfs the agent made and never attached anywhere; every
// capability dropped (bounding set, ambient, then capset to zero);
// PR_SET_DUMPABLE 0; PR_SET_NO_NEW_PRIVS 1; every signal blocked; a seccomp
// filter that allows only what the loop below needs and kills the process
// on anything else; close(4), the agent's readiness pipe. A failure before
// that exits with the step's number (ExitStep), which the agent reports.
// Then it waits in rt_sigtimedwait: SIGCHLD reaps every exited child,
// SIGTERM or SIGINT ends it.
package main

// entry is the process's entry point. It never returns.
func entry()

// filterAddr returns the address of the seccomp program in the binary's
// data, so that tests can compare it with the program they expect.
func filterAddr() *[filterLen]sockFilter

// sockFilter is struct sock_filter.
type sockFilter struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// filterLen is the number of instructions of the filter.
const filterLen = 12

// Exit statuses of a pause that failed to lock itself down, by step; the
// agent turns them into messages (keep runtime/linux in step).
const (
	exitCloseRange = 10
	exitFchdir     = 11
	exitChroot     = 12
	exitCloseRoot  = 13
	exitBounding   = 14
	exitAmbient    = 15
	exitCapset     = 16
	exitDumpable   = 17
	exitNoNewPrivs = 18
	exitSigmask    = 19
	exitSeccomp    = 20
	exitCloseReady = 21
)

// main runs only in a binary linked without -E main.entry (the tests'):
// such a binary must not be used as the pause.
func main() { panic("pelagos-pause: link with -ldflags '-E main.entry'") }
