// Package hostlock reserves the host-wide names of an agent — its state
// and run roots, bridge, subnet, netns prefix, nftables table and cgroup
// parent — for one owner (a state root with its run root) at a time, so
// that a second agent configured with other roots but a name in common
// refuses to start instead of deleting the first one's pods in its garbage
// collection.
//
// Each name is a file under Dir/locks (<kind>-<name>.lock) holding a
// shared flock(2) for as long as a process of the owner uses the name: the
// kernel drops it when the process dies, so a crash never leaves a stale
// reservation. The file says which owner holds it; a process of the same
// owner (the agent's CLI beside it) takes the same lock too, one of
// another owner is refused with the holder's state root and PIDs. Names
// that overlap count as the same: a subnet inside another, a netns prefix
// that is a prefix of another, a path below another. Every acquisition and
// release holds an exclusive flock on Dir/locks/.guard for its few system
// calls, so that checking and taking a name are one step across processes.
//
// Within a process the locks are counted: several Runtime objects over the
// same names (an agent's workers and its GC, tests) share them, and the
// files are closed when the last one releases them.
package hostlock

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Dir is the host-wide directory of the locks (Dir/locks) and of other
// host-wide records of the agents. It is on /run, which a reboot empties
// together with the kernel objects the names stand for.
const Dir = "/run/pelagos"

// LocksDir is where the lock files are.
func LocksDir() string { return filepath.Join(Dir, "locks") }

// OwnersDir is where the runtime keeps the host-wide owner entries of its
// sandboxes (runtime/linux, owners.go).
func OwnersDir() string { return filepath.Join(Dir, "owners") }

// Kind is a kind of host-wide name.
type Kind string

// The kinds of names, each with the flag that sets it.
const (
	StateRoot    Kind = "state-root"
	RunRoot      Kind = "run-root"
	Bridge       Kind = "bridge"
	Subnet       Kind = "subnet"
	NetNSPrefix  Kind = "netns-prefix"
	NFTable      Kind = "nftables-table"
	CgroupParent Kind = "cgroup-parent"
)

var flags = map[Kind]string{
	StateRoot: "--root", RunRoot: "--run-root", Bridge: "--bridge", Subnet: "--subnet",
	NetNSPrefix: "--netns-prefix", NFTable: "--nft-table", CgroupParent: "--cgroup-parent",
}

// overlap reports whether two names of kind k stand for objects in common.
func (k Kind) overlap(a, b string) bool {
	switch k {
	case StateRoot, RunRoot, CgroupParent:
		return a == b || strings.HasPrefix(a, strings.TrimSuffix(b, "/")+"/") || strings.HasPrefix(b, strings.TrimSuffix(a, "/")+"/")
	case NetNSPrefix:
		return strings.HasPrefix(a, b) || strings.HasPrefix(b, a)
	case Subnet:
		pa, ea := netip.ParsePrefix(a)
		pb, eb := netip.ParsePrefix(b)
		return ea == nil && eb == nil && pa.Overlaps(pb)
	default:
		return a == b
	}
}

// Name is one host-wide name.
type Name struct {
	Kind  Kind
	Value string
}

func (n Name) String() string { return string(n.Kind) + " " + n.Value }

func (n Name) key() string { return string(n.Kind) + "\x00" + n.Value }

// File is the lock file of n. Names are escaped (a path, a CIDR); a name
// too long for a file name is hashed, and the file's content has it.
func (n Name) File() string {
	v := url.PathEscape(n.Value)
	if len(v) > 180 {
		sum := sha256.Sum256([]byte(n.Value))
		v = hex.EncodeToString(sum[:16])
	}
	return filepath.Join(LocksDir(), string(n.Kind)+"-"+v+".lock")
}

// Owner holds names: one agent's state root and run root.
type Owner struct {
	StateRoot string `json:"stateRoot"`
	RunRoot   string `json:"runRoot"`
}

// content is what a lock file says.
type content struct {
	Kind  Kind   `json:"kind"`
	Name  string `json:"name"`
	Owner Owner  `json:"owner"`
	PID   int    `json:"pid"` // the process that took it first
}

// ConflictError is a name another owner holds (or one overlapping it).
type ConflictError struct {
	Want   Name
	Held   Name
	Holder Owner
	PIDs   []int // processes holding it (from /proc/locks)
	Path   string
}

func (e *ConflictError) Error() string {
	what := e.Want.String()
	if e.Held != e.Want {
		what += " overlaps " + e.Held.String() + ", which"
	}
	pids := "pid unknown"
	if len(e.PIDs) > 0 {
		var s []string
		for _, p := range e.PIDs {
			s = append(s, strconv.Itoa(p))
		}
		pids = "pid " + strings.Join(s, ", ")
	}
	return fmt.Sprintf("%s is used by another pelagos-agent (%s) with state root %s and run root %s (lock %s); stop it first or give this one its own %s",
		what, pids, e.Holder.StateRoot, e.Holder.RunRoot, e.Path, flags[e.Want.Kind])
}

// held is a lock this process holds.
type held struct {
	f     *os.File
	owner Owner
	refs  int
}

var process = struct {
	sync.Mutex
	locks map[string]*held
}{locks: map[string]*held{}}

// Set is the names one user (a Runtime) holds; Release gives them back.
type Set struct {
	once  sync.Once
	names []Name
}

// Acquire takes names for owner, all or none.
func Acquire(owner Owner, names []Name) (*Set, error) {
	process.Lock()
	defer process.Unlock()
	unguard, err := guard()
	if err != nil {
		return nil, err
	}
	defer unguard()
	set := &Set{}
	for _, n := range names {
		if err := acquire(owner, n); err != nil {
			release(set.names)
			return nil, err
		}
		set.names = append(set.names, n)
	}
	return set, nil
}

