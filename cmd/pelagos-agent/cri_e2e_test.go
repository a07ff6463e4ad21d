package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/pelagos-containers/pelagos-agent/reconcile/agent"
	"github.com/pelagos-containers/pelagos-agent/runtime/image/imagetest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

// CRIToolsVersion is the cri-tools release whose crictl and critest the
// tests build through the module proxy.
const CRIToolsVersion = "v1.37.0"

// criTools builds crictl and critest once per test process, into binDir's
// sibling that TestMain removes; the Go build cache makes later runs fast.
var criTools = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "pelagos-cri-tools-")
	if err != nil {
		return nil, err
	}
	criToolsDir = dir
	env := append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+dir)
	install := exec.Command("go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+CRIToolsVersion)
	install.Dir, install.Env = dir, env
	if out, err := install.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go install crictl: %v\n%s", err, out)
	}
	// critest is a test binary: built with go test -c in the module.
	dl := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/cri-tools@"+CRIToolsVersion)
	dl.Dir, dl.Env = dir, env
	out, err := dl.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download cri-tools: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download cri-tools: no module directory in %s", out)
	}
	build := exec.Command("go", "test", "-c", "-o", filepath.Join(dir, "critest"), "./cmd/critest")
	build.Dir, build.Env = mod.Dir, env
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c critest: %v\n%s", err, out)
	}
	return map[string]string{"crictl": filepath.Join(dir, "crictl"), "critest": filepath.Join(dir, "critest")}, nil
})

var criToolsDir string

func criTool(tb testing.TB, name string) string {
	tb.Helper()
	tools, err := criTools()
	if err != nil {
		tb.Fatal(err)
	}
	return tools[name]
}

// criEnv is `pelagos-agent cri` under test: its own roots and names, its
// subnet in 10.217.0.0/16 (this area's range), its socket.
type criEnv struct {
	t                  testing.TB
	bin, tag, subnet   string
	runRoot, stateRoot string
	sock, logPath      string
	extra              []string
	cmd                *exec.Cmd
	crictlCfg          string
}

func newCRIEnv(t testing.TB, extra ...string) *criEnv {
	t.Helper()
	linuxtest.RequireRoot(t)
	imagetest.RequireBusybox(t)
	e := &criEnv{t: t, bin: buildAgentBinary(t), tag: linuxtest.RandomName("pc", 5),
		subnet:  fmt.Sprintf("10.217.%d.0/24", 1+rand.IntN(250)),
		runRoot: t.TempDir(), stateRoot: t.TempDir(), extra: extra}
	e.sock = filepath.Join(e.runRoot, "cri.sock")
	e.logPath = filepath.Join(t.TempDir(), "cri.log")
	// crictl reads /etc/crictl.yaml unless told otherwise; an empty one
	// keeps the host's settings out.
	e.crictlCfg = filepath.Join(t.TempDir(), "crictl.yaml")
	if err := os.WriteFile(e.crictlCfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cleanup)
	return e
}

func (e *criEnv) global() []string {
	return []string{"--root", e.stateRoot, "--run-root", e.runRoot, "--bridge", e.tag, "--subnet", e.subnet,
		"--netns-prefix", e.tag + "-", "--nft-table", e.tag, "--cgroup-parent", e.tag, "--log-format", "json"}
}

