package image

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

func resolve(t *testing.T, kc authn.Keychain, repo string) *authn.AuthConfig {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	a, err := kc.Resolve(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKeychains: config.json keys and pull secrets name registries in
// several ways (URL, docker.io, host:port); all find the right credential,
// and pull secrets win over config.json.
func TestKeychains(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	err := os.WriteFile(cfg, []byte(`{"auths":{
		"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"},
		"registry.lan:5000":{"username":"lan","password":"lanpw"}}}`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{opts: Options{DockerConfig: cfg}}
	kc := s.keychain([]runtime.RegistryAuth{{Registry: "ghcr.io", Username: "secret", Password: "secretpw"},
		{Registry: "docker.io", Username: "podhub", Password: "podpw"}})
	for _, tc := range []struct{ repo, user, pass string }{
		{"ghcr.io/org/app", "secret", "secretpw"},
		{"registry.lan:5000/app", "lan", "lanpw"},
		{"library/busybox", "podhub", "podpw"}, // the pull secret wins over config.json
		{"quay.io/x/y", "", ""},
	} {
		got := resolve(t, kc, tc.repo)
		if got.Username != tc.user || got.Password != tc.pass {
			t.Errorf("%s: %q/%q, want %q/%q", tc.repo, got.Username, got.Password, tc.user, tc.pass)
		}
	}
	// Without pull secrets, config.json's base64 "auth" is decoded.
	got := resolve(t, s.keychain(nil), "busybox")
	if got.Username != "hub" || got.Password != "hubpw" {
		t.Errorf("docker.io from config.json: %q/%q", got.Username, got.Password)
	}
}
