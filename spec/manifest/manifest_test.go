package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/spec"
)

func loaderPodYAML(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n", name)
}

func loaderWrite(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

// podNames lists the snapshot's valid pods as namespace/name@file-base.
func loaderPodNames(s *Snapshot) []string {
	var out []string
	for _, p := range s.SortedPods() {
		out = append(out, p.Pod.Key().String()+"@"+filepath.Base(p.File))
	}
	return out
}

// errorsOf lists each file's problems as base: class.
func loaderErrorsOf(s *Snapshot) map[string][]string {
	out := map[string][]string{}
	for path, fr := range s.Files {
		for _, e := range fr.Errs {
			out[filepath.Base(path)] = append(out[filepath.Base(path)], loaderErrClass(e))
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

func loaderErrClass(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{{ErrUntrusted, "untrusted"}, {ErrNotRegular, "not-regular"}, {ErrDuplicate, "duplicate"}, {ErrTooLarge, "too-large"},
		{spec.ErrUnknownField, "unknown-field"}, {spec.ErrUnsupported, "unsupported"}, {spec.ErrSyntax, "syntax"},
		{spec.ErrInvalid, "invalid"}, {fs.ErrNotExist, "not-exist"}, {ErrDanglingSymlink, "dangling"}} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "other: " + err.Error()
}

func TestLoadDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		pods    []string
		errs    map[string][]string
		ignored []string
	}{
		{"empty directory is a valid empty snapshot", func(t *testing.T, dir string) {}, nil, map[string][]string{}, nil},
		{"extensions and artifacts", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("a"), 0o644)
			loaderWrite(t, filepath.Join(dir, "b.yml"), loaderPodYAML("b"), 0o644)
			loaderWrite(t, filepath.Join(dir, "c.json"), `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c"},"spec":{"containers":[{"name":"c","image":"busybox:1.36"}]}}`, 0o644)
			for _, junk := range []string{".hidden.yaml", "a.yaml~", ".#a.yaml", "#a.yaml#", ".a.yaml.swp", "a.yaml.swp",
				"a.yaml.tmp", "a.yaml.dpkg-new", "a.yaml.dpkg-old", "4913", "README.md", "notes.txt"} {
				loaderWrite(t, filepath.Join(dir, junk), "this: is: not: yaml: [", 0o644)
			}
		}, []string{"default/a@a.yaml", "default/b@b.yml", "default/c@c.json"}, map[string][]string{},
			[]string{"#a.yaml#", ".#a.yaml", ".a.yaml.swp", ".hidden.yaml", "4913", "README.md", "a.yaml.dpkg-new",
				"a.yaml.dpkg-old", "a.yaml.swp", "a.yaml.tmp", "a.yaml~", "notes.txt"}},
		{"a broken file does not hide the others", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "good.yaml"), loaderPodYAML("good"), 0o644)
			loaderWrite(t, filepath.Join(dir, "bad.yaml"), loaderPodYAML("bad")+"    imagePullPolicy: Sometimes\n", 0o644)
			loaderWrite(t, filepath.Join(dir, "half.yaml"), loaderPodYAML("half-ok")+"---\n"+loaderPodYAML("Half_Bad"), 0o644)
		}, []string{"default/good@good.yaml", "default/half-ok@half.yaml"},
			map[string][]string{"bad.yaml": {"invalid"}, "half.yaml": {"invalid"}}, nil},
		{"duplicate across files: lexically first wins, both told", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "b.yaml"), loaderPodYAML("web"), 0o644)
			loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("web"), 0o644)
		}, []string{"default/web@a.yaml"}, map[string][]string{"a.yaml": {"duplicate"}, "b.yaml": {"duplicate"}}, nil},
		{"duplicate within one file", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("web")+"---\n"+loaderPodYAML("web"), 0o644)
		}, []string{"default/web@a.yaml"}, map[string][]string{"a.yaml": {"duplicate"}}, nil},
		{"same name in another namespace is no duplicate", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("web"), 0o644)
			loaderWrite(t, filepath.Join(dir, "b.yaml"), strings.Replace(loaderPodYAML("web"), "  name: web\n", "  name: web\n  namespace: other\n", 1), 0o644)
		}, []string{"default/web@a.yaml", "other/web@b.yaml"}, map[string][]string{}, nil},
		{"symlinked file", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "store", "real.yaml"), loaderPodYAML("linked"), 0o644)
			if err := os.Symlink("store/real.yaml", filepath.Join(dir, "link.yaml")); err != nil {
				t.Fatal(err)
			}
		}, []string{"default/linked@link.yaml"}, map[string][]string{}, []string{"store"}},
		{"ConfigMap-style ..data layout", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "..2026_11_28_10_00_00.123", "pod.yaml"), loaderPodYAML("projected"), 0o644)
			if err := os.Symlink("..2026_11_28_10_00_00.123", filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("..data/pod.yaml", filepath.Join(dir, "pod.yaml")); err != nil {
				t.Fatal(err)
			}
		}, []string{"default/projected@pod.yaml"}, map[string][]string{}, []string{"..2026_11_28_10_00_00.123", "..data"}},
		{"dangling symlink", func(t *testing.T, dir string) {
			if err := os.Symlink("nowhere.yaml", filepath.Join(dir, "gone.yaml")); err != nil {
				t.Fatal(err)
			}
		}, nil, map[string][]string{"gone.yaml": {"dangling"}}, nil},
		{"symlink to a directory", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("sub", filepath.Join(dir, "dir.yaml")); err != nil {
				t.Fatal(err)
			}
		}, nil, map[string][]string{"dir.yaml": {"not-regular"}}, []string{"sub"}},
		{"FIFO, socket and directory are never opened", func(t *testing.T, dir string) {
			// Opening the FIFO for reading would block forever: the test
			// finishing at all is part of the assertion.
			if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("unix", filepath.Join(dir, "sock.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			if err := os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("fifo.yaml", filepath.Join(dir, "tofifo.yaml")); err != nil {
				t.Fatal(err)
			}
		}, nil, map[string][]string{"fifo.yaml": {"not-regular"}, "sock.yaml": {"not-regular"}, "dir.yaml": {"not-regular"},
			"tofifo.yaml": {"not-regular"}}, nil},
		{"group-writable manifest", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "ok.yaml"), loaderPodYAML("ok"), 0o644)
			loaderWrite(t, filepath.Join(dir, "gw.yaml"), loaderPodYAML("gw"), 0o664)
			loaderWrite(t, filepath.Join(dir, "ww.yaml"), loaderPodYAML("ww"), 0o646)
		}, []string{"default/ok@ok.yaml"}, map[string][]string{"gw.yaml": {"untrusted"}, "ww.yaml": {"untrusted"}}, nil},
		{"symlink into a world-writable directory", func(t *testing.T, dir string) {
			ww := filepath.Join(dir, "drop")
			loaderWrite(t, filepath.Join(ww, "p.yaml"), loaderPodYAML("dropped"), 0o644)
			if err := os.Chmod(ww, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("drop/p.yaml", filepath.Join(dir, "p.yaml")); err != nil {
				t.Fatal(err)
			}
		}, nil, map[string][]string{"p.yaml": {"untrusted"}}, []string{"drop"}},
		{"oversized file", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "big.yaml"), loaderPodYAML("big")+"# "+strings.Repeat("x", 2048)+"\n", 0o644)
			loaderWrite(t, filepath.Join(dir, "small.yaml"), loaderPodYAML("small"), 0o644)
		}, []string{"default/small@small.yaml"}, map[string][]string{"big.yaml": {"too-large"}}, nil},
		{"duplicate ConfigMap and Secret", func(t *testing.T, dir string) {
			cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n"
			sec := "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\nstringData: {k: v}\n"
			loaderWrite(t, filepath.Join(dir, "a.yaml"), cm+"---\n"+sec, 0o644)
			loaderWrite(t, filepath.Join(dir, "b.yaml"), cm, 0o644)
		}, nil, map[string][]string{"a.yaml": {"duplicate"}, "b.yaml": {"duplicate"}}, nil},
		{"ConfigMaps and Secrets are collected", func(t *testing.T, dir string) {
			loaderWrite(t, filepath.Join(dir, "all.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n---\n"+
				"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n---\n"+loaderPodYAML("p"), 0o644)
		}, []string{"default/p@all.yaml"}, map[string][]string{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			snap, err := LoadDir(dir, Options{MaxFileSize: 1024})
			if err != nil {
				t.Fatalf("LoadDir: %v", err)
			}
			if diff := cmp.Diff(tc.pods, loaderPodNames(snap)); diff != "" {
				t.Errorf("pods (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.errs, loaderErrorsOf(snap)); diff != "" {
				t.Errorf("errors (-want +got):\n%s\nall: %v", diff, snap.Errors())
			}
			for key, cs := range snap.ConfigMaps {
				if filepath.Base(cs.File) != "a.yaml" && filepath.Base(cs.File) != "all.yaml" {
					t.Errorf("ConfigMap %s taken from %s, want the lexically first file", key, cs.File)
				}
			}
			if diff := cmp.Diff(tc.ignored, snap.Ignored); diff != "" {
				t.Errorf("ignored (-want +got):\n%s", diff)
			}
			for path, fr := range snap.Files {
				for _, e := range fr.Errs {
					var fe *spec.FieldError
					if !errors.As(e, &fe) || fe.File != path {
						t.Errorf("error %q is not a *spec.FieldError naming %s", e, path)
					}
				}
			}
		})
	}
}

