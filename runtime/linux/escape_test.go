package linux

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/crilog"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/helperbin"
)

// hostSecret writes a file with a random token on the host, in a directory
// no container mounts, and returns its path, the token, and the path of a
// file that must never appear.
func hostSecret(t *testing.T) (secret, token, canary string) {
	t.Helper()
	dir := t.TempDir()
	var b [16]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	secret = filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return secret, token, filepath.Join(dir, "written-from-a-container")
}

// TestExecCannotLeaveContainerRoot is written as the attacker: a process
// started by Exec (as exec probes, hooks and `pelagos-agent exec` are)
// tries to reach the host's filesystem, with the default capabilities
// (the chroot breakout, CAP_SYS_CHROOT is a default) and with SYS_ADMIN
// added (joining its own mount namespace). Whatever it does, a host file
// must stay unread and a host path unwritten.
func TestExecCannotLeaveContainerRoot(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, attack string
		capAdd       []string
	}{
		{"chroot breakout", "chroot-escape", nil},
		{"setns own mount namespace with SYS_ADMIN", "setns-self", []string{"SYS_ADMIN"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret, token, canary := hostSecret(t)
			c := e.startSleeper(t, strings.ReplaceAll(tc.attack, "-", ""), func(c *runtime.ContainerConfig) {
				c.Security.CapAdd = tc.capAdd
			})
			var out bytes.Buffer
			code, err := e.rt.Exec(ctx, c.ID, runtime.ExecOptions{
				Cmd:    []string{"/usr/local/bin/ctrprobe", tc.attack, secret, canary},
				Stdout: &out, Stderr: &out,
			})
			if err != nil {
				t.Fatalf("exec: %v", err)
			}
			t.Logf("attacker (exit %d):\n%s", code, out.String())
			if strings.Contains(out.String(), token) {
				t.Errorf("the exec'd process read the host file %s", secret)
			}
			if _, err := os.Stat(canary); err == nil {
				t.Errorf("the exec'd process created %s on the host", canary)
			}
			// The exec'd process lives in the container's mount namespace,
			// not in the host's with a chroot.
			if got, want := keyValues(out.String())["mntns"], ctrNS(t, c.PID, "mnt"); got != want {
				t.Errorf("exec'd process in mount namespace %q, the container's is %q", got, want)
			}
			if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
	e.check(t)
}

// TestPauseUnreachableFromPod is written as the attacker of issue 11 §2:
// with shareProcessNamespace and SYS_PTRACE (a common debugging set-up) a
// container's PID 1 is the pause, and /proc/1/{root,cwd,exe,fd} are open
// to it. Through them it must reach nothing of the host: a host file stays
// unread and a host path unwritten, the pause's root is empty, its only
// descriptors are /dev/null and its executable is not the agent's.
func TestPauseUnreachableFromPod(t *testing.T) {
	e := newCtrEnv(t, &runtime.SandboxConfig{Namespaces: runtime.NamespaceOptions{PID: runtime.NamespacePod}})
	secret, token, canary := hostSecret(t)
	cfg := e.config("reach", "/usr/local/bin/ctrprobe", "pause-reach", secret, canary)
	cfg.Security.CapAdd = []string{"SYS_PTRACE"}
	_, out := e.run(t, cfg)
	t.Logf("attacker:\n%s", out)
	kv := keyValues(out)
	if strings.Contains(out, token) {
		t.Errorf("the container read the host file %s through the pause", secret)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Errorf("the container created %s on the host through the pause", canary)
	}
	if kv["pause-root"] != "" {
		t.Errorf("the pause's root holds %q, want nothing", kv["pause-root"])
	}
	if kv["pause-fds"] != "0>/dev/null,1>/dev/null,2>/dev/null" {
		t.Errorf("the pause's descriptors: %q, want 0-2 on /dev/null", kv["pause-fds"])
	}
	if host := hostBinary(t); strings.Contains(kv["pause-exe"], fmt.Sprintf("dev=%d ino=%d ", host.Dev, host.Ino)) {
		t.Errorf("the pause runs the host's binary: %s", kv["pause-exe"])
	}
	if !strings.Contains(kv["pause-exe"], "write=open") && !strings.Contains(kv["pause-exe"], "write=write") {
		t.Errorf("writing the pause's executable: %s, want an error", kv["pause-exe"])
	}
	// And from the host: the pause's root is the empty read-only tmpfs.
	var fs unix.Statfs_t
	if err := unix.Statfs(fmt.Sprintf("/proc/%d/root", e.sb.PausePID), &fs); err != nil || fs.Type != unix.TMPFS_MAGIC || fs.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("host view of the pause's root: type %#x flags %#x (%v), want a read-only tmpfs", fs.Type, fs.Flags, err)
	}
	e.check(t)
}

// hostBinary is the file of this process: the binary that plays the agent
// in tests (the old process model re-executed it as every helper).
func hostBinary(t *testing.T) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const hostileExeImage = "pelagos.test/hostile-exe:1"

// importHostile imports an image whose /bin/sh is "#!/proc/self/exe" and
// whose PATH has a pelagos-pause that is a symlink to /proc/self/exe: a
// container process that runs either runs, as interpreter or as program,
// whatever executable the runtime's process had when it exec'd it
// (CVE-2019-5736).
func importHostile(t *testing.T, e *ctrEnv) {
	t.Helper()
	base := imagetest.WithFiles(t, imagetest.Busybox(t),
		imagetest.HostFile{Path: "/usr/local/bin/ctrprobe", From: buildProbe(t)})
	l, err := imagetest.BuildLayer([]imagetest.Entry{
		imagetest.Dir("bin/", 0o755),
		imagetest.File("bin/sh", 0o755, []byte("#!/proc/self/exe\n")),
		imagetest.Dir("usr/", 0o755), imagetest.Dir("usr/local/", 0o755), imagetest.Dir("usr/local/bin/", 0o755),
		imagetest.Symlink("usr/local/bin/pelagos-pause", "/proc/self/exe"),
	}, imagetest.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, l)
	if err != nil {
		t.Fatal(err)
	}
	imagetest.ImportInto(t, e.store, hostileExeImage, img)
}

// TestHostBinaryNeverInContainer is written as the attacker of issue 11
// §3: an image whose /bin/sh is "#!/proc/self/exe" is started as a
// container's command, as a restart, through exec and as an exec probe
// would be (and through a symlink to /proc/self/exe named like a helper).
// A watcher in the pod's PID namespace opens the executable of every such
// process and tries to write it while it runs and after it exited. No
// process may ever run the host's binary, every write must fail, and on
// the host the binary and the sealed helper must be unchanged.
func TestHostBinaryNeverInContainer(t *testing.T) {
	e := newCtrEnv(t, &runtime.SandboxConfig{Namespaces: runtime.NamespaceOptions{PID: runtime.NamespacePod}})
	importHostile(t, e)
	ctx := context.Background()
	host := hostBinary(t)
	hostPath, _ := os.Readlink("/proc/self/exe")
	hostSum := fileDigest(t, hostPath)
	helper, err := helperbin.Path(helperbin.Helper)
	if err != nil {
		t.Fatal(err)
	}
	helperSum := fileDigest(t, helper)

	watch := e.config("watch", "/usr/local/bin/ctrprobe", "exe-watch", "120")
	watch.Image = hostileExeImage
	w, err := e.rt.StartContainer(ctx, watch)
	if err != nil {
		t.Fatal(err)
	}
	hostile := func(name string, attempt int, cmd ...string) string {
		cfg := e.config(name, cmd...)
		cfg.Image, cfg.Attempt = hostileExeImage, attempt
		c, err := e.rt.StartContainer(ctx, cfg)
		if err != nil {
			return "start: " + err.Error()
		}
		c = e.waitExit(t, c.ID)
		var out bytes.Buffer
		crilog.Read(c.LogPath, &out, crilog.ReadOptions{})
		return out.String()
	}
	// As the container's command, and again as a restart.
	for attempt := range 2 {
		if out := hostile("sh", attempt, "/bin/sh", "-c", "true"); !strings.Contains(out, "(from /memfd:pelagos-helper") {
			t.Errorf("command /bin/sh, attempt %d: %q, want the sealed helper refusing", attempt, out)
		}
	}
	if out := hostile("named", 0, "pelagos-pause"); !strings.Contains(out, "(from /memfd:pelagos-helper") {
		t.Errorf("command pelagos-pause: %q, want the sealed helper refusing", out)
	}
	// Through exec, and as an exec probe (with a timeout), several times:
	// the watcher has to catch the short-lived process.
	for i := range 20 {
		for _, cmd := range [][]string{{"/bin/sh", "-c", "true"}, {"pelagos-pause"}} {
			var out bytes.Buffer
			code, err := e.rt.Exec(ctx, w.ID, runtime.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out, Timeout: 5 * time.Second})
			if i == 0 && (err != nil || code != 2 || !strings.Contains(out.String(), "(from /memfd:pelagos-helper")) {
				t.Errorf("exec %v: %d %v %q, want the sealed helper refusing", cmd, code, err, out.String())
			}
		}
	}
	if _, err := e.rt.Exec(ctx, w.ID, runtime.ExecOptions{Cmd: []string{"touch", "/tmp/stop-watch"}}); err != nil {
		t.Fatal(err)
	}
	wc := e.waitExit(t, w.ID)
	var log bytes.Buffer
	crilog.Read(wc.LogPath, &log, crilog.ReadOptions{})
	t.Logf("watcher:\n%s", log.String())
	helpers := 0
	for _, line := range strings.Split(log.String(), "\n") {
		if !strings.HasPrefix(line, "seen ") {
			continue
		}
		if strings.Contains(line, fmt.Sprintf(" dev=%d ino=%d ", host.Dev, host.Ino)) {
			t.Errorf("a container process ran the host's binary: %s", line)
		}
		if strings.Contains(line, "=ok") {
			t.Errorf("a container process's executable was written: %s", line)
		}
		if strings.Contains(line, `exe="/memfd:pelagos-helper`) {
			helpers++
		}
	}
	if helpers == 0 {
		t.Errorf("the watcher never saw the hostile processes (the sealed helper)")
	}
	if fileDigest(t, hostPath) != hostSum {
		t.Errorf("the host binary %s changed", hostPath)
	}
	if fileDigest(t, helper) != helperSum {
		t.Errorf("the sealed helper changed")
	}
	e.check(t)
}

