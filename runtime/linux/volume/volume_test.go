//go:build linux

package volume

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// newManager gives the test its own state and run roots and a census: at
// the end nothing may be mounted below them and nothing may be left of the
// sandboxes the test made.
func newManager(t *testing.T) (*Manager, string) {
	t.Helper()
	linuxtest.RequireRoot(t)
	base := t.TempDir()
	m := New(filepath.Join(base, "state"), filepath.Join(base, "run"))
	t.Cleanup(func() {
		left, err := MountsUnder(base)
		if err != nil {
			t.Error(err)
		}
		if len(left) > 0 {
			t.Errorf("census: mounts leaked: %v", left)
		}
		// Never let TempDir's RemoveAll cross a leaked mount.
		if err := unmountAndRemove(base); err != nil {
			t.Error(err)
		}
	})
	return m, base
}

func census(t *testing.T, m *Manager, sandboxes ...string) {
	t.Helper()
	ids, err := m.Sandboxes()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		for _, s := range sandboxes {
			if id == s {
				t.Errorf("census: sandbox %s still has volume state", id)
			}
		}
	}
	for _, root := range []string{m.root, m.subRoot, m.filesRoot} {
		if mps, _ := MountsUnder(root); len(mps) > 0 {
			t.Errorf("census: mounts left under %s: %v", root, mps)
		}
	}
}