func TestLoadDirMessages(t *testing.T) {
	dir := t.TempDir()
	loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("web"), 0o644)
	loaderWrite(t, filepath.Join(dir, "b.yaml"), loaderPodYAML("web"), 0o644)
	loaderWrite(t, filepath.Join(dir, "ww.yaml"), loaderPodYAML("ww"), 0o666)
	snap, err := LoadDir(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b, ww := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "ww.yaml")
	want := []string{
		a + ": doc 1: metadata.name: pod default/web is also defined in " + b + " doc 1; this one wins (line 4)",
		b + ": doc 1: metadata.name: pod default/web is already defined in " + a + " doc 1, which wins; this one is ignored (line 4)",
		ww + ": " + ww + " is world-writable (mode 0666): untrusted",
	}
	var got []string
	for _, e := range snap.Errors() {
		got = append(got, e.Error())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if fr := snap.Files[a]; len(fr.Pods) != 1 || fr.Digest == "" || fr.Resolved != a {
		t.Errorf("winner's FileResult: pods=%d digest=%q resolved=%q", len(fr.Pods), fr.Digest, fr.Resolved)
	}
	if fr := snap.Files[b]; len(fr.Pods) != 0 {
		t.Errorf("the losing duplicate must not be in its file's pods")
	}
}

