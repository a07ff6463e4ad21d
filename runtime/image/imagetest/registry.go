package imagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RegistryOptions configures ServeRegistry. With User set the registry
// demands credentials: HTTP basic auth, or with Token the Docker token
// flow (401 with a Bearer challenge, a token endpoint that checks the
// credentials, then bearer tokens).
type RegistryOptions struct {
	User, Password string
	Token          bool
	// Wrap, when set, wraps the registry handler (after auth), for tests
	// that break responses on purpose.
	Wrap func(http.Handler) http.Handler
}

// Registry is an in-process OCI registry on 127.0.0.1.
type Registry struct {
	// Host is 127.0.0.1:port, the registry part of references.
	Host     string
	opts     RegistryOptions
	srv      *httptest.Server
	token    string
	requests atomic.Int64
	blobGets atomic.Int64
}

// ServeRegistry starts a registry; it stops when the test ends.
func ServeRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	r := &Registry{opts: opts, token: hex.EncodeToString(tok)}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	r.srv = httptest.NewServer(r.authenticate(h)) // httptest listens on 127.0.0.1
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Requests counts HTTP requests that reached the registry handler;
// BlobGets counts GETs of blobs among them.
func (r *Registry) Requests() int64 { return r.requests.Load() }
func (r *Registry) BlobGets() int64 { return r.blobGets.Load() }

// Ref returns host/repoTag.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Auth is the credential the registry accepts.
func (r *Registry) Auth() authn.Authenticator {
	if r.opts.User == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.opts.User, Password: r.opts.Password}
}

func (r *Registry) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.opts.User != "" {
			if r.opts.Token {
				if req.URL.Path == "/token" {
					r.issueToken(w, req)
					return
				}
				if req.Header.Get("Authorization") != "Bearer "+r.token {
					w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="imagetest"`, req.Host))
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
					return
				}
			} else if u, p, ok := req.BasicAuth(); !ok || u != r.opts.User || p != r.opts.Password {
				w.Header().Set("WWW-Authenticate", `Basic realm="imagetest"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
				return
			}
		}
		r.requests.Add(1)
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			r.blobGets.Add(1)
		}
		next.ServeHTTP(w, req)
	})
}

func (r *Registry) issueToken(w http.ResponseWriter, req *http.Request) {
	if u, p, ok := req.BasicAuth(); !ok || u != r.opts.User || p != r.opts.Password {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": r.token, "access_token": r.token})
}

// Push uploads img as repoTag (e.g. "library/busybox:1.36") and returns the
// full reference.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(r.Auth()), remote.WithContext(context.Background())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref.String()
}

// PushIndex uploads an image index (multi-platform) as repoTag.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(r.Auth())); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return ref.String()
}