func TestEmptyDirSurvivesSetupAndGoesWithTeardown(t *testing.T) {
	m, _ := newManager(t)
	vols := []runtime.VolumeConfig{
		{Name: "scratch", EmptyDir: &runtime.EmptyDirVolume{}},
		{Name: "mem", EmptyDir: &runtime.EmptyDirVolume{Medium: "Memory", SizeLimit: 1 << 20}},
	}
	paths, err := m.Setup("sb1", vols)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scratch", "mem"} {
		fi, err := os.Stat(paths[name])
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o777 {
			t.Errorf("%s mode %v, want 0777", name, fi.Mode().Perm())
		}
		if err := os.WriteFile(filepath.Join(paths[name], "data"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(paths["mem"], &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != unix.TMPFS_MAGIC || int64(st.Blocks)*st.Bsize != 1<<20 {
		t.Fatalf("mem: fs type %#x size %d, want tmpfs of 1MiB", st.Type, int64(st.Blocks)*st.Bsize)
	}
	if mounted, err := isMountPoint(paths["scratch"]); err != nil || mounted {
		t.Fatalf("disk emptyDir is a mount point (%v): it must live on the state root's filesystem", err)
	}
	// The size limit is enforced by the kernel.
	big := bytes.Repeat([]byte("x"), 2<<20)
	if err := os.WriteFile(filepath.Join(paths["mem"], "big"), big, 0o644); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("writing 2MiB into a 1MiB emptyDir: %v, want ENOSPC", err)
	}
	// A second Setup (agent restart, container restart) keeps the data and
	// does not stack a second tmpfs.
	if _, err := m.Setup("sb1", vols); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scratch", "mem"} {
		b, err := os.ReadFile(filepath.Join(paths[name], "data"))
		if err != nil || string(b) != name {
			t.Fatalf("%s lost its data across Setup: %q %v", name, b, err)
		}
	}
	if mps, _ := MountsUnder(m.Dir("sb1", "")); len(mps) != 1 {
		t.Fatalf("mounts %v, want exactly the one tmpfs", mps)
	}
	if err := m.Teardown("sb1"); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown("sb1"); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if _, err := os.Stat(m.Dir("sb1", "")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("sandbox volume dir left: %v", err)
	}
	census(t, m, "sb1")
}

func TestTeardownNeverEmptiesAMountedHostDir(t *testing.T) {
	m, base := newManager(t)
	precious := filepath.Join(base, "precious")
	if err := os.MkdirAll(precious, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(precious, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	paths, err := m.Setup("sb2", []runtime.VolumeConfig{{Name: "d", EmptyDir: &runtime.EmptyDirVolume{}}})
	if err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(paths["d"], "bind")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(precious, inner, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown("sb2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(precious, "keep")); err != nil {
		t.Fatalf("teardown deleted through a bind mount: %v", err)
	}
	census(t, m, "sb2")
}

func TestHostPathTypes(t *testing.T) {
	m, base := newManager(t)
	dir := filepath.Join(base, "host")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "d"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "f"), nil, 0o644))
	must(unix.Mknod(filepath.Join(dir, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	must(err)
	defer ln.Close()

	cases := []struct {
		path, typ string
		ok        bool
	}{
		{"d", "", true}, {"missing", "", true},
		{"new/dir", "DirectoryOrCreate", true}, {"f", "DirectoryOrCreate", false}, {"d", "DirectoryOrCreate", true},
		{"d", "Directory", true}, {"f", "Directory", false}, {"nope", "Directory", false},
		{"newfile", "FileOrCreate", true}, {"f", "FileOrCreate", true}, {"d", "FileOrCreate", false},
		{"noparent/file", "FileOrCreate", false},
		{"f", "File", true}, {"d", "File", false}, {"nofile", "File", false},
		{"sock", "Socket", true}, {"f", "Socket", false},
		{"/dev/null", "CharDevice", true}, {"blk", "CharDevice", false},
		{"blk", "BlockDevice", true}, {"/dev/null", "BlockDevice", false},
		{"d", "Bogus", false},
	}
	for _, tc := range cases {
		t.Run(tc.typ+"/"+tc.path, func(t *testing.T) {
			p := tc.path
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			paths, err := m.Setup("sb3", []runtime.VolumeConfig{{Name: "h", HostPath: &runtime.HostPathVolume{Path: p, Type: tc.typ}}})
			if (err == nil) != tc.ok {
				t.Fatalf("Setup: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !strings.Contains(err.Error(), `volume "h"`) {
					t.Errorf("error does not name the volume: %v", err)
				}
				return
			}
			if paths["h"] != p {
				t.Fatalf("host path %q, want %q", paths["h"], p)
			}
		})
	}
	if fi, err := os.Stat(filepath.Join(dir, "new/dir")); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate did not create the directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "newfile")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("FileOrCreate did not create an empty 0644 file: %v", err)
	}
	if _, err := m.Setup("sb3", []runtime.VolumeConfig{{Name: "h", HostPath: &runtime.HostPathVolume{Path: "rel", Type: ""}}}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("relative hostPath: %v, want ErrInvalidConfig", err)
	}
	must(m.Teardown("sb3"))
	// Teardown of a hostPath-only sandbox leaves the host's files alone.
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Fatalf("teardown touched a hostPath: %v", err)
	}
	census(t, m, "sb3")
}

func files(kv ...string) []runtime.ProjectedFile {
	var fs []runtime.ProjectedFile
	for i := 0; i < len(kv); i += 2 {
		fs = append(fs, runtime.ProjectedFile{Path: kv[i], Data: []byte(kv[i+1]), Mode: 0o644})
	}
	return fs
}

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		err := filepath.Walk(filepath.Join(dir, e.Name())+"/", func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			if fi.Mode().IsRegular() {
				rel, _ := filepath.Rel(dir, p)
				b, _ := os.ReadFile(p)
				out[rel] = string(b)
			}
			return nil
		})
		if err != nil {
			// A plain file behind a symlink: Walk of "x/" fails; read it directly.
			b, rerr := os.ReadFile(filepath.Join(dir, e.Name()))
			if rerr != nil {
				t.Fatal(rerr)
			}
			out[e.Name()] = string(b)
		}
	}
	return out
}

