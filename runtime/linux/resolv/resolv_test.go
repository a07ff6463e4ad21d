package resolv

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/linuxtest"
)

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuild(t *testing.T) {
	stub := "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
	upstream := "nameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver 2001:db8::53\nsearch up.example\n"
	plain := "nameserver 192.0.2.10\nnameserver 192.0.2.11 # second\ndomain old.example\nsearch a.example b.example\noptions ndots:2 rotate\n"
	tests := []struct {
		name       string
		host, up   string // file contents; "-" for a missing file
		dns        runtime.DNSConfig
		want       Conf
		wantErrStr string
	}{
		{
			name: "default policy copies a plain host",
			host: plain, up: "-",
			dns:  runtime.DNSConfig{UseHost: true},
			want: Conf{Nameservers: []string{"192.0.2.10", "192.0.2.11"}, Searches: []string{"a.example", "b.example"}, Options: []string{"ndots:2", "rotate"}},
		},
		{
			name: "systemd-resolved stub is replaced by its upstreams",
			host: stub, up: upstream,
			dns:  runtime.DNSConfig{UseHost: true},
			want: Conf{Nameservers: []string{"192.0.2.53", "2001:db8::53"}, Searches: []string{"corp.example"}, Options: []string{"edns0", "trust-ad"}},
		},
		{
			name: "loopback-only host without upstream file gives no nameserver",
			host: stub, up: "-",
			dns:  runtime.DNSConfig{UseHost: true},
			want: Conf{Searches: []string{"corp.example"}, Options: []string{"edns0", "trust-ad"}},
		},
		{
			name: "dnsConfig merged into host: dedupe, pod options win, three servers at most",
			host: plain, up: "-",
			dns: runtime.DNSConfig{UseHost: true, Servers: []string{"192.0.2.11", "198.51.100.1", "198.51.100.2"},
				Searches: []string{"b.example", "c.example"}, Options: []string{"ndots:5", "edns0"}},
			want: Conf{Nameservers: []string{"192.0.2.10", "192.0.2.11", "198.51.100.1"},
				Searches: []string{"a.example", "b.example", "c.example"}, Options: []string{"ndots:5", "rotate", "edns0"}},
		},
		{
			name: "policy None uses only dnsConfig, even a pod-local loopback resolver",
			host: plain, up: "-",
			dns:  runtime.DNSConfig{Servers: []string{"127.0.0.1"}, Searches: []string{"x.example"}},
			want: Conf{Nameservers: []string{"127.0.0.1"}, Searches: []string{"x.example"}},
		},
		{
			name: "missing host file",
			host: "-", up: "-",
			dns:  runtime.DNSConfig{UseHost: true, Servers: []string{"198.51.100.1"}},
			want: Conf{Nameservers: []string{"198.51.100.1"}},
		},
		{
			name: "bad nameserver", host: plain, up: "-",
			dns:        runtime.DNSConfig{Servers: []string{"dns.example"}},
			wantErrStr: "dnsConfig.nameservers",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := Host{ResolvConf: filepath.Join(t.TempDir(), "none"), Upstream: filepath.Join(t.TempDir(), "none")}
			if tc.host != "-" {
				h.ResolvConf = writeTemp(t, "resolv.conf", tc.host)
			}
			if tc.up != "-" {
				h.Upstream = writeTemp(t, "upstream.conf", tc.up)
			}
			got, err := Build(tc.dns, h)
			if tc.wantErrStr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrStr) || !errors.Is(err, runtime.ErrInvalidConfig) {
					t.Fatalf("Build: %v, want invalid config about %s", err, tc.wantErrStr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Build (-want +got):\n%s", d)
			}
			if tc.dns.UseHost {
				for _, s := range got.Nameservers {
					if isLoopback(s) {
						t.Errorf("host loopback nameserver %s copied into the pod", s)
					}
				}
			}
			// The rendered file parses back to the same configuration.
			if d := cmp.Diff(got, Parse(got.Bytes())); d != "" {
				t.Errorf("render/parse round trip (-want +got):\n%s", d)
			}
		})
	}
}

