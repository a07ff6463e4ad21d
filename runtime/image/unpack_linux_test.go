package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/image"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

func unpackEntries(t *testing.T, dir string, entries []imagetest.Entry, opts image.UnpackOptions) error {
	t.Helper()
	b, err := imagetest.LayerTar(entries)
	if err != nil {
		t.Fatal(err)
	}
	_, err = image.Unpack(context.Background(), bytes.NewReader(b), dir, opts)
	return err
}

// TestHostileLayers: every layer that tries to reach outside its directory
// is refused, and nothing outside changes. The "outside" directory sits
// right beside the layer directory, where an escape would land.
func TestHostileLayers(t *testing.T) {
	linuxtest.RequireRoot(t)
	many := make([]imagetest.Entry, 0, 101)
	for i := range 101 {
		many = append(many, imagetest.File(fmt.Sprintf("f%03d", i), 0o644, nil))
	}
	for _, tc := range []struct {
		name    string
		entries func(outside string) []imagetest.Entry
		opts    image.UnpackOptions
	}{
		{"dotdot traversal", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.File("../outside/evil", 0o644, []byte("x"))}
		}, image.UnpackOptions{}},
		{"dotdot inside path", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Dir("a/", 0o755), imagetest.File("a/../../outside/evil", 0o644, []byte("x"))}
		}, image.UnpackOptions{}},
		{"absolute path", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.File(outside+"/evil", 0o644, []byte("x"))}
		}, image.UnpackOptions{}},
		{"symlink then write (absolute)", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("link", outside), imagetest.File("link/evil", 0o644, []byte("x"))}
		}, image.UnpackOptions{}},
		{"symlink then write (relative)", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("link", "../outside"), imagetest.File("link/evil", 0o644, []byte("x"))}
		}, image.UnpackOptions{}},
		{"symlink to dotdot then mkdir", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("up", ".."), imagetest.Dir("up/outside/newdir/", 0o755)}
		}, image.UnpackOptions{}},
		{"symlink then hardlink through it", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("link", outside), imagetest.Hardlink("h", "link/canary")}
		}, image.UnpackOptions{}},
		{"hardlink to outside (dotdot)", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Hardlink("h", "../outside/canary")}
		}, image.UnpackOptions{}},
		{"hardlink to outside (absolute)", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Hardlink("h", outside+"/canary")}
		}, image.UnpackOptions{}},
		{"whiteout of dotdot", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.File(".wh...", 0o644, nil)}
		}, image.UnpackOptions{}},
		{"whiteout of dotdot in a dir", func(string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Dir("d/", 0o755), imagetest.File("d/.wh...", 0o644, nil)}
		}, image.UnpackOptions{}},
		{"whiteout through a symlink", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("link", outside), imagetest.Whiteout("link/canary")}
		}, image.UnpackOptions{}},
		{"opaque through a symlink", func(outside string) []imagetest.Entry {
			return []imagetest.Entry{imagetest.Symlink("link", outside), imagetest.Opaque("link")}
		}, image.UnpackOptions{}},
		{"huge file count", func(string) []imagetest.Entry { return many }, image.UnpackOptions{MaxEntries: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sandbox := t.TempDir()
			layer, outside := filepath.Join(sandbox, "layer"), filepath.Join(sandbox, "outside")
			for _, d := range []string{layer, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := treeOf(t, outside)
			err := unpackEntries(t, layer, tc.entries(outside), tc.opts)
			if !errors.Is(err, image.ErrHostileLayer) {
				t.Fatalf("unpack: %v, want ErrHostileLayer", err)
			}
			after := treeOf(t, outside)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("outside changed:\nbefore %v\nafter  %v", before, after)
			}
			if es, _ := os.ReadDir(sandbox); len(es) != 2 {
				t.Errorf("sandbox holds %d entries, want layer and outside only", len(es))
			}
			var st unix.Stat_t
			if err := unix.Stat(filepath.Join(outside, "canary"), &st); err != nil || st.Nlink != 1 {
				t.Errorf("canary gained a link (nlink %d, %v)", st.Nlink, err)
			}
		})
	}
}

