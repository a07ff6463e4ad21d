package linux

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/volume"
)

// diskUsage is what the files below dirs occupy on the filesystem of each
// dir, without crossing into other filesystems (the pod-files tmpfs, the
// overlay mounts): the host disk the pods could fill.
func diskUsage(t *testing.T, dirs ...string) int64 {
	t.Helper()
	var total int64
	for _, dir := range dirs {
		var root unix.Stat_t
		if err := unix.Lstat(dir, &root); err != nil {
			t.Fatal(err)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // removed while walking
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil {
				return nil
			}
			if st.Dev != root.Dev {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			total += st.Blocks * 512
			return nil
		})
	}
	return total
}

// fillScript is the attacker: it writes 64 MiB into each file the pod can
// write, reports how that went and whether the pod's other files are still
// what they were, then puts the file back, except the termination log,
// which it leaves full.
const fillScript = `
save() { echo /tmp/orig$(echo $1 | tr / _); }
for f in /etc/hosts /etc/resolv.conf /etc/hostname /dev/termination-log; do cp $f $(save $f); done
for f in /etc/hosts /etc/resolv.conf /etc/hostname /dev/termination-log; do
  dd if=/dev/zero of=$f bs=1M count=64 2>/tmp/err
  rc=$?
  enospc=no; grep -q "No space left on device" /tmp/err && enospc=yes
  line="fill $f rc=$rc size=$(wc -c < $f) enospc=$enospc"
  for g in /etc/hosts /etc/resolv.conf /etc/hostname; do
    [ $g = $f ] && continue
    if cmp -s $g $(save $g); then line="$line $g=intact"; else line="$line $g=changed"; fi
  done
  echo "$line"
  [ $f = /dev/termination-log ] || cat $(save $f) > $f
done
exit 3
`

