// Package helperbin carries the helper binaries (cmd/pelagos-helper and
// cmd/pelagos-pause, built by `make helpers` for the agent's architecture)
// inside the agent binary, and runs them only from sealed copies: each is
// checked against the digest built with it, copied once per process into a
// memfd that is then sealed against every change, checked again, and
// executed through /proc/self/fd/N. The agent's own file is therefore never
// the executable of a process in a container, and a helper's executable
// cannot be rewritten through /proc/PID/exe (CVE-2019-5736). See
// docs/adr/0004-process-model-v2.md.
package helperbin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Name is a helper binary.
type Name string

// The helpers.
const (
	Helper Name = "pelagos-helper" // shim and container init
	Pause  Name = "pelagos-pause"  // the sandbox's pause
)

// ErrNotBuilt is returned when the agent was built without its helpers.
var ErrNotBuilt = errors.New("helper binaries not built: run make helpers")

// sealedFD is the lowest descriptor number a sealed copy is moved to.
// os.StartProcess puts a child's Files at 0..n-1 and may use numbers just
// above n while arranging them, which must never clobber the descriptor the
// child then execs through /proc/self/fd.
const sealedFD = 256

type sealed struct {
	f   *os.File // kept referenced: its finalizer would close the fd
	err error
}

var (
	digestsOnce sync.Once
	digests     map[Name]string
	digestsErr  error
	copies      sync.Map // Name -> func() sealed
)

// Path returns the path that executes the sealed copy of the helper,
// making the copy on first use.
func Path(n Name) (string, error) {
	f, err := file(n)
	if err != nil {
		return "", err
	}
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), nil
}

func file(n Name) (*os.File, error) {
	v, _ := copies.LoadOrStore(n, sync.OnceValue(func() sealed {
		f, err := seal(n)
		return sealed{f, err}
	}))
	s := v.(func() sealed)()
	return s.f, s.err
}

// Digest returns the SHA-256 recorded for the helper when it was built.
func Digest(n Name) (string, error) {
	digestsOnce.Do(func() { digests, digestsErr = readDigests() })
	if digestsErr != nil {
		return "", digestsErr
	}
	d, ok := digests[n]
	if !ok {
		return "", fmt.Errorf("helper %s: no digest recorded: %w", n, ErrNotBuilt)
	}
	return d, nil
}

func readDigests() (map[Name]string, error) {
	b, err := fs.ReadFile(files, dir+"/SHA256SUMS")
	if err != nil {
		return nil, ErrNotBuilt
	}
	out := map[Name]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("helper digests: malformed line %q", sc.Text())
		}
		out[Name(strings.TrimPrefix(f[1], "*"))] = f[0]
	}
	return out, nil
}

// seal copies the helper into a memfd, checking it against its digest on
// the way, seals it and checks the sealed content. The copy streams: the
// agent never holds a helper on its heap.
func seal(n Name) (*os.File, error) {
	want, err := Digest(n)
	if err != nil {
		return nil, err
	}
	src, err := files.Open(dir + "/" + string(n))
	if err != nil {
		return nil, fmt.Errorf("helper %s: %w", n, ErrNotBuilt)
	}
	defer src.Close()
	fd, err := memfd(string(n))
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "memfd:"+string(n))
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), src); err != nil {
		return nil, fmt.Errorf("helper %s: copy into memfd: %w", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("helper %s: embedded binary has digest %s, built with %s: rebuild with make helpers", n, got, want)
	}
	if err := addSeals(fd); err != nil {
		return nil, fmt.Errorf("helper %s: %w", n, err)
	}
	// What runs is what was checked: read the sealed copy back.
	h.Reset()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<40)); err != nil {
		return nil, fmt.Errorf("helper %s: read the sealed copy: %w", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("helper %s: sealed copy has digest %s, want %s", n, got, want)
	}
	high, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, sealedFD)
	if err != nil {
		return nil, fmt.Errorf("helper %s: move the memfd above %d: %w", n, sealedFD, os.NewSyscallError("fcntl", err))
	}
	ok = true
	f.Close()
	dropResident(n)
	return os.NewFile(uintptr(high), "memfd:"+string(n)), nil
}

// memfd makes an executable, sealable memfd. MFD_EXEC is asked for
// explicitly where the kernel knows it (6.3+), so that vm.memfd_noexec=1
// does not make it non-executable; with vm.memfd_noexec=2 no memfd may be
// executed and the agent cannot run.
func memfd(name string) (int, error) {
	const mfdExec = 0x10 // MFD_EXEC
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|mfdExec)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if errors.Is(err, unix.EACCES) {
		return -1, fmt.Errorf("helper %s: memfd_create refused an executable memfd: the sysctl vm.memfd_noexec is 2; the agent runs its helpers from sealed memfds and needs it at 0 or 1", name)
	}
	if err != nil {
		return -1, fmt.Errorf("helper %s: %w", name, os.NewSyscallError("memfd_create", err))
	}
	return fd, nil
}

// addSeals forbids every change to the memfd's content and size, and
// further seals; F_SEAL_EXEC (6.3+) also freezes its mode where known.
func addSeals(fd int) error {
	const sealExec = 0x20 // F_SEAL_EXEC
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|sealExec)
	if errors.Is(err, unix.EINVAL) {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals)
	}
	if err != nil {
		return fmt.Errorf("seal memfd: %w", os.NewSyscallError("fcntl(F_ADD_SEALS)", err))
	}
	return nil
}