func TestProjectedAtomicUpdate(t *testing.T) {
	m, _ := newManager(t)
	v := runtime.VolumeConfig{Name: "cfg", Files: &runtime.ProjectedVolume{Files: files("app.conf", "v1", "nested/a/b", "deep1", "gone", "bye")}}
	paths, err := m.Setup("sb4", []runtime.VolumeConfig{v})
	if err != nil {
		t.Fatal(err)
	}
	dir := paths["cfg"]
	if got := readAll(t, dir); got["app.conf"] != "v1" || got["nested/a/b"] != "deep1" || got["gone"] != "bye" {
		t.Fatalf("first version: %v", got)
	}
	if target, err := os.Readlink(filepath.Join(dir, "app.conf")); err != nil || target != "..data/app.conf" {
		t.Fatalf("app.conf should link into ..data, got %q %v", target, err)
	}
	v1, _ := os.Readlink(filepath.Join(dir, dataLink))

	// Identical content: no swap (watchers in the container see nothing).
	if err := m.UpdateVolume("sb4", &v); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Readlink(filepath.Join(dir, dataLink)); again != v1 {
		t.Fatalf("no-op update swapped ..data: %s -> %s", v1, again)
	}

	// Readers racing the updates only ever see a whole version.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b, err := os.ReadFile(filepath.Join(dir, "app.conf"))
			if errors.Is(err, os.ErrNotExist) {
				// This read resolved ..data two swaps ago and was
				// descheduled; the next read must find a whole version.
				b, err = os.ReadFile(filepath.Join(dir, "app.conf"))
			}
			if err != nil {
				bad.Store(err.Error())
				return
			}
			if s := string(b); s != "v1" && (!strings.HasPrefix(s, "version-") || len(s) != len("version-0000")) {
				bad.Store("partial read: " + s)
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		nv := runtime.VolumeConfig{Name: "cfg", Files: &runtime.ProjectedVolume{Files: files("app.conf", "version-"+strings.Repeat("0", 3)+string(rune('0'+i%10)), "nested/a/b", "deep2")}}
		if err := m.UpdateVolume("sb4", &nv); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatalf("reader saw a torn update: %v", b)
	}
	got := readAll(t, dir)
	if got["nested/a/b"] != "deep2" || got["app.conf"] != "version-0009" {
		t.Fatalf("final version: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a removed key is still visible: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	var versions int
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != dataLink {
			versions++
		}
	}
	if versions != 2 {
		t.Fatalf("%d version directories left, want 2 (the current and the one it replaced)", versions)
	}
	// Unsafe paths are refused before anything is written.
	for _, p := range []string{"../x", "/abs", "a/../../b", "..data", "..hidden/x", "a//b"} {
		bad := runtime.VolumeConfig{Name: "cfg", Files: &runtime.ProjectedVolume{Files: files(p, "x")}}
		if err := m.UpdateVolume("sb4", &bad); !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("path %q: %v, want ErrInvalidConfig", p, err)
		}
	}
	if err := m.UpdateVolume("nosuch", &v); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("update of a missing sandbox: %v, want ErrNotFound", err)
	}
	if err := m.Teardown("sb4"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb4")
}

