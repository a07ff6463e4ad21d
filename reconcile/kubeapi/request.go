package kubeapi

import (
	"net/http"
	"strconv"
	"strings"
)

// requestInfo is what a resource request asks for, parsed from its path as
// the API server does: /api/v1[/namespaces/NS]/RESOURCE[/NAME[/SUB]] and
// /apis/GROUP/VERSION/... .
type requestInfo struct {
	group, version string
	namespace      string
	resource       string
	name           string
	subresource    string
	verb           string // get list watch create update patch delete deletecollection
}

// parseResourcePath parses a resource path; ok is false for anything else
// (discovery documents included).
func parseResourcePath(r *http.Request) (requestInfo, bool) {
	var ri requestInfo
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		ri.version, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		ri.group, ri.version, parts = parts[1], parts[2], parts[3:]
	default:
		return ri, false
	}
	if parts[0] == "namespaces" && len(parts) >= 3 {
		ri.namespace, parts = parts[1], parts[2:]
	}
	ri.resource = parts[0]
	if len(parts) > 1 {
		ri.name = parts[1]
	}
	if len(parts) > 2 {
		ri.subresource = strings.Join(parts[2:], "/")
	}
	if len(parts) > 3 {
		return ri, false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		ri.verb = "get"
		if ri.name == "" {
			ri.verb = "list"
			if isTrue(r.URL.Query().Get("watch")) {
				ri.verb = "watch"
			}
		}
	case http.MethodPost:
		ri.verb = "create"
	case http.MethodPut:
		ri.verb = "update"
	case http.MethodPatch:
		ri.verb = "patch"
	case http.MethodDelete:
		ri.verb = "delete"
		if ri.name == "" {
			ri.verb = "deletecollection"
		}
	default:
		ri.verb = strings.ToLower(r.Method)
	}
	return ri, true
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

func isTrue(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

// groupResource is "pods" or "events.events.k8s.io", as messages name it.
func (ri requestInfo) groupResource() string {
	if ri.group == "" {
		return ri.resource
	}
	return ri.resource + "." + ri.group
}
