package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// Name rules Kubernetes applies that k8s.io/apimachinery's content package
// does not cover, in Kubernetes' wording. (apimachinery/pkg/util/validation
// has them but pulls k8s.io/utils into the binary.)

var (
	envVarNameRe  = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	configKeyRe   = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	portNameRe    = regexp.MustCompile(`^[-a-z0-9]+$`)
	portLetterRe  = regexp.MustCompile(`[a-z]`)
	httpHeaderRe  = regexp.MustCompile(`^[-A-Za-z0-9]+$`)
	maxConfigKey  = 253
	maxPortName   = 15
	maxEnvVarName = 1024
)

// isEnvVarName: a C-like identifier that may also hold '-' and '.'.
func isEnvVarName(v string) []string {
	var out []string
	if len(v) > maxEnvVarName {
		out = append(out, fmt.Sprintf("must be no more than %d characters", maxEnvVarName))
	}
	if !envVarNameRe.MatchString(v) {
		out = append(out, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")
	}
	return out
}

// isConfigMapKey: a file name that cannot escape its directory.
func isConfigMapKey(v string) []string {
	var out []string
	if len(v) > maxConfigKey {
		out = append(out, fmt.Sprintf("must be no more than %d characters", maxConfigKey))
	}
	if !configKeyRe.MatchString(v) {
		out = append(out, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
	}
	if v == "." || v == ".." || strings.HasPrefix(v, "..") {
		out = append(out, "must not be '.' or '..' or start with '..'")
	}
	return out
}

// isValidPortName: an IANA_SVC_NAME (RFC 6335).
func isValidPortName(v string) []string {
	var out []string
	if len(v) < 1 || len(v) > maxPortName {
		out = append(out, fmt.Sprintf("must be no more than %d characters", maxPortName))
	}
	if !portNameRe.MatchString(v) {
		out = append(out, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
	}
	if strings.Contains(v, "--") {
		out = append(out, "must not contain consecutive hyphens")
	}
	if len(v) > 0 && (v[0] == '-' || v[len(v)-1] == '-') {
		out = append(out, "must not begin or end with a hyphen")
	}
	if !portLetterRe.MatchString(v) {
		out = append(out, "must contain at least one letter (a-z)")
	}
	return out
}

func isHTTPHeaderName(v string) []string {
	if !httpHeaderRe.MatchString(v) {
		return []string{"a valid HTTP header must consist of alphanumeric characters or '-'"}
	}
	return nil
}
