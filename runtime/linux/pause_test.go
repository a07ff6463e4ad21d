package linux

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	rt "github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
)

func statusFields(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestPauseLockedDown reads from the host what a sandbox's pause holds:
// no capability in any set, no_new_privs, a seccomp filter, a root and
// working directory that are an empty read-only tmpfs, nothing open but
// /dev/null, a sealed copy as its executable, and an oom_score_adj no
// higher than the agent's.
func TestPauseLockedDown(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	ownOOM, err := oomscore.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, pidNS := range []rt.NamespaceMode{rt.NamespaceContainer, rt.NamespacePod} {
		t.Run("pid namespace "+string(pidNS), func(t *testing.T) {
			cfg := podConfig("locked-" + strings.ToLower(string(pidNS)))
			cfg.Namespaces.PID = pidNS
			sb, err := r.CreateSandbox(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			pid := sb.PausePID
			st := statusFields(t, pid)
			for k, want := range map[string]string{
				"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
				"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
				"Name": PauseName,
			} {
				if st[k] != want {
					t.Errorf("%s = %q, want %q", k, st[k], want)
				}
			}
			// Every signal is blocked but SIGKILL and SIGSTOP, which cannot
			// be, and, while it waits for them in rt_sigtimedwait, SIGINT,
			// SIGTERM and SIGCHLD.
			if st["SigBlk"] != "fffffffffffabefd" {
				t.Errorf("SigBlk = %q, want fffffffffffabefd", st["SigBlk"])
			}
			root := fmt.Sprintf("/proc/%d/root", pid)
			if ents, err := os.ReadDir(root); err != nil || len(ents) != 0 {
				t.Errorf("pause root: %d entries, %v; want an empty directory", len(ents), err)
			}
			var fs unix.Statfs_t
			if err := unix.Statfs(root, &fs); err != nil {
				t.Fatal(err)
			}
			if fs.Type != unix.TMPFS_MAGIC || fs.Flags&unix.ST_RDONLY == 0 {
				t.Errorf("pause root: filesystem %#x flags %#x, want a read-only tmpfs", fs.Type, fs.Flags)
			}
			if err := os.WriteFile(root+"/written", nil, 0o644); err == nil {
				t.Errorf("created a file in the pause's root")
			}
			var rs, cs unix.Stat_t
			unix.Stat(root, &rs)
			unix.Stat(fmt.Sprintf("/proc/%d/cwd", pid), &cs)
			if rs.Dev != cs.Dev || rs.Ino != cs.Ino {
				t.Errorf("pause cwd is not its root")
			}
			ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				t.Fatal(err)
			}
			var fds []string
			for _, en := range ents {
				fds = append(fds, en.Name())
				if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, en.Name())); l != os.DevNull {
					t.Errorf("pause fd %s -> %s, want %s", en.Name(), l, os.DevNull)
				}
			}
			if !slices.Equal(fds, []string{"0", "1", "2"}) {
				t.Errorf("pause fds %v, want 0 1 2", fds)
			}
			if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); !strings.HasPrefix(exe, "/memfd:"+PauseName) {
				t.Errorf("pause runs %q, want its sealed memfd", exe)
			}
			if v, _ := oomscore.Get(pid); v > ownOOM || v < pauseOOMScoreAdj {
				t.Errorf("pause oom_score_adj %d, want between %d and the agent's %d", v, pauseOOMScoreAdj, ownOOM)
			}
			if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
	e.check(t)
}

// startRawPause runs the sealed pause outside a sandbox (in the test's
// namespaces) with the given root descriptor, and waits for its
// readiness EOF.
func startRawPause(t *testing.T, root *os.File) *exec.Cmd {
	t.Helper()
	exe, err := helperbin.Path(helperbin.Pause)
	if err != nil {
		t.Fatal(err)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readyR.Close()
	cmd := &exec.Cmd{Path: exe, Args: []string{PauseName, "test"}, ExtraFiles: []*os.File{root, readyW}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readyW.Close()
	io.Copy(io.Discard, readyR)
	return cmd
}

// TestPauseStopsAndFails: SIGTERM ends a pause cleanly; a pause that
// cannot lock itself down exits with the number of the step, which the
// agent turns into a message.
func TestPauseStopsAndFails(t *testing.T) {
	linuxtest.RequireRoot(t)
	root, err := emptyRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := startRawPause(t, root)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("pause after SIGTERM: %v, want exit 0", err)
	}
	// A regular file is no directory to chroot into.
	notDir, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer notDir.Close()
	exe, _ := helperbin.Path(helperbin.Pause)
	errc := make(chan error, 1)
	go func() {
		// forkPause wants a locked thread; with host namespaces it
		// joins nothing.
		_, err := forkPause(pauseSpec{runRoot: "test", id: "x", ns: rt.NamespaceOptions{Network: rt.NamespaceNode, IPC: rt.NamespaceNode}}, exe, notDir)
		errc <- err
	}()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "could not fchdir to its empty root (exit status 11)") {
		t.Errorf("pause with a file as root: %v", err)
	}
}
