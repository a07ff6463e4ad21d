package image

import (
	"net/http"
	"strings"
	"testing"
)

type recordingTransport struct{ hosts []string }

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.hosts = append(r.hosts, req.URL.Host)
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

// TestGuardTransport: plain HTTP reaches only loopback and the listed
// insecure registries; HTTPS goes anywhere. ggcr alone would fall back to
// HTTP for every private address.
func TestGuardTransport(t *testing.T) {
	for _, tc := range []struct {
		url     string
		allowed bool
	}{
		{"http://127.0.0.1:5000/v2/", true},
		{"http://localhost:5000/v2/", true},
		{"http://[::1]:5000/v2/", true},
		{"http://10.1.2.3:5000/v2/", false},
		{"http://192.168.1.10/v2/", false},
		{"http://registry.lan:5000/v2/", true}, // listed with port
		{"http://mirror.lan/v2/", true},        // listed by host
		{"http://other.lan/v2/", false},
		{"https://10.1.2.3:5000/v2/", true},
	} {
		rec := &recordingTransport{}
		g := &guardTransport{base: rec, insecure: []string{"registry.lan:5000", "mirror.lan"}}
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = g.RoundTrip(req)
		if tc.allowed && (err != nil || len(rec.hosts) != 1) {
			t.Errorf("%s: refused (%v), want allowed", tc.url, err)
		}
		if !tc.allowed && (err == nil || !strings.Contains(err.Error(), "plain HTTP") || len(rec.hosts) != 0) {
			t.Errorf("%s: allowed (%v, sent to %v), want refused before sending", tc.url, err, rec.hosts)
		}
	}
}

func TestNormalizeReference(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"docker.io/busybox", "docker.io/library/busybox:latest"},
		{"index.docker.io/library/busybox:1", "docker.io/library/busybox:1"},
		{"user/app", "docker.io/user/app:latest"},
		{"ghcr.io/org/app:v2", "ghcr.io/org/app:v2"},
		{"127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"},
		{"localhost/app:x", "localhost/app:x"},
		{"busybox@sha256:" + strings.Repeat("a", 64), "docker.io/library/busybox@sha256:" + strings.Repeat("a", 64)},
		{"busybox:1.36@sha256:" + strings.Repeat("b", 64), "docker.io/library/busybox@sha256:" + strings.Repeat("b", 64)},
	} {
		got, err := NormalizeReference(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeReference(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", " busybox", "Busybox", "a:b:c", "busybox@sha256:123"} {
		if got, err := NormalizeReference(bad); err == nil {
			t.Errorf("NormalizeReference(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSplitReference(t *testing.T) {
	for _, tc := range []struct{ in, repo, tag string }{
		{"docker.io/library/busybox:1.36", "busybox", "1.36"},
		{"docker.io/user/app:latest", "user/app", "latest"},
		{"127.0.0.1:5000/app:1", "127.0.0.1:5000/app", "1"},
		{"ghcr.io/o/a@sha256:abc", "ghcr.io/o/a", "sha256:abc"},
	} {
		repo, tag := SplitReference(tc.in)
		if repo != tc.repo || tag != tc.tag {
			t.Errorf("SplitReference(%q) = %q, %q; want %q, %q", tc.in, repo, tag, tc.repo, tc.tag)
		}
	}
}
