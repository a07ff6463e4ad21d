package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// EnsureImage applies the pull policy and returns the stored image.
// The zero policy is IfNotPresent. Concurrent calls for one reference share
// a single pull.
func (s *Store) EnsureImage(ctx context.Context, ref string, opts runtime.PullOptions) (*runtime.Image, error) {
	r, err := parseReference(ref, s.opts.InsecureRegistries)
	if err != nil {
		return nil, err
	}
	canon := canonical(r)
	switch opts.Policy {
	case runtime.PullNever, runtime.PullIfNotPresent, "":
		// Present means indexed with every layer unpacked: a layer lost
		// from disk is pulled (or re-unpacked from its blob) again.
		_, img, err := s.LayerDirs(ctx, canon)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, runtime.ErrNotFound) && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if opts.Policy == runtime.PullNever {
			return nil, fmt.Errorf("image %s is not present and imagePullPolicy is Never: %w", canon, runtime.ErrNotFound)
		}
	case runtime.PullAlways:
	default:
		return nil, fmt.Errorf("image %s: unknown pull policy %q: %w", canon, opts.Policy, runtime.ErrInvalidConfig)
	}
	v, err := s.flights.do(ctx, "pull:"+canon, func() (any, error) {
		return s.pull(ctx, r, canon, opts)
	})
	if err != nil {
		return nil, err
	}
	return v.(*runtime.Image), nil
}

func (s *Store) pull(ctx context.Context, r name.Reference, canon string, opts runtime.PullOptions) (*runtime.Image, error) {
	prog := newProgress(opts.Progress, familiar(canon))
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(s.transport()),
		remote.WithAuthFromKeychain(s.keychain(opts.Auth)),
		remote.WithPlatform(hostPlatform()),
		remote.WithUserAgent("pelagos-agent"),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
	src, err := s.source(r)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", canon, err)
	}
	desc, err := remote.Get(src, ropts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", canon, classifyRemote(err))
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("pull %s: platform %s: %w", canon, platformString(hostPlatform()), err)
	}
	blobs, err := s.remoteBlobs(ctx, src.Context(), opts.Auth)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", canon, err)
	}
	out, err := s.storeImage(ctx, img, blobs, []string{canon}, prog)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", canon, err)
	}
	prog.done(fmt.Sprintf("pulled %s (%s)", shortID(out.Digest), humanBytes(out.Size)))
	return out, nil
}

// source is where r is pulled from: its registry, or that registry's
// mirror (Options.Mirrors) with the same repository and tag or digest.
func (s *Store) source(r name.Reference) (name.Reference, error) {
	reg := r.Context().RegistryStr()
	if reg == dockerHub {
		reg = "docker.io"
	}
	m, ok := s.opts.Mirrors[reg]
	if !ok {
		return r, nil
	}
	ref := m + "/" + r.Context().RepositoryStr()
	switch t := r.(type) {
	case name.Digest:
		ref += "@" + t.DigestStr()
	case name.Tag:
		ref += ":" + t.TagStr()
	}
	src, err := parseReference(ref, s.opts.InsecureRegistries)
	if err != nil {
		return nil, fmt.Errorf("mirror %s of %s: %w", m, reg, err)
	}
	return src, nil
}

// remoteBlobs returns a blob fetcher for repo that authenticates like the
// manifest fetch and asks for byte ranges when resuming.
func (s *Store) remoteBlobs(ctx context.Context, repo name.Repository, auths []runtime.RegistryAuth) (blobOpener, error) {
	auth, err := authn.Resolve(ctx, s.keychain(auths), repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, s.transport(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", repo.RegistryStr(), classifyRemote(err))
	}
	client := &http.Client{Transport: transport.NewUserAgent(rt, "pelagos-agent")}
	base := fmt.Sprintf("%s://%s/v2/%s/blobs/", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr())
	return func(ctx context.Context, digest string, size int64) blobSource {
		return &remoteBlob{ctx: ctx, client: client, url: base + digest, size: size}
	}, nil
}

// remoteBlob downloads one blob, from an offset when asked (HTTP Range);
// the caller verifies the digest.
type remoteBlob struct {
	ctx    context.Context
	client *http.Client
	url    string
	size   int64
}

func (b *remoteBlob) Compressed() (io.ReadCloser, error) {
	rc, _, err := b.CompressedFrom(0)
	return rc, err
}

func (b *remoteBlob) CompressedFrom(off int64) (io.ReadCloser, bool, error) {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, false, err
	}
	if off > 0 && b.size > off {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, b.size-1))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, false, err
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		resp.Body.Close()
		return nil, false, classifyRemote(err)
	}
	if resp.StatusCode == http.StatusPartialContent {
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", off)) {
			resp.Body.Close()
			return nil, false, fmt.Errorf("GET %s: Content-Range %q does not start at %d", b.url, resp.Header.Get("Content-Range"), off)
		}
		return resp.Body, true, nil
	}
	return resp.Body, false, nil
}

