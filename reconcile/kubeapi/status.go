package kubeapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// apiError is a failure in Kubernetes' shape: kubectl prints its message
// as "Error from server (Reason): message".
type apiError struct{ st metav1.Status }

func (e *apiError) Error() string { return e.st.Message }

// Unwrap gives the error its runtime kind, so packages that speak in
// runtime kinds (runtime/streaming) answer with the same code.
func (e *apiError) Unwrap() error {
	switch e.st.Code {
	case http.StatusNotFound:
		return runtime.ErrNotFound
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return runtime.ErrInvalidConfig
	case http.StatusConflict:
		return runtime.ErrConflict
	}
	return nil
}

func newError(code int, reason metav1.StatusReason, format string, args ...any) *apiError {
	return &apiError{metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: int32(code), Reason: reason,
		Message: fmt.Sprintf(format, args...),
	}}
}

func (e *apiError) with(d *metav1.StatusDetails) *apiError {
	e.st.Details = d
	return e
}

func errNotFound(gr, name string) *apiError {
	return newError(http.StatusNotFound, metav1.StatusReasonNotFound, "%s %q not found", gr, name).
		with(&metav1.StatusDetails{Name: name, Kind: gr})
}

func errBadRequest(format string, args ...any) *apiError {
	return newError(http.StatusBadRequest, metav1.StatusReasonBadRequest, format, args...)
}

func errForbidden(user, verb, gr, ns string) *apiError {
	msg := fmt.Sprintf("%s is forbidden: User %q cannot %s resource %q", gr, user, verb, gr)
	if ns != "" {
		msg += fmt.Sprintf(" in the namespace %q", ns)
	}
	return newError(http.StatusForbidden, metav1.StatusReasonForbidden, "%s", msg)
}

func errMethodNotAllowed(format string, args ...any) *apiError {
	return newError(http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, format, args...)
}

func errInternal(format string, args ...any) *apiError {
	return newError(http.StatusInternalServerError, metav1.StatusReasonInternalError, format, args...)
}

// writeStatus writes a Status body with its code.
func writeStatus(w http.ResponseWriter, err error) {
	ae, ok := err.(*apiError)
	if !ok {
		ae = errInternal("%v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(ae.st.Code))
	_ = json.NewEncoder(w).Encode(ae.st)
}
