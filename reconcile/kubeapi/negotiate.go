package kubeapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/munnerz/goautoneg"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// format is the shape a client asked for in its Accept header.
type format struct {
	kind    formatKind
	version string // meta.k8s.io version of a Table or PartialObjectMetadata
}

type formatKind int

const (
	formatObject  formatKind = iota // the object (or list) itself, as JSON
	formatTable                     // server-side printing, meta.k8s.io Table
	formatPartial                   // metadata only, PartialObjectMetadata(List)
)

// negotiate picks the first acceptable shape, as the API server does:
// "application/json;as=Table;v=v1;g=meta.k8s.io" for kubectl get, metadata
// only for metadata informers, the object otherwise. Protobuf is not
// offered; clients that ask for it also accept JSON.
func negotiate(r *http.Request) (format, bool) {
	h := r.Header.Get("Accept")
	if h == "" {
		return format{}, true
	}
	for _, a := range parseAccept(h) {
		json := (a.Type == "application" && a.SubType == "json") || (a.Type == "*" && a.SubType == "*") ||
			(a.Type == "application" && a.SubType == "*")
		if !json {
			continue
		}
		as, g, v := a.Params["as"], a.Params["g"], a.Params["v"]
		switch {
		case as == "":
			return format{}, true
		case g != "meta.k8s.io" || (v != "v1" && v != "v1beta1"):
			continue
		case as == "Table":
			return format{kind: formatTable, version: v}, true
		case as == "PartialObjectMetadata" || as == "PartialObjectMetadataList":
			return format{kind: formatPartial, version: v}, true
		}
	}
	return format{}, false
}

// negotiated is negotiate, or the 406 for a client that accepts nothing
// served.
func negotiated(r *http.Request) (format, error) {
	f, ok := negotiate(r)
	if !ok {
		return f, newError(http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, "only application/json is served")
	}
	return f, nil
}

// parseAccept parses an Accept header, keeping the client's order among
// equal qualities (goautoneg's sort does not promise to).
func parseAccept(h string) []goautoneg.Accept {
	var out []goautoneg.Accept
	for _, part := range strings.Split(h, ",") {
		out = append(out, goautoneg.ParseAccept(part)...)
	}
	slices.SortStableFunc(out, func(a, b goautoneg.Accept) int {
		switch {
		case a.Q > b.Q:
			return -1
		case a.Q < b.Q:
			return 1
		}
		return 0
	})
	return out
}
