package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// podmanPeer runs `podman kube play`/`kube down` — the peer of the side by
// side benchmark — in a world of its own, so that nothing it does reaches
// the host's podman, its network or its /run, and the machine is left as
// it was found:
//
//   - storage, run root, temporary and network configuration live in one
//     temporary directory (containers.conf and storage.conf of its own,
//     passed by CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, and as flags
//     so that the cleanup podman conmon runs sees them too);
//   - every podman command runs through nsenter in the mount and network
//     namespaces of a holder process (`unshare --mount --net`): there /run
//     and /dev/shm are private tmpfs (podman's netns pins, crun's state and
//     the lock memory), so its bridge, veths and iptables rules live and die
//     with that network namespace, and its pods can reach nothing outside;
//   - on this machine's hybrid cgroups crun refuses to run while a
//     controller (hugetlb) is on the cgroup2 mount ("cgroups in hybrid mode
//     not supported"); in the holder's mount namespace only,
//     /sys/fs/cgroup/unified is unmounted, so crun sees a v1 host and
//     podman's cgroupfs manager uses the v1 hierarchies as on any v1
//     machine. The host's mounts are never touched;
//   - cgroups are the one host-global thing podman makes (under
//     libpod_parent, and it leaves its pods' directories in the name=systemd
//     hierarchy behind): the ones that did not exist before the run are
//     removed at the end (rmdir, deepest first, so a cgroup with processes
//     is never removed).
//
// The image is imported with `podman load` from an archive built here, so
// no registry is reached.
type podmanPeer struct {
	dir     string
	holder  *exec.Cmd
	global  []string // podman's global flags
	env     []string
	version string
	cgroups map[string]bool // directories under libpod_parent before the run
	files   []string
}

// podmanCgroupGlob is where podman's cgroupfs manager puts pods on a v1
// host; libpod_parent itself is included.
const podmanCgroupGlob = "/sys/fs/cgroup/*/libpod_parent"