// TestWorkingDirThroughDescriptor is the runtime side of issue 11 §4: a
// workingDir of /proc/self/fd/N names whatever descriptor N the init holds
// when it enters the directory. Whatever N, the container either fails to
// start or runs with its working directory inside its root, checked from
// the host by walking up from /proc/<pid>/cwd until its root.
func TestWorkingDirThroughDescriptor(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	for n := 3; n <= 24; n++ {
		cfg := e.config(fmt.Sprintf("fd%d", n), "/bin/sh", "-c", "exec sleep 1000")
		cfg.WorkingDir = fmt.Sprintf("/proc/self/fd/%d", n)
		c, err := e.rt.StartContainer(ctx, cfg)
		if err != nil {
			continue // refused: nothing ran there
		}
		if !cwdInsideRoot(t, c.PID) {
			t.Errorf("workingDir %s: the container runs with its working directory outside its root", cfg.WorkingDir)
		}
		if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	e.check(t)
}

// cwdInsideRoot walks up from the process's working directory and reports
// whether it meets the process's root before the top of a mount tree.
func cwdInsideRoot(t *testing.T, pid int) bool {
	t.Helper()
	var root unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root", pid), &root); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/cwd", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 4096 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if st.Dev == root.Dev && st.Ino == root.Ino {
			unix.Close(fd)
			return true
		}
		up, err := unix.Openat(fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		var ust unix.Stat_t
		unix.Fstat(up, &ust)
		if ust.Dev == st.Dev && ust.Ino == st.Ino {
			unix.Close(up)
			return false // the top, and not the root
		}
		fd = up
	}
	unix.Close(fd)
	return false
}
