package kubeapi

import (
	"context"
	"crypto/x509"
	"net/http"
	"slices"
)

// Groups a client certificate's Organization may name.
const (
	// GroupAdmin may do everything: read Secrets' data, write, exec. The
	// unix socket's root and the agent's admin client certificate have it.
	GroupAdmin = "system:masters"
	// GroupViewer may read everything but Secrets, and may not write,
	// exec, attach or port-forward.
	GroupViewer = "pelagos:viewers"
)

// Identity is who makes a request.
type Identity struct {
	User   string
	Groups []string
}

func (id Identity) admin() bool  { return slices.Contains(id.Groups, GroupAdmin) }
func (id Identity) viewer() bool { return id.admin() || slices.Contains(id.Groups, GroupViewer) }

type identityKey struct{}

// WithIdentity marks every request h serves as made by whoever ident
// returns; a request it cannot identify is refused with 401.
func WithIdentity(h http.Handler, ident func(*http.Request) (Identity, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := ident(r)
		if !ok {
			writeStatus(w, newError(http.StatusUnauthorized, "Unauthorized", "Unauthorized"))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// Root is the identity of every client of the unix socket: the socket is
// root-only.
func Root(*http.Request) (Identity, bool) {
	return Identity{User: "root", Groups: []string{GroupAdmin}}, true
}

// CertIdentity identifies a TLS client by its verified certificate, as the
// API server does: the common name is the user, the organizations are the
// groups.
func CertIdentity(r *http.Request) (Identity, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return Identity{}, false
	}
	return identityOf(r.TLS.PeerCertificates[0]), true
}

func identityOf(c *x509.Certificate) Identity {
	return Identity{User: c.Subject.CommonName, Groups: slices.Clone(c.Subject.Organization)}
}

func identityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// authorize answers whether id may do verb on a resource (and subresource).
func authorize(id Identity, verb string, def *resourceDef, sub string) bool {
	if id.admin() {
		return true
	}
	if !id.viewer() {
		return false
	}
	switch {
	case def.sensitive:
		return false
	case sub == "exec" || sub == "attach" || sub == "portforward":
		return false
	}
	return verb == "get" || verb == "list" || verb == "watch"
}