// newPodmanPeer prepares podman, or returns why it cannot: podman, crun,
// unshare or nsenter missing.
func newPodmanPeer(b *testing.B, busybox v1.Image) (*podmanPeer, error) {
	for _, tool := range []string{"podman", "crun", "conmon", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not installed", tool)
		}
	}
	out, err := exec.Command("podman", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("podman --version: %w", err)
	}
	p := &podmanPeer{version: strings.TrimSpace(string(out)), cgroups: podmanCgroups()}
	b.Cleanup(p.close)
	if p.dir, err = os.MkdirTemp("", "pelagos-bench-podman-"); err != nil {
		return nil, err
	}
	for _, d := range []string{"root", "runroot", "tmp", "net"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	// Without CAP_SYS_RESOURCE crun cannot raise RLIMIT_NOFILE to podman's
	// default (1048576): containers get this process's hard limit.
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		return nil, err
	}
	conf := filepath.Join(p.dir, "containers.conf")
	storage := filepath.Join(p.dir, "storage.conf")
	p.env = append(os.Environ(), "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+storage)
	files := map[string]string{
		conf: fmt.Sprintf(`[containers]
default_ulimits = ["nofile=%[2]d:%[2]d", "nproc=4096:4096"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "%[1]s/tmp"
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CONTAINERS_CONF=%[3]s", "CONTAINERS_STORAGE_CONF=%[4]s"]
[network]
network_config_dir = "%[1]s/net"
`, p.dir, nofile.Max, conf, storage),
		storage: fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = \"%[1]s/root\"\nrunroot = \"%[1]s/runroot\"\n", p.dir),
		// Written rather than made with `network create`: podman 4.3 has no
		// flag for the bridge's name. DNS off: no aardvark-dns process, as
		// our agent runs no DNS server either.
		filepath.Join(p.dir, "net", "pbbench.json"): fmt.Sprintf(`{"name": "pbbench", "id": "%s",
 "driver": "bridge", "network_interface": "pbpodman0", "created": "2026-01-01T00:00:00Z",
 "subnets": [{"subnet": "10.231.0.0/16", "gateway": "10.231.0.1"}],
 "ipv6_enabled": false, "internal": false, "dns_enabled": false, "ipam_options": {"driver": "host-local"}}
`, strings.Repeat("be", 32)),
	}
	for f, content := range files {
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	p.global = []string{"--root", p.dir + "/root", "--runroot", p.dir + "/runroot", "--tmpdir", p.dir + "/tmp",
		"--network-config-dir", p.dir + "/net", "--cgroup-manager", "cgroupfs", "--events-backend", "file"}

	p.holder = exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--", "/bin/sh", "-c", `set -e
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir /run/netns
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
ip link set lo up
echo ready
exec sleep infinity`)
	stdout, err := p.holder.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	p.holder.Stderr = &stderr
	if err := p.holder.Start(); err != nil {
		return nil, fmt.Errorf("podman's namespaces: %w", err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		return nil, fmt.Errorf("podman's namespaces: %s", stderr.String())
	}

	archive := filepath.Join(p.dir, "busybox.tar")
	if err := imagetest.WriteDockerArchive(archive, map[string]v1.Image{"docker.io/library/busybox:1.36": busybox}); err != nil {
		return nil, err
	}
	if _, err := p.run("load", "-i", archive); err != nil {
		return nil, err
	}
	// The first play builds podman's pause image (from the host's
	// catatonit): not a pod's cost.
	f, err := p.manifest([]string{"pmwarm"})
	if err != nil {
		return nil, err
	}
	if _, err := p.run("kube", "play", "--network", "pbbench", f); err != nil {
		return nil, err
	}
	if _, err := p.run("kube", "down", f); err != nil {
		return nil, err
	}
	return p, nil
}

// run runs one podman command in podman's namespaces.
func (p *podmanPeer) run(args ...string) ([]byte, error) {
	argv := append([]string{"-t", strconv.Itoa(p.holder.Process.Pid), "-m", "-n", "podman"}, p.global...)
	cmd := exec.Command("nsenter", append(argv, args...)...)
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// manifest writes the pods of names as one multi-document file: one
// `kube play` of a batch is podman's fastest way to start it (ten pods: 1.6
// s, against 1.9 s for ten plays one after another and 1.5 s for ten at
// once, whose `kube down`s were slower).
func (p *podmanPeer) manifest(names []string) (string, error) {
	var buf bytes.Buffer
	for i, n := range names {
		if i > 0 {
			buf.WriteString("---\n")
		}
		fmt.Fprintf(&buf, benchPod, n)
	}
	f := filepath.Join(p.dir, names[0]+".yaml")
	p.files = append(p.files, f)
	return f, os.WriteFile(f, buf.Bytes(), 0o644)
}

// round plays names and downs them: the time until `kube play` returns
// (every container started) and until `kube down` returns (pods removed).
// mem, when set, samples conmon and catatonit while the pods run.
func (p *podmanPeer) round(b *testing.B, names []string, mem *podmanMem) (running, gone time.Duration) {
	f, err := p.manifest(names)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := p.run("kube", "play", "--network", "pbbench", f); err != nil {
		b.Fatal(err)
	}
	running = time.Since(start)
	if mem != nil {
		mem.sample(p.dir)
	}
	start = time.Now()
	if _, err := p.run("kube", "down", f); err != nil {
		b.Fatal(err)
	}
	return running, time.Since(start)
}

// nsenterFloor is what the nsenter in front of every podman command costs:
// its figures include one.
func (p *podmanPeer) nsenterFloor() time.Duration {
	start := time.Now()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(p.holder.Process.Pid), "-m", "-n", "/bin/true")
	if cmd.Run() != nil {
		return 0
	}
	return time.Since(start)
}

// conmons lists the conmon processes of the podman run in dir: they carry
// the directory in their arguments.
func conmons(dir string) []int {
	return linuxtest.Processes(func(argv []string) bool {
		if filepath.Base(argv[0]) != "conmon" {
			return false
		}
		for _, a := range argv {
			if strings.HasPrefix(a, dir+"/") {
				return true
			}
		}
		return false
	})
}

// close removes every pod, stops podman's namespaces and removes what
// podman left on the host: its new cgroups, its directory. Anything left
// running is reported, not hunted by name.
func (p *podmanPeer) close() {
	if p.holder != nil && p.holder.Process != nil {
		if out, err := p.run("pod", "rm", "--all", "--force", "--time", "0"); err != nil {
			fmt.Fprintf(os.Stderr, "podman cleanup: %v\n%s", err, out)
		}
		for _, pid := range conmons(p.dir) {
			fmt.Fprintf(os.Stderr, "podman cleanup: conmon %d still running; killed\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = p.holder.Process.Kill()
		_ = p.holder.Wait()
	}
	if p.cgroups != nil {
		removeNewCgroups(p.cgroups)
	}
	if p.dir != "" {
		for _, m := range linuxtest.MountsUnder(p.dir) {
			fmt.Fprintf(os.Stderr, "podman cleanup: %s still mounted on the host\n", m)
		}
		_ = os.RemoveAll(p.dir)
	}
}

// podmanCgroups lists the directories under podman's cgroup parents (the
// parents included).
func podmanCgroups() map[string]bool {
	out := map[string]bool{}
	parents, _ := filepath.Glob(podmanCgroupGlob)
	for _, parent := range parents {
		out[parent] = true
		filepath.WalkDir(parent, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out[p] = true
			}
			return nil
		})
	}
	return out
}

// podmanID is how podman names the cgroups of its pods and containers.
var podmanID = regexp.MustCompile(`^(libpod-(conmon-)?)?[0-9a-f]{64}(\.scope)?$`)

// removeNewCgroups removes the cgroup directories podman made during the
// run: those absent from before, named by podman (its IDs, or
// libpod_parent itself), deepest first. rmdir fails on a cgroup that still
// has processes or children, so nothing in use is ever removed.
func removeNewCgroups(before map[string]bool) {
	var made []string
	for d := range podmanCgroups() {
		if !before[d] && (podmanID.MatchString(filepath.Base(d)) || filepath.Base(d) == "libpod_parent") {
			made = append(made, d)
		}
	}
	slices.SortFunc(made, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, d := range made {
		if err := os.Remove(d); err != nil {
			fmt.Fprintf(os.Stderr, "podman cleanup: cgroup %s: %v\n", d, err)
		}
	}
}

// podmanMem collects the private and proportional memory of podman's
// per-pod processes: conmon (one per container, the infra container
// included) and catatonit (the infra container's pause).
type podmanMem struct {
	conmonPriv, conmonPss, catatonitPriv, catatonitPss []int
}

func (m *podmanMem) sample(dir string) {
	ours := map[int]bool{}
	for _, pid := range conmons(dir) {
		ours[pid] = true
		if pss, priv, err := linuxtest.Smaps(pid); err == nil {
			m.conmonPriv, m.conmonPss = append(m.conmonPriv, priv), append(m.conmonPss, pss)
		}
	}
	for _, pid := range linuxtest.Processes(func(argv []string) bool { return filepath.Base(argv[0]) == "catatonit" }) {
		if !ours[procParent(pid)] {
			continue
		}
		if pss, priv, err := linuxtest.Smaps(pid); err == nil {
			m.catatonitPriv, m.catatonitPss = append(m.catatonitPriv, priv), append(m.catatonitPss, pss)
		}
	}
}

// perPod is podman's memory per one-container pod: a catatonit and two
// conmons (the infra container's and the container's), from the medians.
func (m *podmanMem) perPod() (priv, pss int) {
	return medianInt(m.catatonitPriv) + 2*medianInt(m.conmonPriv), medianInt(m.catatonitPss) + 2*medianInt(m.conmonPss)
}