func TestLoadDirRefusesTheDirectory(t *testing.T) {
	t.Run("missing", func(t *testing.T) {
		_, err := LoadDir(filepath.Join(t.TempDir(), "nope"), Options{})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v, want ErrNotExist", err)
		}
	})
	t.Run("a file, not a directory", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f.yaml")
		loaderWrite(t, f, loaderPodYAML("x"), 0o644)
		if _, err := LoadDir(f, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("got %v, want not a directory", err)
		}
	})
	for _, mode := range []os.FileMode{0o777, 0o775, 0o777 | fs.ModeSticky} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pods")
			loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("a"), 0o644)
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadDir(dir, Options{})
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), dir+" is ") {
				t.Fatalf("got %v, want ErrUntrusted naming %s", err, dir)
			}
			snap, err := LoadDir(dir, Options{SkipTrustCheck: true})
			if err != nil || len(snap.Pods) != 1 {
				t.Fatalf("with SkipTrustCheck: %v, %d pods", err, len(snap.Pods))
			}
		})
	}
	t.Run("world-writable parent", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "open")
		dir := filepath.Join(parent, "pods")
		loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("a"), 0o644)
		if err := os.Chmod(parent, 0o777); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(dir, Options{}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), parent+" is world-writable (mode 0777)") {
			t.Fatalf("got %v, want ErrUntrusted naming the parent", err)
		}
	})
	t.Run("sticky world-writable parent is accepted", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "tmp")
		dir := filepath.Join(parent, "pods")
		loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("a"), 0o644)
		if err := os.Chmod(parent, 0o777|fs.ModeSticky); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(dir, Options{}); err != nil {
			t.Fatalf("got %v, want a sticky parent (like /tmp) accepted", err)
		}
	})
	t.Run("symlinked directory is checked where it points", func(t *testing.T) {
		base := t.TempDir()
		real := filepath.Join(base, "real")
		loaderWrite(t, filepath.Join(real, "a.yaml"), loaderPodYAML("a"), 0o644)
		if err := os.Chmod(real, 0o777); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(base, "link")
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(link, Options{}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), real) {
			t.Fatalf("got %v, want ErrUntrusted naming %s", err, real)
		}
	})
}