func TestSensitiveProjectedOnTmpfs(t *testing.T) {
	m, _ := newManager(t)
	secret := runtime.ProjectedFile{Path: "password", Data: []byte("hunter2-SECRET"), Mode: 0o600}
	v := runtime.VolumeConfig{Name: "sec", Files: &runtime.ProjectedVolume{Sensitive: true, Files: []runtime.ProjectedFile{secret}}}
	paths, err := m.Setup("sb5", []runtime.VolumeConfig{v})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(paths["sec"], &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("secret volume not on tmpfs: type %#x %v", st.Type, err)
	}
	fi, err := os.Stat(filepath.Join(paths["sec"], "password"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode %v %v, want 0600", fi.Mode(), err)
	}
	// Grow the secret past the first tmpfs size: the update remounts.
	bigSecret := runtime.ProjectedFile{Path: "password", Data: bytes.Repeat([]byte("s"), 3<<20), Mode: 0o400}
	v.Files.Files = []runtime.ProjectedFile{bigSecret}
	if err := m.UpdateVolume("sb5", &v); err != nil {
		t.Fatal(err)
	}
	// Errors name paths, never contents.
	bad := runtime.VolumeConfig{Name: "sec", Files: &runtime.ProjectedVolume{Sensitive: true, Files: []runtime.ProjectedFile{secret, secret}}}
	if err := m.UpdateVolume("sb5", &bad); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("duplicate path: error %v (must exist and not leak data)", err)
	}
	if fi, _ := os.Stat(filepath.Join(paths["sec"], "password")); fi.Size() != 3<<20 || fi.Mode().Perm() != 0o400 {
		t.Fatalf("updated secret: size %d mode %v", fi.Size(), fi.Mode())
	}
	if err := m.Teardown("sb5"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb5")
}

func TestSubPathRefusesEscapes(t *testing.T) {
	m, base := newManager(t)
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "host-secret"), []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	paths, err := m.Setup("sb6", []runtime.VolumeConfig{{Name: "data", EmptyDir: &runtime.EmptyDirVolume{}}})
	if err != nil {
		t.Fatal(err)
	}
	vol := paths["data"]
	// What a malicious container could have created in its volume.
	for link, target := range map[string]string{
		"abs":      outside,
		"root":     "/",
		"up":       "../../../../../../..",
		"relout":   "../../../outside",
		"inside":   "real",
		"chain":    "inside/../up",
		"procself": "/proc/self/root",
	} {
		if err := os.Symlink(target, filepath.Join(vol, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(vol, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "real", "file"), []byte("in-volume"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, sub := range []string{"abs", "abs/host-secret", "root", "root/etc", "up", "up/etc/passwd", "relout", "chain", "procself", "../outside", "real/../../outside", "/etc"} {
		_, err := m.PrepareSubPath("sb6", "c", 100+i, vol, sub)
		if err == nil {
			t.Errorf("subPath %q escaped the volume", sub)
			continue
		}
		if !errors.Is(err, ErrEscape) && !errors.Is(err, runtime.ErrInvalidConfig) {
			t.Errorf("subPath %q: %v, want ErrEscape or ErrInvalidConfig", sub, err)
		}
	}
	// Allowed: a directory that exists, one to create, a file, and a
	// symlink that stays inside.
	for i, tc := range []struct{ sub, probe, want string }{
		{"real", "file", "in-volume"},
		{"inside", "file", "in-volume"},
		{"real/file", "", "in-volume"},
		{"new/nested", "", ""},
	} {
		p, err := m.PrepareSubPath("sb6", "c", i, vol, tc.sub)
		if err != nil {
			t.Fatalf("subPath %q: %v", tc.sub, err)
		}
		again, err := m.PrepareSubPath("sb6", "c", i, vol, tc.sub)
		if err != nil || again != p {
			t.Fatalf("second PrepareSubPath: %q %v", again, err)
		}
		if tc.want != "" {
			b, err := os.ReadFile(filepath.Join(p, tc.probe))
			if err != nil || string(b) != tc.want {
				t.Fatalf("subPath %q reads %q %v", tc.sub, b, err)
			}
		} else if fi, err := os.Stat(filepath.Join(vol, tc.sub)); err != nil || !fi.IsDir() {
			t.Fatalf("subPath %q not created in the volume: %v", tc.sub, err)
		}
	}
	// Once prepared, swapping the path for a symlink does not redirect the
	// mount: it holds the inode that was resolved.
	if err := os.Rename(filepath.Join(vol, "real"), filepath.Join(vol, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "real")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(m.subRoot, "sb6", "c", "0", "file"))
	if err != nil || string(b) != "in-volume" {
		t.Fatalf("prepared subPath followed a swapped symlink: %q %v", b, err)
	}
	if err := m.CleanupSubPaths("sb6", "c"); err != nil {
		t.Fatal(err)
	}
	if mps, _ := MountsUnder(m.subRoot); len(mps) != 0 {
		t.Fatalf("subPath mounts left: %v", mps)
	}
	if err := m.Teardown("sb6"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "host-secret")); err != nil {
		t.Fatalf("teardown followed a symlink out: %v", err)
	}
	census(t, m, "sb6")
}

func TestBindIntoStaysInRootAndIsReadOnly(t *testing.T) {
	_, base := newManager(t)
	rootfs := filepath.Join(base, "rootfs")
	hostSide := filepath.Join(base, "hostside")
	src := filepath.Join(base, "src")
	for _, d := range []string{rootfs, hostSide, filepath.Join(src, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("src"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A submount inside the source: a recursive read-only bind covers it.
	if err := unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(filepath.Join(src, "sub"), unix.MNT_DETACH) })
	// Image symlinks that point at the host if followed naively.
	if err := os.Symlink(hostSide, filepath.Join(rootfs, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../"+hostSide, filepath.Join(rootfs, "rel")); err != nil {
		t.Fatal(err)
	}
	// The in-root counterpart of the host directory exists, so both links
	// resolve; a naive (host) resolution would land in hostSide instead.
	if err := os.MkdirAll(filepath.Join(rootfs, hostSide), 0o755); err != nil {
		t.Fatal(err)
	}
	// A dangling absolute link is refused rather than created on the host.
	dangling := filepath.Join(base, "dangling-target")
	if err := os.Symlink(dangling, filepath.Join(rootfs, "dangling")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := BindInto(root, src, "/dangling/mnt", false); err == nil {
		t.Fatal("mount through a dangling symlink succeeded")
	}
	if _, err := os.Lstat(dangling); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the host side of a dangling link was created: %v", err)
	}
	for _, target := range []string{"/abs/mnt", "/rel/mnt"} {
		if err := BindInto(root, src, target, true); err != nil {
			t.Fatalf("BindInto %s: %v", target, err)
		}
	}
	if ents, _ := os.ReadDir(hostSide); len(ents) != 0 {
		t.Fatalf("a mount target was created outside the rootfs: %v", ents)
	}
	// Both resolved inside the rootfs, the absolute link to <rootfs>/<hostSide>.
	inside := filepath.Join(rootfs, hostSide, "mnt")
	if b, err := os.ReadFile(filepath.Join(inside, "f")); err != nil || string(b) != "src" {
		t.Fatalf("bind not visible in the rootfs: %q %v", b, err)
	}
	for _, p := range []string{filepath.Join(inside, "new"), filepath.Join(inside, "sub", "new")} {
		if err := os.WriteFile(p, nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("write to %s: %v, want EROFS", p, err)
		}
	}
	// A writable file bind.
	if err := BindInto(root, filepath.Join(src, "f"), "/etc/f", false); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/f"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "f")); string(b) != "new" {
		t.Fatalf("file bind is not the source: %q", b)
	}
	if err := unmountAndRemove(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(filepath.Join(src, "sub"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
}

// With the pod's fsGroup, projected files belong to that group and are
// group-readable, so a non-root container in the group reads a 0600 Secret;
// a changed fsGroup alone rewrites the files.
func TestProjectedFSGroup(t *testing.T) {
	m, _ := newManager(t)
	gid := int64(2345)
	secret := runtime.ProjectedFile{Path: "token", Data: []byte("t0k3n"), Mode: 0o600}
	v := runtime.VolumeConfig{Name: "sec", Files: &runtime.ProjectedVolume{Sensitive: true, FSGroup: &gid, Files: []runtime.ProjectedFile{secret}}}
	paths, err := m.Setup("sb9", []runtime.VolumeConfig{v})
	if err != nil {
		t.Fatal(err)
	}
	check := func(wantGID int64, wantMode os.FileMode) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(paths["sec"], "token"), &st); err != nil {
			t.Fatal(err)
		}
		if int64(st.Gid) != wantGID || os.FileMode(st.Mode).Perm() != wantMode {
			t.Errorf("token: gid %d mode %v, want gid %d mode %v", st.Gid, os.FileMode(st.Mode).Perm(), wantGID, wantMode)
		}
	}
	check(gid, 0o640)
	other := int64(3456)
	v.Files.FSGroup = &other
	if err := m.UpdateVolume("sb9", &v); err != nil {
		t.Fatal(err)
	}
	check(other, 0o640)
	v.Files.FSGroup = nil
	if err := m.UpdateVolume("sb9", &v); err != nil {
		t.Fatal(err)
	}
	check(0, 0o600)
	if err := m.Teardown("sb9"); err != nil {
		t.Fatal(err)
	}
	census(t, m, "sb9")
}
