package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile/kubeapi"
)

// hostReader describes this machine for the Kubernetes API's Node object
// and its metrics, from /proc, /sys, /etc and the state root's file
// system. It reads only when asked.
type hostReader struct {
	stateRoot string
	proc      string // "/proc"; tests point it elsewhere
	etc       string // "/etc"
	sys       string // "/sys"

	once   sync.Once
	static kubeapi.HostInfo
}

func newHostReader(stateRoot string) *hostReader {
	return &hostReader{stateRoot: stateRoot, proc: "/proc", etc: "/etc", sys: "/sys"}
}

// userHZ is the kernel's clock tick for /proc/stat (USER_HZ, 100 on every
// Linux architecture the agent builds for).
const userHZ = 100

func (h *hostReader) read(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// HostInfo implements kubeapi.HostSource.
func (h *hostReader) HostInfo(context.Context) (kubeapi.HostInfo, error) {
	h.once.Do(h.readStatic)
	info := h.static
	mem, err := h.meminfo()
	if err != nil {
		return info, err
	}
	info.MemoryBytes = mem["MemTotal"]
	info.MemoryAvailable = mem["MemAvailable"]
	info.MemoryWorkingSet = info.MemoryBytes - info.MemoryAvailable
	busy, err := h.cpuBusy()
	if err != nil {
		return info, err
	}
	info.CPUUsageNanos = busy
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.stateRoot, &st); err != nil {
		return info, &os.PathError{Op: "statfs", Path: h.stateRoot, Err: err}
	}
	info.StorageBytes = int64(st.Blocks) * st.Bsize
	info.StorageAvailable = int64(st.Bavail) * st.Bsize
	info.InodesTotal, info.InodesFree = st.Files, st.Ffree
	// The fourth field of loadavg is running/total tasks: every task uses
	// a PID.
	if f := strings.Fields(h.read(h.proc + "/loadavg")); len(f) >= 4 {
		if _, total, ok := strings.Cut(f[3], "/"); ok {
			info.PIDsInUse, _ = strconv.ParseInt(total, 10, 64)
		}
	}
	info.InternalIP = h.internalIP()
	return info, nil
}

func (h *hostReader) readStatic() {
	s := &h.static
	s.KernelVersion = h.read(h.proc + "/sys/kernel/osrelease")
	s.BootID = h.read(h.proc + "/sys/kernel/random/boot_id")
	s.MachineID = h.read(h.etc + "/machine-id")
	s.SystemUUID = strings.ToLower(h.read(h.sys + "/class/dmi/id/product_uuid"))
	s.OSImage = "Linux"
	for _, line := range strings.Split(h.read(h.etc+"/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			s.OSImage = v
		}
	}
	s.CPUs = h.onlineCPUs()
	pidMax, _ := strconv.ParseInt(h.read(h.proc+"/sys/kernel/pid_max"), 10, 64)
	threads, _ := strconv.ParseInt(h.read(h.proc+"/sys/kernel/threads-max"), 10, 64)
	s.PIDsMax = pidMax
	if threads > 0 && (threads < pidMax || pidMax == 0) {
		s.PIDsMax = threads
	}
	for _, line := range strings.Split(h.read(h.proc+"/stat"), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				s.BootTime = time.Unix(n, 0)
			}
		}
	}
}

// onlineCPUs counts /sys/devices/system/cpu/online ("0-3,6").
func (h *hostReader) onlineCPUs() int {
	n := 0
	for _, part := range strings.Split(h.read(h.sys+"/devices/system/cpu/online"), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 == nil && err2 == nil && b >= a {
			n += b - a + 1
		}
	}
	return n
}

// meminfo returns /proc/meminfo in bytes.
func (h *hostReader) meminfo() (map[string]int64, error) {
	b, err := os.ReadFile(h.proc + "/meminfo")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 2 && f[2] == "kB" {
			n *= 1024
		}
		out[strings.TrimSuffix(f[0], ":")] = n
	}
	if out["MemTotal"] == 0 {
		return nil, fmt.Errorf("%s/meminfo: no MemTotal", h.proc)
	}
	return out, nil
}

// cpuBusy is the CPU time all CPUs spent not idle, from /proc/stat.
func (h *hostReader) cpuBusy() (uint64, error) {
	b, err := os.ReadFile(h.proc + "/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("%s/stat: no cpu line", h.proc)
	}
	var total, idle uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/stat: cpu field %d: %w", h.proc, i+1, err)
		}
		// guest and guest_nice (fields 9, 10) are already in user/nice.
		if i >= 8 {
			break
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return (total - idle) * (uint64(time.Second) / userHZ), nil
}

// internalIP is the IPv4 address of the interface the default route uses
// (read from /proc/net/route: no packet is sent), else the first global
// IPv4 address of an interface that is up.
func (h *hostReader) internalIP() string {
	for i, line := range strings.Split(h.read(h.proc+"/net/route"), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		if ifc, err := net.InterfaceByName(f[0]); err == nil {
			if ip := firstIPv4(ifc); ip != "" {
				return ip
			}
		}
	}
	ifcs, _ := net.Interfaces()
	for i := range ifcs {
		if ifcs[i].Flags&net.FlagUp != 0 && ifcs[i].Flags&net.FlagLoopback == 0 {
			if ip := firstIPv4(&ifcs[i]); ip != "" {
				return ip
			}
		}
	}
	return ""
}

func firstIPv4(ifc *net.Interface) string {
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}
