package helperbin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestSealed: the copy a helper runs from cannot be changed in any way,
// and is the binary built with the agent.
func TestSealed(t *testing.T) {
	for _, n := range []Name{Helper, Pause} {
		t.Run(string(n), func(t *testing.T) {
			p, err := Path(n)
			if err != nil {
				t.Fatal(err)
			}
			fd, err := strconv.Atoi(strings.TrimPrefix(p, "/proc/self/fd/"))
			if err != nil || fd < sealedFD {
				t.Fatalf("path %s: want a descriptor above %d", p, sealedFD)
			}
			seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
			if err != nil {
				t.Fatal(err)
			}
			want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
			if seals&want != want {
				t.Errorf("seals %#x, want at least %#x", seals, want)
			}
			if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
				if _, err := f.Write([]byte{0}); !errors.Is(err, unix.EPERM) {
					t.Errorf("write to the sealed copy: %v, want EPERM", err)
				}
				if err := f.Truncate(0); !errors.Is(err, unix.EPERM) {
					t.Errorf("truncate the sealed copy: %v, want EPERM", err)
				}
				f.Close()
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE); err == nil {
				t.Error("a seal could still be added")
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := Digest(n); sha256Hex(b) != d {
				t.Errorf("sealed copy digest %s, built with %s", sha256Hex(b), d)
			}
			if Path2, _ := Path(n); Path2 != p {
				t.Errorf("a second copy was made: %s, then %s", p, Path2)
			}
		})
	}
}

// TestUpToDate rebuilds the helpers from this tree as make helpers does
// and compares them with the embedded ones: tests and the agent must never
// run stale helpers. (Keep the flags in step with the Makefile.)
func TestUpToDate(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool: %v", err)
	}
	dir := t.TempDir()
	for n, args := range map[Name][]string{
		Helper: {"-ldflags", "-s -w", "./cmd/pelagos-helper"},
		Pause:  {"-ldflags", "-s -w -E main.entry", "./cmd/pelagos-pause"},
	} {
		out := filepath.Join(dir, string(n))
		cmd := exec.Command(goBin, append([]string{"build", "-trimpath", "-o", out}, args...)...)
		cmd.Dir = "../../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", n, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Digest(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Hex(b); got != want {
			t.Errorf("%s: the embedded helper (%s) is not this tree's (%s): run make helpers", n, want, got)
		}
	}
}

// TestDropResident: once sealed, the embedded bytes leave this process's
// resident memory, and reading them again still gives the same bytes (the
// pages come back from the executable).
func TestDropResident(t *testing.T) {
	if _, err := Path(Helper); err != nil {
		t.Fatal(err)
	}
	data := inPlace(dir + "/" + string(Helper))
	if len(data) == 0 {
		t.Fatal("embedded helper not found in place")
	}
	addr := uintptr(unsafe.Pointer(unsafe.StringData(data)))
	d, _ := Digest(Helper)
	if sha256Hex([]byte(data)) != d { // reads every page back in
		t.Fatal("the embedded helper reads back differently")
	}
	before := mappingRss(t, addr)
	dropResident(Helper)
	after := mappingRss(t, addr)
	if want := len(data) / 1024 * 9 / 10; before-after < want {
		t.Errorf("dropping the embedded helper freed %d kB of the mapping's resident memory (%d -> %d), want at least %d", before-after, before, after, want)
	}
	if sha256Hex([]byte(data)) != d {
		t.Error("the embedded helper reads back differently after the drop")
	}
}

// mappingRss returns the Rss, in kB, of the smaps entry holding addr.
func mappingRss(t *testing.T, addr uintptr) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 1 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			z, _ := strconv.ParseUint(hi, 16, 64)
			in = uintptr(a) <= addr && addr < uintptr(z)
			continue
		}
		if in && len(f) >= 2 && f[0] == "Rss:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatal("no mapping holds the embedded helper")
	return 0
}
