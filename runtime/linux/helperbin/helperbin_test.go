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