// Release gives the names back; the files of names no process holds any
// more are removed. Releasing twice is releasing once.
func (s *Set) Release() {
	s.once.Do(func() {
		process.Lock()
		defer process.Unlock()
		unguard, err := guard()
		if err == nil {
			defer unguard()
		}
		release(s.names)
	})
}

// Held lists the names of kind that live processes hold, with their
// owners: what an operator (or a test choosing a free subnet) may not use.
func Held(kind Kind) (map[string]Owner, error) {
	unguard, err := guard()
	if err != nil {
		return nil, err
	}
	defer unguard()
	ents, err := os.ReadDir(LocksDir())
	if err != nil {
		return nil, fmt.Errorf("host-wide locks: %w", err)
	}
	out := map[string]Owner{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), string(kind)+"-") {
			continue
		}
		f, err := os.Open(filepath.Join(LocksDir(), e.Name()))
		if err != nil {
			continue
		}
		if c, err := readContent(f); err == nil && c.Kind == kind && flock(f, unix.LOCK_EX|unix.LOCK_NB) != nil {
			out[c.Name] = c.Owner
		}
		f.Close()
	}
	return out, nil
}

// guard takes the exclusive lock that makes each acquisition and release
// one step across processes.
func guard() (func(), error) {
	if err := os.MkdirAll(LocksDir(), 0o755); err != nil {
		return nil, fmt.Errorf("host-wide locks: %w", err)
	}
	path := filepath.Join(LocksDir(), ".guard")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("host-wide locks: %w", err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("host-wide locks: %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return os.NewSyscallError("flock", err)
			}
			return nil
		}
	}
}

// acquire takes one name; process and the guard are held.
func acquire(owner Owner, n Name) error {
	if h := process.locks[n.key()]; h != nil {
		if h.owner != owner {
			return &ConflictError{Want: n, Held: n, Holder: h.owner, PIDs: []int{os.Getpid()}, Path: n.File()}
		}
		h.refs++
		return nil
	}
	if err := checkOverlaps(owner, n); err != nil {
		return err
	}
	path := n.File()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s: %w", n, err)
	}
	switch err := flock(f, unix.LOCK_EX|unix.LOCK_NB); {
	case err == nil:
		// Nobody holds it: it is ours, shared with our owner's other
		// processes from now on.
		b, _ := json.Marshal(content{Kind: n.Kind, Name: n.Value, Owner: owner, PID: os.Getpid()})
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(append(b, '\n'), 0)
		}
		if err == nil {
			err = flock(f, unix.LOCK_SH)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("lock %s: %s: %w", n, path, err)
		}
	case errors.Is(err, unix.EWOULDBLOCK):
		c, rerr := readContent(f)
		if rerr != nil || c.Owner != owner {
			f.Close()
			return &ConflictError{Want: n, Held: n, Holder: c.Owner, PIDs: holders(path), Path: path}
		}
		if err := flock(f, unix.LOCK_SH|unix.LOCK_NB); err != nil {
			f.Close()
			return fmt.Errorf("lock %s: %s: %w", n, path, err)
		}
	default:
		f.Close()
		return fmt.Errorf("lock %s: %s: %w", n, path, err)
	}
	process.locks[n.key()] = &held{f: f, owner: owner, refs: 1}
	return nil
}

// checkOverlaps refuses n when another owner holds a name of its kind
// that overlaps it. Lock files of the kind that nobody holds any more (an
// agent killed before it released its names) are removed on the way,
// whether or not they overlap n, so that they do not pile up.
func checkOverlaps(owner Owner, n Name) error {
	ents, err := os.ReadDir(LocksDir())
	if err != nil {
		return fmt.Errorf("host-wide locks: %w", err)
	}
	for _, e := range ents {
		path := filepath.Join(LocksDir(), e.Name())
		if !strings.HasPrefix(e.Name(), string(n.Kind)+"-") || path == n.File() {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if flock(f, unix.LOCK_EX|unix.LOCK_NB) == nil {
			// Stale: nobody holds it. The guard keeps anyone from taking
			// it between the test and the removal.
			os.Remove(path)
			f.Close()
			continue
		}
		c, err := readContent(f)
		f.Close()
		if err != nil || c.Kind != n.Kind || !n.Kind.overlap(c.Name, n.Value) {
			continue
		}
		if c.Owner != owner {
			return &ConflictError{Want: n, Held: Name{Kind: c.Kind, Value: c.Name}, Holder: c.Owner, PIDs: holders(path), Path: path}
		}
	}
	return nil
}

// release gives names back; process and the guard are held.
func release(names []Name) {
	for _, n := range names {
		h := process.locks[n.key()]
		if h == nil {
			continue
		}
		if h.refs--; h.refs > 0 {
			continue
		}
		delete(process.locks, n.key())
		// The last holder on the host removes the file.
		if flock(h.f, unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(n.File())
		}
		h.f.Close()
	}
}

func readContent(f *os.File) (content, error) {
	b := make([]byte, 4096)
	k, err := f.ReadAt(b, 0)
	if k == 0 {
		return content{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	var c content
	if err := json.Unmarshal(b[:k], &c); err != nil {
		return content{}, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return c, nil
}

// holders lists the processes holding a flock on path, from /proc/locks.
func holders(path string) []int {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	dev := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil
	}
	var pids []int
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		// "1: FLOCK  ADVISORY  READ 1234 fd:01:5678 0 EOF"; waiters have "->".
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != dev {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}
