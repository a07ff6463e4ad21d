package spec

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Sysctls. Validation must refuse exactly what would make the sandbox fail
// for ever, so it follows what runtime/linux/sysctl accepts (name syntax,
// namespace and safety policy) and what the kernel then accepts when the
// value is written (format, count and ranges of the safe set, and the
// order-dependent rule between the local port range and the unprivileged
// port start, since the runtime writes sysctls in name order).
// TestSysctlsAgreeWithRuntimeAndKernel checks both on the real kernel.

// safeSysctls are the namespaced sysctls Kubernetes calls safe: they affect
// only the pod's own network or IPC namespace. Each has the value format
// the kernel parses.
var safeSysctls = map[string]sysctlFormat{
	"kernel.shm_rmid_forced":              intsFormat(1, 0, 1),
	"net.ipv4.ip_local_port_range":        intsFormat(2, 1, 65535),
	"net.ipv4.ip_local_reserved_ports":    portListFormat{},
	"net.ipv4.ip_unprivileged_port_start": intsFormat(1, 0, 65535),
	"net.ipv4.ping_group_range":           intsFormat(2, 0, maxID),
	// Seconds stored as jiffies: INT_MAX/HZ, with HZ at most 1000.
	"net.ipv4.tcp_fin_timeout":      intsFormat(1, 0, 2147483),
	"net.ipv4.tcp_keepalive_intvl":  intsFormat(1, 0, 2147483),
	"net.ipv4.tcp_keepalive_probes": intsFormat(1, 0, 255),
	"net.ipv4.tcp_keepalive_time":   intsFormat(1, 0, 2147483),
	// min, default and max of the receive buffer: the kernel refuses
	// less than one page for each.
	"net.ipv4.tcp_rmem":       intsFormat(3, 4096, 1<<31-1),
	"net.ipv4.tcp_syncookies": intsFormat(1, 0, 255),
	"net.ipv4.tcp_wmem":       intsFormat(3, 1, 1<<31-1),
}

// Defaults of a new network namespace that the port rules depend on.
const (
	netnsUnprivilegedPortStart = 1024
	netnsLocalPortRangeStart   = 32768
)

// SafeSysctls returns the sysctl names pods may set, sorted.
func SafeSysctls() []string {
	out := make([]string, 0, len(safeSysctls))
	for k := range safeSysctls {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sysctlNameRE is runtime/linux/sysctl's name syntax: components of
// [a-z0-9_-] joined by dots or, in the slash form, by slashes.
var sysctlNameRE = regexp.MustCompile(`^[a-z0-9]([-_a-z0-9]*[a-z0-9])?([./][a-z0-9]([-_a-z0-9]*[a-z0-9])?)*$`)

// sysctlPolicyName is the dotted form the safety and namespace rules are
// decided on, as the runtime decides them; ok is false for a name the
// runtime refuses.
func sysctlPolicyName(name string) (dotted string, ok bool) {
	if !sysctlNameRE.MatchString(name) || strings.Contains(name, "..") {
		return "", false
	}
	return strings.ReplaceAll(name, "/", "."), true
}

// normalizeSysctlName turns the slash form into the dotted form when the two
// name the same file (no component holds a dot, as an interface name such as
// eth0.100 can), so both spellings hash and apply alike.
func normalizeSysctlName(name string) string {
	if !strings.Contains(name, "/") || strings.Contains(name, ".") {
		return name
	}
	if _, ok := sysctlPolicyName(name); !ok {
		return name
	}
	return strings.ReplaceAll(name, "/", ".")
}

// sysctlNamespace says which namespace isolates a (dotted) sysctl: "net",
// "ipc" or "" for none (a node-wide setting).
func sysctlNamespace(dotted string) string {
	switch {
	case strings.HasPrefix(dotted, "net."):
		return "net"
	case dotted == "kernel.sem", strings.HasPrefix(dotted, "kernel.shm"), strings.HasPrefix(dotted, "kernel.msg"),
		strings.HasPrefix(dotted, "fs.mqueue."):
		return "ipc"
	}
	return ""
}

// sysctlValue is the rule for sysctls outside the safe set, whose format
// only the kernel knows: numbers, words and ranges separated by blanks or
// commas, and nothing that could end the line written to /proc/sys. A '+'
// is refused: the kernel's number parser does not take it. The length
// bound is checked apart: a counted repetition such as {1,256} compiles
// into a large program at every process start, pause and shim too.
var sysctlValue = regexp.MustCompile(`^[A-Za-z0-9_.:/, \t-]+$`)

const maxSysctlValue = 256

// sysctlFormat checks a safe sysctl's value as the kernel will parse it.
type sysctlFormat interface {
	check(v string) string
}

// intsRule is a vector of n decimal integers within lo..hi, separated by
// blanks (proc_dointvec and friends).
type intsRule struct {
	n      int
	lo, hi int64
}

func intsFormat(n int, lo, hi int64) intsRule { return intsRule{n, lo, hi} }

func (r intsRule) parse(v string) ([]int64, string) {
	// Blanks only: a newline would make the runtime refuse the value.
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(f) != r.n {
		if r.n == 1 {
			return nil, "must be one integer"
		}
		return nil, fmt.Sprintf("must be %d integers separated by blanks", r.n)
	}
	out := make([]int64, len(f))
	for i, s := range f {
		n, msg := decimal(s)
		if msg != "" {
			return nil, msg
		}
		if n < r.lo || n > r.hi {
			return nil, fmt.Sprintf("%s is out of range: each number must be %d..%d", s, r.lo, r.hi)
		}
		out[i] = n
	}
	return out, ""
}

func (r intsRule) check(v string) string { _, msg := r.parse(v); return msg }

// decimal parses a plain non-negative decimal integer. Signs and leading
// zeros are refused: the kernel refuses '+' and reads 010 as octal.
func decimal(s string) (int64, string) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Sprintf("%q is not a plain decimal number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Sprintf("%q has a leading zero, which the kernel reads as octal", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Sprintf("%q is out of range", s)
	}
	return n, ""
}

// portListFormat is ip_local_reserved_ports: ports and ranges a-b joined by
// commas, without blanks.
type portListFormat struct{}

func (portListFormat) check(v string) string {
	for _, item := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(item, "-")
		a, msg := decimal(lo)
		if msg == "" && isRange {
			var b int64
			if b, msg = decimal(hi); msg == "" && b < a {
				msg = fmt.Sprintf("range %s ends before it starts", item)
			}
			a = max(a, b)
		}
		if msg != "" {
			return msg + ": write ports and ranges joined by commas, such as 8080,9148-9150"
		}
		if a > 65535 {
			return fmt.Sprintf("%s is out of range: ports are 0..65535", item)
		}
	}
	return ""
}

