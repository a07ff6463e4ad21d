package kubeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
)

// Clients ask what they may do before they try: `kubectl auth can-i`,
// and k9s for every view. SelfSubjectAccessReview answers with the same
// rules that guard the requests (authorize).

func (s *Server) registerAccessReviews() {
	s.register(&resourceDef{
		group: "authorization.k8s.io", version: "v1", name: "selfsubjectaccessreviews", singular: "selfsubjectaccessreview",
		kind:      "SelfSubjectAccessReview",
		newObject: func() object { return &authorizationv1.SelfSubjectAccessReview{} },
		create:    s.reviewAccess,
	})
}

func (s *Server) reviewAccess(w http.ResponseWriter, r *http.Request, id Identity) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return errBadRequest("read the request body: %v", err)
	}
	var rev authorizationv1.SelfSubjectAccessReview
	if err := decodeReview(r, b, &rev); err != nil {
		return errBadRequest("the body is not a SelfSubjectAccessReview: %v", err)
	}
	rev.TypeMeta = metav1.TypeMeta{Kind: "SelfSubjectAccessReview", APIVersion: "authorization.k8s.io/v1"}
	allowed, reason := s.allowed(id, rev.Spec)
	rev.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: allowed, Reason: reason}
	writeJSON(w, http.StatusCreated, rev)
	return nil
}

func (s *Server) allowed(id Identity, spec authorizationv1.SelfSubjectAccessReviewSpec) (bool, string) {
	if na := spec.NonResourceAttributes; na != nil {
		// Discovery, version, health and OpenAPI are open to every
		// authenticated client.
		return strings.EqualFold(na.Verb, "get") || id.admin(), ""
	}
	ra := spec.ResourceAttributes
	if ra == nil {
		return false, "neither resource nor non-resource attributes given"
	}
	if id.admin() {
		return true, "members of " + GroupAdmin + " may do everything"
	}
	for _, d := range s.order {
		if d.group == ra.Group && d.name == ra.Resource && (ra.Version == "" || ra.Version == d.version) {
			return authorize(id, ra.Verb, d, ra.Subresource), ""
		}
	}
	return false, "this agent does not serve " + ra.Resource
}

// protobufMagic starts every Kubernetes protobuf body.
var protobufMagic = []byte("k8s\x00")

// decodeReview reads the review as JSON or, as kubectl sends it, in
// Kubernetes' protobuf envelope (a runtime.Unknown around the object).
func decodeReview(r *http.Request, b []byte, rev *authorizationv1.SelfSubjectAccessReview) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/vnd.kubernetes.protobuf" {
		return json.Unmarshal(b, rev)
	}
	raw, ok := bytes.CutPrefix(b, protobufMagic)
	if !ok {
		return errors.New("protobuf body without the k8s envelope")
	}
	var u kruntime.Unknown
	if err := u.Unmarshal(raw); err != nil {
		return err
	}
	return rev.Unmarshal(u.Raw)
}
