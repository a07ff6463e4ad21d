package streaming

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Status is the part of Kubernetes' meta/v1 Status the protocols use: the
// body of a refused request, and the last message of a remote command
// session, which carries the exit code.
type Status struct {
	Kind       string         `json:"kind,omitempty"`
	APIVersion string         `json:"apiVersion,omitempty"`
	Status     string         `json:"status,omitempty"`
	Message    string         `json:"message,omitempty"`
	Reason     string         `json:"reason,omitempty"`
	Details    *StatusDetails `json:"details,omitempty"`
	Code       int32          `json:"code,omitempty"`
}

// StatusDetails holds the causes of a Status.
type StatusDetails struct {
	Causes []StatusCause `json:"causes,omitempty"`
}

// StatusCause is one cause; Type is "reason" on the wire, as in
// meta/v1.
type StatusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Values of Status fields the protocols define.
const (
	StatusSuccess         = "Success"
	StatusFailure         = "Failure"
	ReasonNonZeroExitCode = "NonZeroExitCode"
	CauseExitCode         = "ExitCode"
)

// exitStatus is the session's last word for a command that ended with
// code, or could not run (err).
func exitStatus(code int, err error) *Status {
	switch {
	case err != nil:
		return internalError(fmt.Errorf("error executing command in container: %w", err))
	case code == 0:
		return &Status{Status: StatusSuccess}
	case code < 0 || code > 255:
		// Clients parse the code as a byte; anything else is a runtime bug.
		return internalError(fmt.Errorf("error executing command in container: exit code %d is not a process exit status", code))
	}
	return &Status{
		Status:  StatusFailure,
		Reason:  ReasonNonZeroExitCode,
		Message: fmt.Sprintf("command terminated with non-zero exit code: exit status %d", code),
		Details: &StatusDetails{Causes: []StatusCause{{Type: CauseExitCode, Message: strconv.Itoa(code)}}},
	}
}

func internalError(err error) *Status {
	return &Status{Status: StatusFailure, Reason: "InternalError", Code: http.StatusInternalServerError,
		Message: "Internal error occurred: " + err.Error()}
}

// ExitCode reads a session's last Status: 0 for success, the command's
// code for NonZeroExitCode, and an error for anything else.
func (s *Status) ExitCode() (int, error) {
	switch {
	case s.Status == StatusSuccess:
		return 0, nil
	case s.Reason == ReasonNonZeroExitCode && s.Details != nil:
		for _, c := range s.Details.Causes {
			if c.Type == CauseExitCode {
				code, err := strconv.ParseUint(c.Message, 10, 8)
				if err != nil {
					return -1, fmt.Errorf("stream status: exit code %q is not a number from 0 to 255", c.Message)
				}
				return int(code), nil
			}
		}
		return -1, errors.New("stream status: NonZeroExitCode without an ExitCode cause")
	case s.Message != "":
		return -1, errors.New(s.Message)
	}
	return -1, fmt.Errorf("stream status: %s without a message", s.Status)
}

// refuse answers a request that cannot be upgraded with a Status, as the
// API server does.
func refuse(w http.ResponseWriter, code int, reason, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&Status{Kind: "Status", APIVersion: "v1", Status: StatusFailure,
		Message: fmt.Sprintf(format, args...), Reason: reason, Code: int32(code)})
}

// refuseErr answers with the HTTP status an error kind calls for.
func refuseErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		refuse(w, http.StatusNotFound, "NotFound", "%v", err)
	case errors.Is(err, runtime.ErrInvalidConfig), errors.Is(err, runtime.ErrConflict):
		refuse(w, http.StatusBadRequest, "BadRequest", "%v", err)
	default:
		refuse(w, http.StatusInternalServerError, "InternalError", "%v", err)
	}
}
