package kubeapi

import (
	"net/http"
	goruntime "runtime"
	"runtime/debug"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
)

// aggregatedType is the media type of aggregated discovery, which kubectl
// asks for first: one document per /api and /apis instead of one request
// per group version.
const aggregatedType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

func wantsAggregated(r *http.Request) bool {
	for _, a := range parseAccept(r.Header.Get("Accept")) {
		if a.Type == "application" && a.SubType == "json" {
			return a.Params["g"] == "apidiscovery.k8s.io" && a.Params["v"] == "v2" && a.Params["as"] == "APIGroupDiscoveryList"
		}
	}
	return false
}

// apiLevel is the Kubernetes minor version whose API types are served
// (those of the k8s.io/api module the agent is built with).
func apiLevel() (major, minor string) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "k8s.io/api" {
				// k8s.io/api v0.N.x carries Kubernetes 1.N.
				parts := strings.Split(strings.TrimPrefix(d.Version, "v"), ".")
				if len(parts) >= 2 && parts[0] == "0" {
					return "1", parts[1]
				}
			}
		}
	}
	return "", ""
}

func (s *Server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	major, minor := apiLevel()
	writeJSON(w, http.StatusOK, version.Info{
		Major: major, Minor: minor, GitVersion: agentVersion(s.cfg.Version), GitCommit: s.cfg.Commit,
		GitTreeState: "", GoVersion: goruntime.Version(), Compiler: goruntime.Compiler,
		Platform: goruntime.GOOS + "/" + goruntime.GOARCH,
	})
}

// groupVersions lists the served group versions in discovery order; the
// core group is "".
func (s *Server) groupVersions() []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range s.order {
		if gv := d.groupVersion(); !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	return out
}

func splitGV(gv string) (group, ver string) {
	if g, v, ok := strings.Cut(gv, "/"); ok {
		return g, v
	}
	return "", gv
}

func (s *Server) serveCoreVersions(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, true)
		return
	}
	writeJSON(w, http.StatusOK, metav1.APIVersions{
		TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}},
	})
}

func (s *Server) apiGroup(name string) (metav1.APIGroup, bool) {
	g := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
	for _, gv := range s.groupVersions() {
		if group, ver := splitGV(gv); group == name && group != "" {
			d := metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: ver}
			g.Versions = append(g.Versions, d)
			if g.PreferredVersion.Version == "" {
				g.PreferredVersion = d
			}
		}
	}
	return g, len(g.Versions) > 0
}

func (s *Server) serveGroups(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, false)
		return
	}
	l := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
	seen := map[string]bool{}
	for _, gv := range s.groupVersions() {
		if group, _ := splitGV(gv); group != "" && !seen[group] {
			seen[group] = true
			g, _ := s.apiGroup(group)
			l.Groups = append(l.Groups, g)
		}
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) serveGroup(w http.ResponseWriter, r *http.Request) {
	g, ok := s.apiGroup(r.PathValue("group"))
	if !ok {
		writeStatus(w, newError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// serveResourceList is /api/v1 and /apis/GROUP/VERSION.
func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request) {
	gv := "v1"
	if g := r.PathValue("group"); g != "" {
		gv = g + "/" + r.PathValue("version")
	}
	l := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
	for _, d := range s.order {
		if d.groupVersion() != gv {
			continue
		}
		l.APIResources = append(l.APIResources, metav1.APIResource{Name: d.name, SingularName: d.singular,
			Namespaced: d.namespaced, Kind: d.kind, Verbs: d.verbs(s), ShortNames: d.shortNames, Categories: d.categories})
		for _, sub := range d.subresources {
			l.APIResources = append(l.APIResources, metav1.APIResource{Name: d.name + "/" + sub.name,
				Namespaced: d.namespaced, Kind: sub.kind, Verbs: sub.verbs})
		}
	}
	if l.APIResources == nil {
		writeStatus(w, newError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// writeAggregated writes the aggregated discovery document of the core
// group (core) or of every other group.
func (s *Server) writeAggregated(w http.ResponseWriter, core bool) {
	out := apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	index := map[string]int{}
	for _, d := range s.order {
		if (d.group == "") != core {
			continue
		}
		i, ok := index[d.group]
		if !ok {
			i = len(out.Items)
			index[d.group] = i
			out.Items = append(out.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: d.group}})
		}
		g := &out.Items[i]
		vi := -1
		for j := range g.Versions {
			if g.Versions[j].Version == d.version {
				vi = j
			}
		}
		if vi < 0 {
			g.Versions = append(g.Versions, apidiscoveryv2.APIVersionDiscovery{Version: d.version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent})
			vi = len(g.Versions) - 1
		}
		scope := apidiscoveryv2.ScopeCluster
		if d.namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		res := apidiscoveryv2.APIResourceDiscovery{Resource: d.name, SingularResource: d.singular, Scope: scope,
			ResponseKind: &metav1.GroupVersionKind{Group: d.group, Version: d.version, Kind: d.kind},
			Verbs:        d.verbs(s), ShortNames: d.shortNames, Categories: d.categories}
		for _, sub := range d.subresources {
			res.Subresources = append(res.Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub.name,
				ResponseKind: &metav1.GroupVersionKind{Version: "v1", Kind: sub.kind}, Verbs: sub.verbs})
		}
		g.Versions[vi].Resources = append(g.Versions[vi].Resources, res)
	}
	w.Header().Set("Content-Type", aggregatedType)
	w.Header().Set("Vary", "Accept")
	writeJSON(w, http.StatusOK, out)
}