func TestHosts(t *testing.T) {
	got := string(Hosts(HostsConfig{
		Pod: runtime.PodKey{Namespace: "shop", Name: "web-0"}, PodIP: "10.204.0.5",
		Hostname: "web-0", Subdomain: "web", Self: "sb1",
		Aliases: []runtime.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"db", "db.local"}}},
		Peers: []Peer{
			{ID: "sb2", IP: "10.204.0.6", Names: PeerNames(runtime.PodKey{Namespace: "shop", Name: "api"}, "", "")},
			{ID: "sb1", IP: "10.204.0.5", Names: []string{"web-0.shop"}}, // itself: skipped
			{ID: "sb0", IP: "10.204.0.7", Names: PeerNames(runtime.PodKey{Namespace: "ops", Name: "x"}, "mon", "infra")},
		},
	}))
	for _, want := range []string{
		"127.0.0.1\tlocalhost\n",
		"10.204.0.5\tweb-0.web.shop web-0 web-0.shop\n",
		"# Pods on this node.\n10.204.0.7\tx.ops mon.infra.ops mon\n10.204.0.6\tapi.shop\n",
		"# Entries added by HostAliases.\n192.0.2.9\tdb\tdb.local\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "10.204.0.5") != 1 {
		t.Errorf("pod listed twice:\n%s", got)
	}
	if err := ValidateAliases([]runtime.HostAlias{{IP: "x", Hostnames: []string{"a"}}}); !errors.Is(err, runtime.ErrInvalidConfig) {
		t.Errorf("ValidateAliases(bad ip) = %v", err)
	}
	hn := string(HostNetworkHosts([]byte("127.0.0.1 localhost\n192.0.2.2 node"), []runtime.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"db"}}}))
	if hn != "127.0.0.1 localhost\n192.0.2.2 node\n# Entries added by HostAliases.\n192.0.2.9\tdb\n" {
		t.Errorf("HostNetworkHosts = %q", hn)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestWriteFileKeepsInodeForBindMounts(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	if err := WriteFile(p, []byte("a long first version\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ino := inode(t, p)
	for _, v := range []string{"short\n", "short\n", "a much longer third version of the file\n"} {
		if err := WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		if string(got) != v {
			t.Errorf("content %q, want %q", got, v)
		}
		if inode(t, p) != ino {
			t.Errorf("inode changed: a bind mount of the file would not see the update")
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestUpdateFileNeverCreates(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hosts")
	if err := UpdateFile(p, []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("UpdateFile created %s: %v", p, err)
	}
	if err := WriteFile(p, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateFile(p, []byte("b\n")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "b\n" {
		t.Errorf("UpdateFile wrote %q", got)
	}
}

// A container can write its /etc/hosts and /etc/resolv.conf: the agent's
// rewrite must read no more of them than its own content, whatever the
// container left there (64 MiB here, sparse so no disk is used).
func TestRewriteReadIsBounded(t *testing.T) {
	for name, write := range map[string]func(p string, data []byte) error{
		"UpdateFile": UpdateFile,
		"WriteFile":  func(p string, data []byte) error { return WriteFile(p, data, 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			p := writeTemp(t, "hosts", "127.0.0.1\tlocalhost\n")
			if err := os.Truncate(p, 64<<20); err != nil {
				t.Fatal(err)
			}
			want := []byte("127.0.0.1\tlocalhost\n10.0.0.2\tpeer.default\n")
			var err error
			n := linuxtest.Allocated(func() { err = write(p, want) })
			if err != nil {
				t.Fatal(err)
			}
			if n > 256<<10 {
				t.Errorf("rewriting over a 64 MiB file allocated %d bytes", n)
			}
			if got, _ := os.ReadFile(p); string(got) != string(want) {
				t.Errorf("content after rewrite: %d bytes, want %q", len(got), want)
			}
		})
	}
}

// The host's resolver files are read up to MaxHostFileSize and refused
// beyond it.
func TestHostConfRefusesHugeFile(t *testing.T) {
	p := writeTemp(t, "resolv.conf", "nameserver 192.0.2.1\n")
	for _, size := range []int64{MaxHostFileSize + 1, 64 << 20} {
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		var err error
		n := linuxtest.Allocated(func() { _, err = HostConf(Host{ResolvConf: p}) })
		if err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("HostConf of a %d-byte file: %v", size, err)
		}
		if n > 8*MaxHostFileSize {
			t.Errorf("HostConf of a %d-byte file allocated %d bytes", size, n)
		}
	}
}