// classifyRemote maps a registry's "no such manifest/repository" to
// ErrNotFound so callers can tell a typo from an outage.
func classifyRemote(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	if terr.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", err, runtime.ErrNotFound)
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return fmt.Errorf("%w: %w", err, runtime.ErrNotFound)
		}
	}
	return err
}

// hostPlatform is the platform images are selected for: this binary's OS
// and architecture, with the ARM variant when there is one.
func hostPlatform() v1.Platform {
	p := v1.Platform{OS: goruntime.GOOS, Architecture: goruntime.GOARCH}
	if goruntime.GOARCH == "arm" {
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, st := range bi.Settings {
				if st.Key == "GOARM" && st.Value != "" {
					p.Variant = "v" + strings.TrimSuffix(strings.TrimSuffix(st.Value, ",softfloat"), ",hardfloat")
				}
			}
		}
	}
	return p
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// transport refuses plain HTTP except to loopback and to the registries
// listed as insecure. ggcr itself falls back to HTTP for any private
// address, which would send credentials in the clear on a LAN.
func (s *Store) transport() http.RoundTripper {
	base := http.DefaultTransport.(*http.Transport).Clone()
	return &guardTransport{base: base, insecure: s.opts.InsecureRegistries}
}

type guardTransport struct {
	base     http.RoundTripper
	insecure []string
}

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopbackHost(req.URL.Hostname()) && !contains(g.insecure, req.URL.Host) &&
		!contains(g.insecure, req.URL.Hostname()) {
		return nil, fmt.Errorf("plain HTTP to %s refused: not loopback and not an insecure registry", req.URL.Host)
	}
	return g.base.RoundTrip(req)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// keychain resolves credentials: a pod's pull secrets first, then the
// Docker config.json, then anonymous.
func (s *Store) keychain(auths []runtime.RegistryAuth) authn.Keychain {
	chains := []authn.Keychain{staticKeychain(auths)}
	if s.opts.DockerConfig != "" {
		chains = append(chains, fileKeychain(s.opts.DockerConfig))
	} else {
		chains = append(chains, authn.DefaultKeychain)
	}
	return authn.NewMultiKeychain(chains...)
}

type staticKeychain []runtime.RegistryAuth

func (k staticKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	for _, a := range k {
		if registryKey(a.Registry) == registryKey(res.RegistryStr()) {
			return authn.FromConfig(authn.AuthConfig{
				Username: a.Username, Password: a.Password, Auth: a.Auth,
				IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// registryKey normalises how config.json and pull secrets name a registry
// (https://index.docker.io/v1/, docker.io, host:port/...) to a host[:port].
func registryKey(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "/")
	if s == "docker.io" || s == "registry-1.docker.io" {
		s = dockerHub
	}
	return s
}

// fileKeychain reads "auths" from a Docker config.json at an explicit path.
type fileKeychain string

func (k fileKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	b, err := os.ReadFile(string(k))
	if errors.Is(err, fs.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", string(k), err)
	}
	var cfg struct {
		Auths map[string]authn.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", string(k), err)
	}
	for host, a := range cfg.Auths {
		if registryKey(host) == registryKey(res.RegistryStr()) {
			if a.Auth != "" && a.Username == "" {
				if dec, err := base64.StdEncoding.DecodeString(a.Auth); err == nil {
					a.Username, a.Password, _ = strings.Cut(string(dec), ":")
					a.Auth = ""
				}
			}
			return authn.FromConfig(a), nil
		}
	}
	return authn.Anonymous, nil
}

// DefaultDockerConfig is where the Docker CLI keeps credentials for the
// current user; exported for the CLI's help text.
func DefaultDockerConfig() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker", "config.json")
}