// validateSysctls checks the pod's sysctls; hostNetwork and hostIPC say
// which namespaces are the node's.
func validateSysctls(l *errList, scp fieldPath, sysctls []Sysctl, s *PodSpec, o ValidationOptions) {
	seen := map[string]bool{}
	// The runtime writes in name order into a fresh namespace; the port
	// rules depend on what was written before.
	values := map[string]string{}
	for i, sy := range sysctls {
		syp := scp.Field("sysctls").Index(i)
		dotted, ok := sysctlPolicyName(sy.Name)
		format, safe := safeSysctls[dotted]
		ns := sysctlNamespace(dotted)
		switch {
		case !ok:
			l.add(syp.Field("name"), "%q is not a sysctl name: lower-case components of letters, digits, '-' and '_' joined by dots (or slashes)", sy.Name)
		case !safe && !o.AllowUnsafeSysctls:
			l.unsupported(syp.Field("name"), "%q is not in the namespaced safe set (%s); the agent's --allow-unsafe-sysctls admits other namespaced sysctls", sy.Name, strings.Join(SafeSysctls(), ", "))
		case ns == "":
			l.add(syp.Field("name"), "%q is not a namespaced sysctl (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*): it would change the whole node", sy.Name)
		case seen[dotted]:
			l.add(syp.Field("name"), "duplicate sysctl %q", sy.Name)
		case s.HostNetwork && ns == "net":
			l.add(syp.Field("name"), "%q would change the node's network namespace: not allowed with hostNetwork", sy.Name)
		case s.HostIPC && ns == "ipc":
			l.add(syp.Field("name"), "%q would change the node's IPC namespace: not allowed with hostIPC", sy.Name)
		}
		seen[dotted] = true
		vp := syp.Field("value")
		switch {
		case safe && len(sy.Value) <= maxSysctlValue:
			if msg := format.check(sy.Value); msg != "" {
				l.add(vp, "%q is not a valid value for %s: %s", sy.Value, dotted, msg)
			} else {
				values[dotted] = sy.Value
			}
		case len(sy.Value) > maxSysctlValue || !sysctlValue.MatchString(sy.Value):
			l.add(vp, "%q must be 1-256 characters of letters, digits, blanks and . _ : / , - (no '+': the kernel does not parse it)", sy.Value)
		}
	}
	checkPortSysctls(l, scp, sysctls, values)
}

// checkPortSysctls applies the kernel's rule that the local port range
// starts at or above the unprivileged port start, in the order the runtime
// writes them (the range first), from a new namespace's defaults.
func checkPortSysctls(l *errList, scp fieldPath, sysctls []Sysctl, values map[string]string) {
	const rangeName, startName = "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start"
	index := func(dotted string) fieldPath {
		for i, sy := range sysctls {
			if d, _ := sysctlPolicyName(sy.Name); d == dotted {
				return scp.Field("sysctls").Index(i).Field("value")
			}
		}
		return scp
	}
	rangeStart := int64(netnsLocalPortRangeStart)
	if v, ok := values[rangeName]; ok {
		r, _ := safeSysctls[rangeName].(intsRule).parse(v)
		switch {
		case r[1] < r[0]:
			l.add(index(rangeName), "%q ends before it starts", v)
			return
		case r[0] < netnsUnprivilegedPortStart:
			l.add(index(rangeName), "%q starts below %d, the pod's unprivileged port start when the range is written (the kernel refuses a range reaching into privileged ports)", v, netnsUnprivilegedPortStart)
			return
		}
		rangeStart = r[0]
	}
	if v, ok := values[startName]; ok {
		r, _ := safeSysctls[startName].(intsRule).parse(v)
		if r[0] > rangeStart {
			l.add(index(startName), "%q is above the local port range's start %d (the kernel refuses privileged ports reaching into it)", v, rangeStart)
		}
	}
}
