package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// dockerHub is how ggcr names Docker Hub; people and Docker write docker.io.
const dockerHub = "index.docker.io"

// NormalizeReference returns the canonical form of an image reference, as
// Docker normalises it: busybox -> docker.io/library/busybox:latest,
// host:5000/app@sha256:... stays a digest reference.
func NormalizeReference(ref string) (string, error) {
	r, err := parseReference(ref, nil)
	if err != nil {
		return "", err
	}
	return canonical(r), nil
}

func parseReference(ref string, insecure []string) (name.Reference, error) {
	if ref == "" || strings.TrimSpace(ref) != ref {
		return nil, fmt.Errorf("image reference %q: empty or padded with spaces: %w", ref, runtime.ErrInvalidConfig)
	}
	// A reference with both tag and digest pins the digest; the tag is
	// informational, as in Docker.
	if at := strings.Index(ref, "@"); at >= 0 {
		named := ref[:at]
		if slash, colon := strings.LastIndex(named, "/"), strings.LastIndex(named, ":"); colon > slash {
			ref = named[:colon] + ref[at:]
		}
	}
	var opts []name.Option
	if reg := registryOf(ref); reg != "" && contains(insecure, reg) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %v: %w", ref, err, runtime.ErrInvalidConfig)
	}
	return r, nil
}

// registryOf returns the registry part of a reference when it has one
// (the first component holds a dot or a colon, or is localhost).
func registryOf(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if !ok {
		return ""
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return first
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func canonical(r name.Reference) string {
	reg := r.Context().RegistryStr()
	if reg == dockerHub {
		reg = "docker.io"
	}
	repo := reg + "/" + r.Context().RepositoryStr()
	switch t := r.(type) {
	case name.Digest:
		return repo + "@" + t.DigestStr()
	case name.Tag:
		return repo + ":" + t.TagStr()
	}
	return r.Name()
}

// familiar shortens a canonical reference the way Docker prints it:
// docker.io/library/busybox:1.36 -> busybox:1.36.
func familiar(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	return strings.TrimPrefix(ref, "library/")
}

// SplitReference splits a canonical reference into repository and tag or
// digest, for display (image ls).
func SplitReference(ref string) (repo, tag string) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return familiar(ref[:i]), ref[i+1:]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return familiar(ref[:i]), ref[i+1:]
	}
	return familiar(ref), ""
}
