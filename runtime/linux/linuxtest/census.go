package linuxtest

import (
	"bufio"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/hostlock"
)

// RandomName returns prefix followed by n random lowercase letters and
// digits: unique names for bridges, netns prefixes and tables, so that
// concurrent tests never share kernel objects.
func RandomName(prefix string, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return prefix + string(b)
}

// NetNS lists the named network namespaces under /run/netns starting with
// prefix.
func NetNS(prefix string) []string {
	return namesWithPrefix("/run/netns", prefix)
}

// Links lists the host network interfaces whose names start with prefix.
func Links(prefix string) []string {
	return namesWithPrefix("/sys/class/net", prefix)
}

// BridgePorts lists the interfaces attached to bridge.
func BridgePorts(bridge string) []string {
	return namesWithPrefix(filepath.Join("/sys/class/net", bridge, "brif"), "")
}

func namesWithPrefix(dir, prefix string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// MountsUnder lists the mount points at or below dir in this mount
// namespace.
func MountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Processes lists the PIDs of live (non-zombie) processes whose argv
// matches.
func Processes(match func(argv []string) bool) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// ProcessesWithArg lists live processes with arg among their arguments
// (argv[0] included): a test's run root, say.
func ProcessesWithArg(arg string) []int {
	return Processes(func(argv []string) bool {
		for _, a := range argv {
			if a == arg {
				return true
			}
		}
		return false
	})
}

// Files lists the regular files below dir (relative paths): leases,
// records.
func Files(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// Leases lists the IP leases held under a state root: the lease files of
// every pool in <state root>/ipam/<subnet>/ip/, as "<subnet>/<addr>".
func Leases(stateRoot string) []string {
	var out []string
	pools, _ := os.ReadDir(filepath.Join(stateRoot, "ipam"))
	for _, p := range pools {
		for _, f := range Files(filepath.Join(stateRoot, "ipam", p.Name(), "ip")) {
			out = append(out, p.Name()+"/"+f)
		}
	}
	return out
}

// Census is what one test could leak. Zero fields are not checked.
type Census struct {
	NetNSPrefix string   // named netns under /run/netns
	LinkPrefix  string   // host interfaces
	Bridge      string   // interfaces attached to this bridge
	MountDirs   []string // mounts below these directories
	ProcessArg  string   // processes with this argument (a run root)
	EmptyDirs   []string // directories that must hold no regular file (record dirs)
	StateRoot   string   // IP leases under this state root
	Owners      string   // host-wide owner entries pointing into this run root
}

// Owners lists the host-wide owner entries whose sandbox directory is
// under runRoot.
func Owners(runRoot string) []string {
	ents, _ := os.ReadDir(hostlock.OwnersDir())
	var out []string
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(hostlock.OwnersDir(), e.Name())); err == nil && strings.HasPrefix(t, runRoot+"/") {
			out = append(out, e.Name())
		}
	}
	return out
}

// Leaks returns one line per leaked object.
func (c Census) Leaks() []string {
	var out []string
	add := func(kind string, items []string) {
		for _, it := range items {
			out = append(out, kind+" "+it)
		}
	}
	if c.NetNSPrefix != "" {
		add("netns", NetNS(c.NetNSPrefix))
	}
	if c.LinkPrefix != "" {
		add("link", Links(c.LinkPrefix))
	}
	if c.Bridge != "" {
		add("bridge port", BridgePorts(c.Bridge))
	}
	for _, d := range c.MountDirs {
		add("mount", MountsUnder(d))
	}
	if c.ProcessArg != "" {
		for _, pid := range ProcessesWithArg(c.ProcessArg) {
			out = append(out, "process "+strconv.Itoa(pid))
		}
	}
	if c.StateRoot != "" {
		add("lease", Leases(c.StateRoot))
	}
	if c.Owners != "" {
		add("owner entry", Owners(c.Owners))
	}
	for _, d := range c.EmptyDirs {
		for _, f := range Files(d) {
			out = append(out, "file "+filepath.Join(d, f))
		}
	}
	return out
}

// Check fails t if anything leaked. The kernel frees a veth pair after its
// namespace asynchronously, so leaks are re-counted for up to settle before
// failing; nothing our code does is awaited this way, only the kernel.
func (c Census) Check(t testing.TB, settle time.Duration) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		leaks := c.Leaks()
		if len(leaks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("census: %d objects leaked:\n  %s", len(leaks), strings.Join(leaks, "\n  "))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreeSubnet returns a /24 of the /16 base ("10.203") that no running
// agent holds (hostlock), from a random start: agents of tests run at once
// by several processes on one machine must not meet on a subnet, or the
// second refuses to start.
func FreeSubnet(base string) string {
	held, _ := hostlock.Held(hostlock.Subnet)
	start := mrand.IntN(250)
	for i := range 250 {
		cand := fmt.Sprintf("%s.%d.0/24", base, (start+i)%250+1)
		p := netip.MustParsePrefix(cand)
		free := true
		for h := range held {
			if hp, err := netip.ParsePrefix(h); err == nil && hp.Overlaps(p) {
				free = false
			}
		}
		if free {
			return cand
		}
	}
	return fmt.Sprintf("%s.%d.0/24", base, start+1)
}
