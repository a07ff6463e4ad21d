package sysctl

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nft/nettest"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		sysctls map[string]string
		p       Policy
		wantErr string // "" = allowed
	}{
		{map[string]string{"net.ipv4.ip_unprivileged_port_start": "80", "kernel.shm_rmid_forced": "1"}, Policy{}, ""},
		{map[string]string{"net/ipv4/ping_group_range": "0 1000"}, Policy{}, ""},
		{map[string]string{"net.core.somaxconn": "1024"}, Policy{}, "unsafe"},
		{map[string]string{"net.core.somaxconn": "1024", "kernel.msgmax": "9000"}, Policy{AllowUnsafe: true}, ""},
		{map[string]string{"kernel.pid_max": "99999"}, Policy{AllowUnsafe: true}, "not namespaced"},
		{map[string]string{"vm.swappiness": "1"}, Policy{AllowUnsafe: true}, "not namespaced"},
		{map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}, Policy{HostNetwork: true}, "host network"},
		{map[string]string{"kernel.shm_rmid_forced": "1"}, Policy{HostIPC: true}, "host IPC"},
		{map[string]string{"net/../../etc/passwd": "x"}, Policy{AllowUnsafe: true}, "not a sysctl name"},
		{map[string]string{"net.ipv4.tcp_syncookies": "1\nkernel.pid_max=1"}, Policy{}, "spans lines"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.sysctls, tc.p), func(t *testing.T) {
			err := Validate(tc.sysctls, tc.p)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, runtime.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want invalid config mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// newIPCNS pins a fresh IPC namespace at a file and removes it at the end.
func newIPCNS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ipc")
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/ipc")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			errc <- err
			return
		}
		err = unix.Mount("/proc/thread-self/ns/ipc", p, "", unix.MS_BIND, "")
		// Back home before unlocking; on failure the thread stays locked
		// and is discarded with this goroutine.
		if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWIPC); serr != nil {
			errc <- serr
			return
		}
		goruntime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new ipc namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", p, err)
		}
	})
	return p
}

func TestApplyInsidePodNamespacesOnly(t *testing.T) {
	linuxtest.RequireRoot(t)
	ns := nettest.NewNS(t, fmt.Sprintf("psys-%05x", rand.IntN(1<<20)))
	ipc := newIPCNS(t)
	sysctls := map[string]string{
		"net.ipv4.ip_unprivileged_port_start": "80",
		"net/ipv4/ping_group_range":           "0 2147483647",
		"net.ipv4.ip_local_port_range":        "40000 40100",
		"kernel.shm_rmid_forced":              "1",
	}
	before := map[string]string{}
	for name := range sysctls {
		v, err := Read(name, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = v
	}
	if before["kernel.shm_rmid_forced"] == "1" || before["net.ipv4.ip_unprivileged_port_start"] == "80" {
		t.Fatalf("host already has the test's values (%v): the test could not tell pod from host", before)
	}
	if err := Validate(sysctls, Policy{}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(sysctls, Paths{Net: ns.Path, IPC: ipc}); err != nil {
		t.Fatal(err)
	}
	for name, want := range sysctls {
		path, flag := ns.Path, unix.CLONE_NEWNET
		if strings.HasPrefix(name, "kernel.") {
			path, flag = ipc, unix.CLONE_NEWIPC
		}
		got, err := Read(name, path, flag)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(strings.Fields(got), " ") != want {
			t.Errorf("%s in pod = %q, want %q", name, got, want)
		}
		host, err := Read(name, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if host != before[name] {
			t.Errorf("%s on host changed: %q -> %q", name, before[name], host)
		}
	}
	// Without a namespace path nothing may land on the host.
	err := Apply(map[string]string{"kernel.shm_rmid_forced": "1"}, Paths{Net: ns.Path})
	if !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("Apply without IPC path = %v, want ErrInvalidConfig", err)
	}
	if v, _ := Read("kernel.shm_rmid_forced", "", 0); v != before["kernel.shm_rmid_forced"] {
		t.Errorf("host kernel.shm_rmid_forced changed to %s", v)
	}
}
