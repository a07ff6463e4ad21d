//go:build linux

package spec

import (
	"fmt"
	"os"
	goruntime "runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/sysctl"
)

// freshNamespaces runs fn with the paths of a new network and IPC
// namespace, held by a locked thread that exits afterwards, which frees
// them: nothing outlives the call.
func freshNamespaces(t *testing.T, fn func(sysctl.Paths)) {
	t.Helper()
	ready := make(chan error, 1)
	done := make(chan struct{})
	var paths sysctl.Paths
	go func() {
		// Never unlocked: the thread ends with this goroutine, so the
		// caller's threads never see these namespaces.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWIPC); err != nil {
			ready <- err
			return
		}
		task := fmt.Sprintf("/proc/%d/task/%d/ns/", os.Getpid(), unix.Gettid())
		paths = sysctl.Paths{Net: task + "net", IPC: task + "ipc"}
		ready <- nil
		<-done
	}()
	if err := <-ready; err != nil {
		t.Fatalf("unshare: %v", err)
	}
	defer close(done)
	fn(paths)
}

// TestSysctlsAgreeWithRuntimeAndKernel drives the runtime's sysctl code
// (its policy, then the write into a fresh pod namespace) with the same
// sysctls validation sees. Validation must never accept what the runtime
// or the kernel then refuses (a pod that fails sandbox creation for ever),
// and it refuses what the runtime accepts only where a case says why.
func TestSysctlsAgreeWithRuntimeAndKernel(t *testing.T) {
	linuxtest.RequireRoot(t)
	type kv = [2]string
	tests := []struct {
		sysctls []kv
		unsafe  bool
		// stricter: validation refuses on purpose what the kernel takes.
		stricter string
	}{
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1"}}},
		{sysctls: []kv{{"net/ipv4/tcp_syncookies", "1"}}},
		{sysctls: []kv{{"net/ipv4/ip_local_port_range", "32768 60999"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "+1"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "255"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "256"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "-1"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1:2"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1.0"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "01"}}, stricter: "a leading zero is octal to the kernel"},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1 2"}}, stricter: "the kernel ignores extra numbers"},
		{sysctls: []kv{{"kernel.shm_rmid_forced", "1"}}},
		{sysctls: []kv{{"kernel.shm_rmid_forced", "2"}}},
		{sysctls: []kv{{"kernel/shm_rmid_forced", "0"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "1024 65535"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "1024 65536"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "1023 2000"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "60999 32768"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "32768,60999"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "32768"}}, stricter: "the kernel keeps the old upper end"},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "1000 2000"}, {"net.ipv4.ip_unprivileged_port_start", "0"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_port_range", "2000 3000"}, {"net.ipv4.ip_unprivileged_port_start", "2000"}}},
		{sysctls: []kv{{"net.ipv4.ip_unprivileged_port_start", "32768"}}},
		{sysctls: []kv{{"net.ipv4.ip_unprivileged_port_start", "32769"}}},
		{sysctls: []kv{{"net.ipv4.ip_unprivileged_port_start", "0"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_reserved_ports", "8080,9148-9150"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_reserved_ports", "8080, 9000"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_reserved_ports", "65535"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_reserved_ports", "65536"}}},
		{sysctls: []kv{{"net.ipv4.ip_local_reserved_ports", "9-3"}}},
		{sysctls: []kv{{"net.ipv4.ping_group_range", "0 2147483647"}}},
		{sysctls: []kv{{"net.ipv4.ping_group_range", "10 5"}}},
		{sysctls: []kv{{"net.ipv4.ping_group_range", "-1 5"}}},
		{sysctls: []kv{{"net.ipv4.tcp_fin_timeout", "2147483"}}},
		{sysctls: []kv{{"net.ipv4.tcp_fin_timeout", "9999999999"}}},
		{sysctls: []kv{{"net.ipv4.tcp_keepalive_time", "600"}, {"net.ipv4.tcp_keepalive_intvl", "60"}, {"net.ipv4.tcp_keepalive_probes", "9"}}},
		{sysctls: []kv{{"net.ipv4.tcp_keepalive_probes", "256"}}},
		{sysctls: []kv{{"net.ipv4.tcp_rmem", "4096 131072 6291456"}}},
		{sysctls: []kv{{"net.ipv4.tcp_rmem", "4095 131072 6291456"}}},
		{sysctls: []kv{{"net.ipv4.tcp_rmem", "4096 131072 2147483648"}}},
		{sysctls: []kv{{"net.ipv4.tcp_wmem", "1 2 3"}}},
		{sysctls: []kv{{"net.ipv4.tcp_wmem", "0 2 3"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1\nkernel.panic=1"}}},
		{sysctls: []kv{{"net.ipv4.tcp_syncookies", "1\n"}}},
		{sysctls: []kv{{"net.core.somaxconn", "1024\n"}}, unsafe: true},
		{sysctls: []kv{{"Net.ipv4.tcp_syncookies", "1"}}},
		{sysctls: []kv{{"net/ipv4/../../kernel/panic", "1"}}, unsafe: true},
		{sysctls: []kv{{"net.core.somaxconn", "1024"}}},
		{sysctls: []kv{{"net.core.somaxconn", "1024"}}, unsafe: true},
		{sysctls: []kv{{"net/core/somaxconn", "1024"}}, unsafe: true},
		{sysctls: []kv{{"kernel.msgmax", "65536"}}, unsafe: true},
		{sysctls: []kv{{"kernel.panic", "1"}}, unsafe: true},
		{sysctls: []kv{{"vm.swappiness", "1"}}, unsafe: true},
		{sysctls: []kv{{"net.core.somaxconn", "+1024"}}, unsafe: true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.sysctls, " unsafe=", tc.unsafe), func(t *testing.T) {
			p := basePod()
			p.Spec.SecurityContext = &PodSecurityContext{}
			for _, s := range tc.sysctls {
				p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, Sysctl{Name: s[0], Value: s[1]})
			}
			SetDefaults(p)
			verrs := ValidatePodWithOptions(p, ValidationOptions{AllowUnsafeSysctls: tc.unsafe})

			// What the reconciler hands the runtime: the defaulted names.
			m := map[string]string{}
			for _, s := range p.Spec.SecurityContext.Sysctls {
				m[s.Name] = s.Value
			}
			rerr := sysctl.Validate(m, sysctl.Policy{AllowUnsafe: tc.unsafe})
			if rerr == nil {
				freshNamespaces(t, func(paths sysctl.Paths) { rerr = sysctl.Apply(m, paths) })
			}
			switch {
			case len(verrs) == 0 && rerr != nil:
				t.Fatalf("validation accepts what the runtime refuses (the sandbox would fail for ever): %v", rerr)
			case len(verrs) > 0 && rerr == nil && tc.stricter == "":
				t.Fatalf("validation refuses what the runtime accepts: %v", verrs)
			case tc.stricter != "" && (len(verrs) == 0 || rerr != nil):
				t.Fatalf("marked stricter (validation refuses, the runtime accepts), but validation says %v and the runtime %v", verrs, rerr)
			case tc.stricter != "":
				t.Logf("deliberately stricter than the kernel (%s): %v", tc.stricter, verrs)
			}
		})
	}
}