// TestAttackPodFilesFill is the attacker of issue 11 §5 (CVE-2020-8557
// class): a container writes 64 MiB into /etc/hosts, /etc/resolv.conf,
// /etc/hostname and its termination log. Each write stops with ENOSPC at
// the pod-files cap, the pod's other files stay intact, the host's disk
// under the roots does not grow, and what the agent reads back stays
// bounded: the termination message (4 KiB) and the hosts file it rewrites.
func TestAttackPodFilesFill(t *testing.T) {
	e := newCtrEnv(t, nil)
	ctx := context.Background()
	podFiles := e.rt.volumes().PodFilesDir(e.sb.ID)
	before := diskUsage(t, e.cfg.RunRoot, e.cfg.StateRoot)

	cfg := e.config("filler", "/bin/sh", "-c", fillScript)
	cfg.TerminationMessagePath = "/dev/termination-log"
	c, out := e.run(t, cfg)
	if c.ExitCode != 3 {
		t.Fatalf("filler exited %d:\n%s", c.ExitCode, out)
	}
	filled := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "fill" {
			continue
		}
		filled++
		kv := map[string]string{}
		for _, x := range f[2:] {
			k, v, _ := strings.Cut(x, "=")
			kv[k] = v
		}
		size, _ := strconv.Atoi(kv["size"])
		if kv["rc"] == "0" || kv["enospc"] != "yes" || size > volume.PodFilesSize {
			t.Errorf("%s: a 64 MiB write got rc=%s enospc=%s with %d bytes written; want ENOSPC at the %d-byte cap",
				f[1], kv["rc"], kv["enospc"], size, volume.PodFilesSize)
		}
		for k, v := range kv {
			if strings.HasPrefix(k, "/") && v != "intact" {
				t.Errorf("after filling %s, %s is %s", f[1], k, v)
			}
		}
	}
	if filled != 4 {
		t.Fatalf("the filler reported %d files, want 4:\n%s", filled, out)
	}
	if len(c.Message) != 4096 {
		t.Errorf("termination message: %d bytes, want Kubernetes' 4096 cap", len(c.Message))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(podFiles, &st); err != nil {
		t.Fatal(err)
	}
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); st.Type != unix.TMPFS_MAGIC || used > volume.PodFilesSize {
		t.Errorf("pod files: filesystem %#x holds %d bytes, want a tmpfs of at most %d", st.Type, used, volume.PodFilesSize)
	}
	if grown := diskUsage(t, e.cfg.RunRoot, e.cfg.StateRoot) - before; grown > 1<<20 {
		t.Errorf("the host disk under the roots grew by %d bytes", grown)
	}

	// Removing the container frees its termination log; a second attacker
	// leaves /etc/hosts full, and the agent's next rewrite of it (a peer
	// came or went) reads no more of it than its own content.
	if err := e.rt.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(podFiles, termLogFile+"-"+c.ID)); !os.IsNotExist(err) {
		t.Errorf("termination log outlived its container: %v", err)
	}
	c, out = e.run(t, e.config("hosts-filler", "/bin/sh", "-c", "dd if=/dev/zero of=/etc/hosts bs=1M count=64; wc -c < /etc/hosts"))
	if c.ExitCode != 0 || !strings.Contains(out, "No space left on device") {
		t.Fatalf("hosts filler: exit %d\n%s", c.ExitCode, out)
	}
	var err error
	if n := linuxtest.Allocated(func() { err = e.rt.refreshHosts("", "") }); n > 512<<10 {
		t.Errorf("refreshing a filled hosts file allocated %d bytes", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := os.ReadFile(e.rt.podFile(e.sb.ID, HostsFile))
	if err != nil || len(hosts) > 4096 || !strings.Contains(string(hosts), e.sb.IP+"\t") {
		t.Errorf("hosts after the agent's rewrite: %d bytes, %v; want the pod's own lines back", len(hosts), err)
	}
	e.check(t)
}

// TestPodFilesAdoptedAfterRestart: an agent restarted over a running pod
// starts its next container with the same pod files; one whose pod-files
// tmpfs went missing meanwhile (unmounted, or a sandbox made by a version
// that kept the files in the sandbox directory) mounts it again and
// rewrites the files before the container binds them.
func TestPodFilesAdoptedAfterRestart(t *testing.T) {
	e := newCtrEnv(t, nil)
	dir := e.rt.volumes().PodFilesDir(e.sb.ID)
	want := map[string]string{}
	for _, f := range []string{HostsFile, ResolvConfFile, HostnameFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		want[f] = string(b)
	}
	show := "cat /etc/hosts; echo @; cat /etc/resolv.conf; echo @; cat /etc/hostname"
	check := func(t *testing.T, r *Runtime, name string) {
		t.Helper()
		saved := e.rt
		e.rt = r
		defer func() { e.rt = saved }()
		_, out := e.run(t, e.config(name, "/bin/sh", "-c", show))
		if exp := want[HostsFile] + "@\n" + want[ResolvConfFile] + "@\n" + want[HostnameFile]; out != exp {
			t.Errorf("%s sees:\n%s\nwant:\n%s", name, out, exp)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Errorf("pod files are not on their tmpfs: %#x %v", st.Type, err)
		}
	}
	restarted := func() *Runtime {
		r := openRuntime(t, &e.cfg)
		r.SetImageStore(e.store)
		return r
	}
	t.Run("tmpfs-kept", func(t *testing.T) { check(t, restarted(), "after-restart") })
	t.Run("tmpfs-lost", func(t *testing.T) {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		check(t, restarted(), "after-unmount")
	})
	e.check(t)
}

// TestHostsRefreshSurvivesBrokenPeer: a pod's hosts file that cannot be
// rewritten (its containers filled the tmpfs; here it is replaced by a
// directory) is that pod's problem: other pods are still created and
// removed.
func TestHostsRefreshSurvivesBrokenPeer(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	broken, err := r.CreateSandbox(ctx, podConfig("broken"))
	if err != nil {
		t.Fatal(err)
	}
	p := r.podFile(broken.ID, HostsFile)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	other, err := r.CreateSandbox(ctx, podConfig("other"))
	if err != nil {
		t.Fatalf("creating a pod failed on another pod's hosts file: %v", err)
	}
	if err := r.RemoveSandbox(ctx, other.ID); err != nil {
		t.Fatalf("removing a pod failed on another pod's hosts file: %v", err)
	}
	if err := r.RemoveSandbox(ctx, broken.ID); err != nil {
		t.Fatal(err)
	}
	e.check(t)
}

// The pod files of a sandbox whose record is gone are found and removed by
// GC like its volumes.
func TestGCRemovesOrphanPodFiles(t *testing.T) {
	e := newTestEnv(t)
	r := e.open(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, &runtime.SandboxConfig{Pod: runtime.PodKey{Namespace: "default", Name: "lost"}})
	if err != nil {
		t.Fatal(err)
	}
	killPause(t, r, sb.ID)
	if err := os.RemoveAll(r.sandboxDir(sb.ID)); err != nil {
		t.Fatal(err)
	}
	rep, err := e.open(t).GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rep.Removed, "\n"), "volumes of unrecorded sandbox "+sb.ID) {
		t.Errorf("GC report lacks the pod files of %s: %v", sb.ID, rep.Removed)
	}
	if _, err := os.Stat(r.volumes().PodFilesDir(sb.ID)); !os.IsNotExist(err) {
		t.Errorf("pod files of %s left: %v", sb.ID, err)
	}
	e.check(t)
}