// TestLinksInsideAreNotFollowed: legitimate layers replace links instead of
// writing through them, and links may point anywhere as text.
func TestLinksInsideAreNotFollowed(t *testing.T) {
	linuxtest.RequireRoot(t)
	sandbox := t.TempDir()
	layer, outside := filepath.Join(sandbox, "layer"), filepath.Join(sandbox, "outside")
	os.Mkdir(layer, 0o755)
	os.Mkdir(outside, 0o755)
	if err := os.WriteFile(filepath.Join(outside, "canary"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := unpackEntries(t, layer, []imagetest.Entry{
		imagetest.Symlink("etc-link", outside+"/canary"),
		// A later entry of the same name replaces the symlink, never
		// writes through it.
		imagetest.File("etc-link", 0o644, []byte("replaced")),
		imagetest.Symlink("abs", "/etc/passwd"),
		imagetest.Hardlink("abs-hard", "abs"), // links the symlink itself
	}, image.UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "canary")); string(b) != "canary" {
		t.Errorf("canary overwritten: %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(layer, "etc-link")); err != nil || string(b) != "replaced" {
		t.Errorf("etc-link: %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(layer, "abs-hard")); err != nil || target != "/etc/passwd" {
		t.Errorf("abs-hard -> %q, %v", target, err)
	}
}

// TestUnpackKeepsMetadata: ownership, setuid/setgid/sticky, devices, fifos,
// hardlinks, file capabilities and mtimes are kept as the layer says;
// whiteouts become overlayfs whiteouts; forged overlay xattrs are dropped.
func TestUnpackKeepsMetadata(t *testing.T) {
	linuxtest.RequireRoot(t)
	layer := t.TempDir()
	suid := imagetest.File("usr/bin/su", 0o4755, []byte("su"))
	suid.Header.Uid, suid.Header.Gid = 0, 0
	owned := imagetest.File("home/user/file", 0o2640, []byte("data"))
	owned.Header.Uid, owned.Header.Gid = 1000, 1001
	ownedLink := imagetest.Symlink("home/user/link", "file")
	ownedLink.Header.Uid, ownedLink.Header.Gid = 1000, 1001
	sticky := imagetest.Dir("scratch/", 0o1777)
	null := imagetest.Entry{Header: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: imagetest.Epoch}}
	loop := imagetest.Entry{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6, ModTime: imagetest.Epoch}}
	fifo := imagetest.Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600, ModTime: imagetest.Epoch}}
	capped := imagetest.File("usr/bin/ping", 0o755, []byte("ping"))
	// cap_net_raw+ep, in the VFS_CAP_REVISION_2 layout.
	capped.Header.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability":      string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		"SCHILY.xattr.trusted.overlay.redirect": "/etc",
		"SCHILY.xattr.user.note":                "kept",
	}
	entries := []imagetest.Entry{
		imagetest.Dir("usr/", 0o755), imagetest.Dir("usr/bin/", 0o755), suid, capped,
		imagetest.Dir("home/", 0o755), imagetest.Dir("home/user/", 0o750), owned, ownedLink,
		imagetest.Hardlink("home/user/file2", "home/user/file"),
		sticky, imagetest.Dir("dev/", 0o755), null, loop, imagetest.Dir("run/", 0o755), fifo,
		imagetest.Dir("etc/", 0o755), imagetest.Whiteout("etc/removed"), imagetest.Dir("var/", 0o755), imagetest.Opaque("var"),
	}
	if err := unpackEntries(t, layer, entries, image.UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	stat := func(p string) *unix.Stat_t {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(layer, p), &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	for _, c := range []struct {
		path          string
		mode          uint32
		uid, gid      uint32
		rdev          uint64
		checkRdev     bool
		wantTimeEpoch bool
	}{
		{"usr/bin/su", unix.S_IFREG | 0o4755, 0, 0, 0, false, true},
		{"home/user/file", unix.S_IFREG | 0o2640, 1000, 1001, 0, false, true},
		{"home/user", unix.S_IFDIR | 0o750, 0, 0, 0, false, true},
		{"scratch", unix.S_IFDIR | 0o1777, 0, 0, 0, false, true},
		{"dev/null", unix.S_IFCHR | 0o666, 0, 0, unix.Mkdev(1, 3), true, true},
		{"dev/loop9", unix.S_IFBLK | 0o660, 0, 6, unix.Mkdev(7, 9), true, true},
		{"run/fifo", unix.S_IFIFO | 0o600, 0, 0, 0, false, true},
		{"etc/removed", unix.S_IFCHR, 0, 0, 0, true, false},
	} {
		st := stat(c.path)
		if st.Mode != c.mode || st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s: mode %o uid %d gid %d; want %o %d %d", c.path, st.Mode, st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
		if c.checkRdev && st.Rdev != c.rdev {
			t.Errorf("%s: rdev %d:%d, want %d:%d", c.path, unix.Major(st.Rdev), unix.Minor(st.Rdev), unix.Major(c.rdev), unix.Minor(c.rdev))
		}
		if c.wantTimeEpoch && st.Mtim.Sec != imagetest.Epoch.Unix() {
			t.Errorf("%s: mtime %d, want %d", c.path, st.Mtim.Sec, imagetest.Epoch.Unix())
		}
	}
	if st := stat("home/user/link"); st.Uid != 1000 || st.Gid != 1001 || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("symlink owner %d:%d mode %o", st.Uid, st.Gid, st.Mode)
	}
	if a, b := stat("home/user/file"), stat("home/user/file2"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hardlink: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	xattr := func(p, name string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(layer, p), name, buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	if xattr("var", "trusted.overlay.opaque") != "y" {
		t.Error("var: trusted.overlay.opaque is not y")
	}
	if xattr("usr/bin/ping", "security.capability") == "" {
		t.Error("usr/bin/ping lost security.capability")
	}
	if xattr("usr/bin/ping", "user.note") != "kept" {
		t.Error("usr/bin/ping lost user.note")
	}
	if xattr("usr/bin/ping", "trusted.overlay.redirect") != "" {
		t.Error("a layer set trusted.overlay.redirect")
	}
	if _, err := os.Stat(filepath.Join(layer, "etc", ".wh.removed")); err == nil {
		t.Error("the .wh. file itself was written")
	}
}

func TestCorruptLayerLeavesNothing(t *testing.T) {
	linuxtest.RequireRoot(t)
	img := bigLayerImage(t)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	full.ReadFrom(rc)
	rc.Close()
	truncated := full.Bytes()[:full.Len()*2/3]
	for _, tc := range []struct {
		name string
		blob []byte
	}{
		{"truncated gzip", truncated},
		{"not compressed, not a tar", bytes.Repeat([]byte("garbage!"), 1000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
			bad := imagetest.WithRawLayer(t, img, 0, tc.blob)
			ref := reg.Push(t, "corrupt:1", bad)
			s := newStore(t)
			_, err := s.EnsureImage(context.Background(), ref, runtime.PullOptions{})
			if err == nil {
				t.Fatal("pull of a corrupt layer succeeded")
			}
			if !strings.Contains(err.Error(), "unpack") {
				t.Errorf("error %q does not say the unpack failed", err)
			}
			assertNoLitter(t, s, 0)
		})
	}
}

// rawHeader returns a 512-byte tar header block built by archive/tar and
// then patched: typeflag and optional extra fields, checksum recomputed.
func rawHeader(t *testing.T, hdr tar.Header, typeflag byte, patch func(b []byte)) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	b := slices.Clone(buf.Bytes()[:512])
	b[156] = typeflag
	if patch != nil {
		patch(b)
	}
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// TestSparseBombsRefused: a sparse entry lets a few hundred bytes of layer
// declare a gigabyte of zeros; both GNU and PAX sparse forms are refused
// before they fill the disk.
func TestSparseBombsRefused(t *testing.T) {
	const realSize = 1 << 30
	gnu := rawHeader(t, tar.Header{Name: "bomb", Mode: 0o644, Format: tar.FormatGNU}, 'S', func(b []byte) {
		copy(b[386:398], fmt.Sprintf("%011o\x00", realSize-1)) // one empty data fragment at the end
		copy(b[398:410], fmt.Sprintf("%011o\x00", 0))
		copy(b[483:495], fmt.Sprintf("%011o\x00", realSize))
	})
	records := ""
	for _, kv := range [][2]string{{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.name", "bomb"},
		{"GNU.sparse.realsize", fmt.Sprint(realSize)}} {
		records += paxRecord(kv[0], kv[1])
	}
	sparseMap := pad512([]byte(fmt.Sprintf("1\n%d\n0\n", realSize-1)))
	var pax []byte
	pax = append(pax, rawHeader(t, tar.Header{Name: "PaxHeaders/bomb", Mode: 0o644, Size: int64(len(records)), Format: tar.FormatUSTAR}, 'x', nil)...)
	pax = append(pax, pad512([]byte(records))...)
	pax = append(pax, rawHeader(t, tar.Header{Name: "GNUSparseFile.0/bomb", Mode: 0o644, Size: int64(len(sparseMap)), Format: tar.FormatUSTAR}, '0', nil)...)
	pax = append(pax, sparseMap...)
	for name, layer := range map[string][]byte{"gnu": gnu, "pax": pax} {
		t.Run(name, func(t *testing.T) {
			layer = append(slices.Clone(layer), make([]byte, 1024)...) // end-of-archive
			dir := t.TempDir()
			_, err := image.Unpack(context.Background(), bytes.NewReader(layer), dir, image.UnpackOptions{})
			if !errors.Is(err, image.ErrHostileLayer) {
				t.Fatalf("unpack of a %d-byte sparse bomb: %v, want ErrHostileLayer", len(layer), err)
			}
			var used int64
			filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
				if err == nil {
					used += info.Size()
				}
				return nil
			})
			if used > 1<<20 {
				t.Errorf("the refused layer still wrote %d bytes", used)
			}
		})
	}
}

// paxRecord formats "LEN key=value\n", where LEN counts itself.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body)
	for len(fmt.Sprint(n))+len(body) != n {
		n = len(fmt.Sprint(n)) + len(body)
	}
	return fmt.Sprint(n) + body
}