// start runs the CRI server and waits for its socket to answer.
func (e *criEnv) start() {
	e.t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	args := append(e.global(), append([]string{"cri", "--listen", e.sock}, e.extra...)...)
	e.cmd = exec.Command(e.bin, args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	logf.Close()
	e.eventually("the CRI server answers", func() error {
		_, err := e.crictlErr("version")
		return err
	})
}

// stop ends the server with sig and waits for it.
func (e *criEnv) stop(sig syscall.Signal) {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(sig)
	_ = e.cmd.Wait()
	e.cmd = nil
}

func (e *criEnv) crictlErr(args ...string) (string, error) {
	full := append([]string{"--config", e.crictlCfg, "--runtime-endpoint", "unix://" + e.sock,
		"--image-endpoint", "unix://" + e.sock, "--timeout", "2m"}, args...)
	cmd := exec.Command(criTool(e.t, "crictl"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// crictl runs crictl against the server as a user would; failing fails
// the test.
func (e *criEnv) crictl(args ...string) string {
	e.t.Helper()
	out, err := e.crictlErr(args...)
	if err != nil {
		e.t.Fatalf("%v\nserver log tail:\n%s", err, e.logTail())
	}
	return out
}

func (e *criEnv) logTail() string {
	b, _ := os.ReadFile(e.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// eventually polls cond; the deadline only bounds a hang.
func (e *criEnv) eventually(what string, cond func() error) {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s: %v\nserver log tail:\n%s", what, err, e.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// census is everything the server and its pods could leave behind.
func (e *criEnv) census() linuxtest.Census {
	return linuxtest.Census{NetNSPrefix: e.tag + "-", Bridge: e.tag, MountDirs: []string{e.runRoot, e.stateRoot},
		ProcessArg: e.runRoot, StateRoot: e.stateRoot,
		EmptyDirs: []string{filepath.Join(e.runRoot, "cri"), filepath.Join(e.runRoot, "sandboxes"), filepath.Join(e.runRoot, "containers"),
			filepath.Join(e.stateRoot, "cni")}}
}

// podCgroups lists the pod cgroups left below the test's cgroup parent, in
// every hierarchy (the parent itself outlives pods by design).
func (e *criEnv) podCgroups() []string {
	var out []string
	for _, d := range e.parentCgroups() {
		ents, _ := os.ReadDir(d)
		for _, en := range ents {
			if en.IsDir() && strings.HasPrefix(en.Name(), "pod-") {
				out = append(out, filepath.Join(d, en.Name()))
			}
		}
	}
	return out
}

// parentCgroups are the directories of the cgroup parent: a relative
// parent sits below this process's own cgroup in each hierarchy.
func (e *criEnv) parentCgroups() []string {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrl := strings.TrimPrefix(strings.Split(parts[1], ",")[0], "name=")
		dir := "/sys/fs/cgroup/" + ctrl
		if parts[1] == "" {
			dir = "/sys/fs/cgroup/unified"
			if _, err := os.Stat(dir); err != nil {
				dir = "/sys/fs/cgroup"
			}
		}
		out = append(out, filepath.Join(dir, parts[2], e.tag))
	}
	return out
}

// cleanup stops the server and removes what outlives pods by design
// (bridge, nftables table, cgroup parent); on failure, pods too, through
// the CRI.
func (e *criEnv) cleanup() {
	if e.t.Failed() && e.cmd != nil {
		if out, err := e.crictlErr("pods", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				if _, err := e.crictlErr("rmp", "-f", id); err != nil {
					e.t.Logf("cleanup: %v", err)
				}
			}
		}
	}
	e.stop(syscall.SIGKILL)
	if l, err := netlink.LinkByName(e.tag); err == nil {
		_ = netlink.LinkDel(l)
	}
	if err := linuxtest.DeleteNFTable(e.tag); err != nil {
		e.t.Errorf("cleanup: nftables table %s: %v", e.tag, err)
	}
	for _, d := range e.parentCgroups() {
		removeCgroupTree(d)
	}
}

// criConfigFile writes v as a crictl config file and returns its path.
func criConfigFile(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCRICrictl drives `pelagos-agent cri` with crictl as a user would:
// pull from a loopback registry, run a pod, create and start a container,
// read it back every way crictl can, survive the server's restart, tear
// it all down, and count what is left.
func TestCRICrictl(t *testing.T) {
	e := newCRIEnv(t)
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Push(t, "library/busybox:1.36", imagetest.Busybox(t))
	e.start()

	if out := e.crictl("pull", ref); !strings.Contains(out, "sha256:") {
		t.Errorf("pull said %q", out)
	}
	if out := e.crictl("images"); !strings.Contains(out, reg.Host+"/library/busybox") || !strings.Contains(out, "1.36") {
		t.Errorf("images:\n%s", out)
	}

	logDir := filepath.Join(t.TempDir(), "pods", "default_web_uid1")
	pod := criConfigFile(t, map[string]any{
		"metadata":      map[string]any{"name": "web", "namespace": "default", "uid": "uid1", "attempt": 0},
		"hostname":      "web-host",
		"log_directory": logDir,
		"labels":        map[string]string{"app": "web"},
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"pid": 1}}}, // CONTAINER
	})
	ctr := criConfigFile(t, map[string]any{
		"metadata": map[string]any{"name": "app"},
		"image":    map[string]any{"image": ref},
		"command":  []string{"sh", "-c", "echo hello from crictl; trap 'exit 0' TERM; sleep 3600 & wait"},
		"log_path": "app/0.log",
		"linux": map[string]any{"security_context": map[string]any{
			"namespace_options": map[string]any{"pid": 1}}},
	})
	podID := strings.TrimSpace(e.crictl("runp", pod))
	ctrID := strings.TrimSpace(e.crictl("create", podID, ctr, pod))
	if out := e.crictl("ps", "-a"); !strings.Contains(out, ctrID[:13]) || !strings.Contains(out, "Created") {
		t.Errorf("ps -a after create:\n%s", out)
	}
	e.crictl("start", ctrID)
	if out := e.crictl("ps"); !strings.Contains(out, ctrID[:13]) || !strings.Contains(out, "Running") {
		t.Errorf("ps after start:\n%s", out)
	}
	if out := e.crictl("pods"); !strings.Contains(out, podID[:13]) || !strings.Contains(out, "Ready") || !strings.Contains(out, "web") {
		t.Errorf("pods:\n%s", out)
	}

	var inspect struct {
		Status struct {
			State   string `json:"state"`
			LogPath string `json:"logPath"`
		} `json:"status"`
		Info struct {
			PID int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(e.crictl("inspect", ctrID)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Status.State != "CONTAINER_RUNNING" || inspect.Status.LogPath != filepath.Join(logDir, "app/0.log") || inspect.Info.PID <= 0 {
		t.Errorf("inspect = %+v", inspect)
	}
	var inspectp struct {
		Status struct {
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			NetNS string `json:"netnsPath"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(e.crictl("inspectp", podID)), &inspectp); err != nil {
		t.Fatal(err)
	}
	if inspectp.Status.State != "SANDBOX_READY" || !strings.HasPrefix(inspectp.Status.Network.IP, strings.TrimSuffix(e.subnet, "0/24")) ||
		!strings.HasPrefix(filepath.Base(inspectp.Info.NetNS), e.tag+"-") {
		t.Errorf("inspectp = %+v", inspectp)
	}
	// The workload is in the pod's network namespace, as the kernel says.
	podNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", inspect.Info.PID))
	if err != nil {
		t.Fatal(err)
	}
	var pinned, ctrNS syscall.Stat_t
	if err := syscall.Stat(inspectp.Info.NetNS, &pinned); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", inspect.Info.PID), &ctrNS); err != nil {
		t.Fatal(err)
	}
	if pinned.Ino != ctrNS.Ino {
		t.Errorf("the container's netns %s is not the pod's %s", podNS, inspectp.Info.NetNS)
	}

	e.eventually("the log line", func() error {
		if out := e.crictl("logs", ctrID); !strings.Contains(out, "hello from crictl") {
			return fmt.Errorf("logs: %q", out)
		}
		return nil
	})
	// The log file is where kubelet looks, in the CRI format.
	b, err := os.ReadFile(filepath.Join(logDir, "app", "0.log"))
	if err != nil || !strings.Contains(string(b), " stdout F hello from crictl") {
		t.Errorf("log file: %q, %v", b, err)
	}
	if out := strings.TrimSpace(e.crictl("exec", "-s", ctrID, "hostname")); out != "web-host" {
		t.Errorf("exec -s hostname = %q", out)
	}
	if _, err := e.crictlErr("exec", "-s", ctrID, "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exited with 3") {
		t.Errorf("exec of a failing command: %v", err)
	}
	var stats struct {
		Stats []struct {
			Attributes struct {
				ID string `json:"id"`
			} `json:"attributes"`
			CPU struct {
				UsageCoreNanoSeconds struct {
					Value string `json:"value"`
				} `json:"usageCoreNanoSeconds"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes struct {
					Value string `json:"value"`
				} `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(e.crictl("stats", "-o", "json")), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Stats) != 1 || stats.Stats[0].Attributes.ID != ctrID || stats.Stats[0].CPU.UsageCoreNanoSeconds.Value == "" ||
		stats.Stats[0].Memory.WorkingSetBytes.Value == "" || stats.Stats[0].Memory.WorkingSetBytes.Value == "0" {
		t.Errorf("stats = %+v", stats)
	}
	if out := e.crictl("statsp"); !strings.Contains(out, "web") {
		t.Errorf("statsp:\n%s", out)
	}

	// The server goes and comes back; the workload never notices.
	e.stop(syscall.SIGTERM)
	if err := syscall.Kill(inspect.Info.PID, 0); err != nil {
		t.Fatalf("the container died with the CRI server: %v", err)
	}
	e.start()
	if out := e.crictl("ps"); !strings.Contains(out, ctrID[:13]) || !strings.Contains(out, "Running") {
		t.Errorf("ps after the server's restart:\n%s", out)
	}
	var again struct {
		Info struct {
			PID int `json:"pid"`
		} `json:"info"`
	}
	json.Unmarshal([]byte(e.crictl("inspect", ctrID)), &again)
	if again.Info.PID != inspect.Info.PID {
		t.Errorf("PID %d after the restart, %d before: the container was restarted", again.Info.PID, inspect.Info.PID)
	}
	if out := strings.TrimSpace(e.crictl("exec", "-s", ctrID, "echo", "still here")); out != "still here" {
		t.Errorf("exec after the restart = %q", out)
	}

	e.crictl("stopp", podID)
	if out := e.crictl("pods"); !strings.Contains(out, "NotReady") {
		t.Errorf("pods after stopp:\n%s", out)
	}
	if out := e.crictl("ps", "-a"); !strings.Contains(out, "Exited") {
		t.Errorf("ps -a after stopp:\n%s", out)
	}
	// Stopping gave the network back already.
	linuxtest.Census{NetNSPrefix: e.tag + "-", Bridge: e.tag}.Check(t, 5*time.Second)
	e.crictl("rmp", podID)
	if out := e.crictl("pods", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("pods after rmp: %q", out)
	}
	if out := e.crictl("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("containers after rmp: %q", out)
	}
	e.crictl("rmi", ref)
	if out := e.crictl("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images after rmi: %q", out)
	}
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 5*time.Second)
	if left := e.podCgroups(); len(left) != 0 {
		t.Errorf("pod cgroups left: %v", left)
	}
	if err := syscall.Kill(inspect.Info.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the container's process %d outlived its pod: %v", inspect.Info.PID, err)
	}
}

// TestCRICNI runs a pod whose network a CNI plugin chain makes (bridge,
// host-local, loopback from the host's CNI plugins) instead of the agent's
// bridge: the pod gets the plugin's address, serves on it, and stopping
// the pod hands the address back and leaves no link.
func TestCRICNI(t *testing.T) {
	binDir := ""
	for _, d := range agent.DefaultCNIBinDirs {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			binDir = d
			break
		}
	}
	linuxtest.Require(t, binDir != "", "CNI plugins in "+strings.Join(agent.DefaultCNIBinDirs, " or ")+" (apt-get install containernetworking-plugins)")
	confDir, ipamDir := t.TempDir(), t.TempDir()
	e := newCRIEnv(t)
	cniBridge := e.tag + "c"
	third := 1 + rand.IntN(250)
	subnet := fmt.Sprintf("10.218.%d.0/24", third)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "pelagos-test", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "subnet": %q, "dataDir": %q}},
  {"type": "loopback"}]}`, cniBridge, subnet, ipamDir)
	if err := os.WriteFile(filepath.Join(confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(cniBridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	e.extra = []string{"--cni-conf-dir", confDir, "--cni-bin-dir", binDir}
	reg := imagetest.ServeRegistry(t, imagetest.RegistryOptions{})
	ref := reg.Push(t, "library/busybox:1.36", imagetest.Busybox(t))
	e.start()
	e.crictl("pull", ref)

	pod := criConfigFile(t, map[string]any{
		"metadata": map[string]any{"name": "cni", "namespace": "default", "uid": "uid-cni"},
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}},
	})
	ctr := criConfigFile(t, map[string]any{
		"metadata": map[string]any{"name": "web"}, "image": map[string]any{"image": ref},
		"command": []string{"sh", "-c", "echo served-over-cni > /tmp/index.html; exec httpd -f -p 8080 -h /tmp"},
		"linux":   map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}},
	})
	podID := strings.TrimSpace(e.crictl("runp", pod))
	ctrID := strings.TrimSpace(e.crictl("create", podID, ctr, pod))
	e.crictl("start", ctrID)
	var inspectp struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(e.crictl("inspectp", podID)), &inspectp); err != nil {
		t.Fatal(err)
	}
	ip := inspectp.Status.Network.IP
	if !strings.HasPrefix(ip, fmt.Sprintf("10.218.%d.", third)) {
		t.Fatalf("pod IP %q, want one from the CNI subnet %s", ip, subnet)
	}
	if out := e.crictl("exec", "-s", ctrID, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, ip+"/24") {
		t.Errorf("eth0 in the pod: %q, want %s", out, ip)
	}
	if ports := linuxtest.BridgePorts(e.tag); len(ports) != 0 {
		t.Errorf("the agent's bridge got ports %v for a CNI pod", ports)
	}
	if leases := linuxtest.Files(ipamDir); !slices.Contains(leases, filepath.Join("pelagos-test", ip)) {
		t.Errorf("host-local leases %v, want %s", leases, ip)
	}
	e.eventually("the pod's web server over the CNI network", func() error {
		body, err := httpGet("http://" + ip + ":8080/index.html")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "served-over-cni") {
			return fmt.Errorf("body %q", body)
		}
		return nil
	})

	e.crictl("stopp", podID)
	if leases := linuxtest.Files(ipamDir); slices.Contains(leases, filepath.Join("pelagos-test", ip)) {
		t.Errorf("the lease of %s outlived the stopped pod: %v", ip, leases)
	}
	linuxtest.Census{NetNSPrefix: e.tag + "-", Bridge: cniBridge}.Check(t, 5*time.Second)
	e.crictl("rmp", podID)
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 5*time.Second)
}

// httpGet fetches url with a short timeout and returns the body.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// TestRunServesCRI: `run --cri-listen` serves the CRI beside the manifests
// from one process, and each side sees only its own pods: the CRI lists
// no manifest pod, the agent's API no CRI pod, and the reconciler's
// resyncs leave the CRI's pod running.
func TestRunServesCRI(t *testing.T) {
	e := newAgentEnv(t)
	criSock := filepath.Join(e.runRoot, "cri.sock")
	e.extra = append(e.extra, "--cri-listen", criSock, "--resync", "100ms")
	e.write("rev1", "web.yaml", podYAML("web", "web", "one"))
	e.start()
	e.running("web")
	cfg := filepath.Join(t.TempDir(), "crictl.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	crictl := func(args ...string) string {
		t.Helper()
		full := append([]string{"--config", cfg, "--runtime-endpoint", "unix://" + criSock, "--image-endpoint", "unix://" + criSock, "--timeout", "2m"}, args...)
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(criTool(t, "crictl"), full...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		return strings.TrimSpace(stdout.String())
	}
	pod := criConfigFile(t, map[string]any{"metadata": map[string]any{"name": "kubelets", "namespace": "default", "uid": "uid-k"},
		"linux": map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}}})
	ctr := criConfigFile(t, map[string]any{"metadata": map[string]any{"name": "c"}, "image": map[string]any{"image": "busybox:1.36"},
		"command": []string{"sleep", "3600"},
		"linux":   map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": 1}}}})
	podID := crictl("runp", pod)
	crictl("start", crictl("create", podID, ctr, pod))
	if out := crictl("pods", "-q"); out != podID {
		t.Errorf("the CRI lists %q, want only its pod %s", out, podID)
	}
	// Many resyncs later, the reconciler has neither listed nor removed it.
	time.Sleep(time.Second)
	l, err := e.client.Pods(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Metadata.Name != "web" {
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Metadata.Name)
		}
		t.Errorf("the agent shows %v, want only web", names)
	}
	if out := crictl("pods", "--state", "ready", "-q"); out != podID {
		t.Errorf("the CRI pod after the reconciler's resyncs: %q", out)
	}
	crictl("rmp", "-f", podID)
	e.removeAll()
	e.stop(syscall.SIGTERM)
	e.census().Check(t, 5*time.Second)
}