// TestTrustOwner needs root to make files owned by someone else.
func TestTrustOwner(t *testing.T) {
	linuxtest.RequireRoot(t)
	const nobody = 65534
	t.Run("manifest owned by another user", func(t *testing.T) {
		dir := t.TempDir()
		f := filepath.Join(dir, "theirs.yaml")
		loaderWrite(t, f, loaderPodYAML("theirs"), 0o644)
		if err := os.Chown(f, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		snap, err := LoadDir(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		errs := snap.Files[f].Errs
		if len(errs) != 1 || !errors.Is(errs[0], ErrUntrusted) || !strings.Contains(errs[0].Error(), "owned by uid 65534") {
			t.Fatalf("got %v, want ErrUntrusted naming uid 65534", errs)
		}
	})
	t.Run("directory owned by another user", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "pods")
		loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("a"), 0o644)
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(dir, Options{}); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("got %v, want ErrUntrusted", err)
		}
	})
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "two.yaml")
	loaderWrite(t, f, loaderPodYAML("a")+"---\n"+loaderPodYAML("a"), 0o644)
	fr := LoadFile(f, Options{})
	if len(fr.Pods) != 1 || len(fr.Errs) != 1 || !errors.Is(fr.Errs[0], ErrDuplicate) {
		t.Fatalf("pods=%d errs=%v, want 1 pod and a duplicate error", len(fr.Pods), fr.Errs)
	}
	missing := LoadFile(filepath.Join(dir, "missing.yaml"), Options{})
	if len(missing.Errs) != 1 || !errors.Is(missing.Errs[0], fs.ErrNotExist) {
		t.Fatalf("missing file: %v", missing.Errs)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if fr := LoadFile(f, Options{}); len(fr.Errs) != 1 || !errors.Is(fr.Errs[0], ErrUntrusted) {
		t.Fatalf("file in a world-writable directory: %v", fr.Errs)
	}
}

func TestIsManifestName(t *testing.T) {
	for name, want := range map[string]bool{
		"web.yaml": true, "web.YML": true, "web.json": true, "web.yaml~": false, ".web.yaml": false,
		"#web.yaml#": false, "web.yaml.swp": false, "4913": false, "web.yaml.dpkg-dist": false, "web": false,
		"web.tmp": false, "web.yaml.tmp": false,
	} {
		if got := IsManifestName(name); got != want {
			t.Errorf("IsManifestName(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestExamplesLoad loads the repository's examples as the agent would.
func TestExamplesLoad(t *testing.T) {
	snap, err := LoadDir("../../examples/pods", Options{SkipTrustCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if errs := snap.Errors(); len(errs) > 0 {
		t.Fatalf("examples have problems: %v", errs)
	}
	if len(snap.Files) < 8 || len(snap.Pods) < 8 {
		t.Fatalf("want at least 8 example files and pods, got %d and %d", len(snap.Files), len(snap.Pods))
	}
}

func TestMerge(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	a, b := filepath.Join(d1, "x.yaml"), filepath.Join(d2, "y.yaml")
	loaderWrite(t, a, loaderPodYAML("web"), 0o644)
	loaderWrite(t, b, loaderPodYAML("web")+"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", 0o644)
	fa, fb := LoadFile(a, Options{}), LoadFile(b, Options{})
	snap := Merge(fb, fa, fa)
	first, second := a, b
	if b < a {
		first, second = b, a
	}
	if got := snap.Pods[spec.PodKey{Namespace: "default", Name: "web"}]; got == nil || got.File != first {
		t.Fatalf("pod taken from %v, want the lexically first path %s", got, first)
	}
	if len(snap.Files[second].Pods) != 0 || len(snap.Files[first].Errs) != 1 || len(snap.Files[second].Errs) != 1 {
		t.Errorf("want the loser removed and one error in each file: %v", snap.Errors())
	}
	if len(snap.ConfigMaps) != 1 || len(snap.Files) != 2 {
		t.Errorf("ConfigMaps %d, files %d; want 1 and 2", len(snap.ConfigMaps), len(snap.Files))
	}
}

// Claims load beside pods and follow the duplicate rule on their own: a
// claim and a pod of the same name do not clash.
func TestLoadDirClaims(t *testing.T) {
	dir := t.TempDir()
	claim := func(name, size string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: %s\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: %s\n", name, size)
	}
	loaderWrite(t, filepath.Join(dir, "a.yaml"), loaderPodYAML("data")+"---\n"+claim("data", "1Gi"), 0o644)
	loaderWrite(t, filepath.Join(dir, "b.yaml"), claim("data", "2Gi"), 0o644)
	snap, err := LoadDir(dir, Options{SkipTrustCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	c := snap.Claims[spec.PodKey{Namespace: "default", Name: "data"}]
	if c == nil || filepath.Base(c.File) != "a.yaml" || c.Claim.StorageRequest() != 1<<30 {
		t.Fatalf("claim %+v, want a.yaml's 1Gi", c)
	}
	if got := loaderErrorsOf(snap); !cmp.Equal(got, map[string][]string{"a.yaml": {"duplicate"}, "b.yaml": {"duplicate"}}) {
		t.Errorf("errors %v, want one duplicate in each file", got)
	}
	if len(snap.Pods) != 1 || len(snap.Files[filepath.Join(dir, "b.yaml")].Claims) != 0 {
		t.Errorf("pods %d; b.yaml claims %d: want 1 and 0", len(snap.Pods), len(snap.Files[filepath.Join(dir, "b.yaml")].Claims))
	}
}
