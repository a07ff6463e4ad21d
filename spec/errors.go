package spec

import (
	"errors"
	"strconv"
	"strings"
)

// Error classes a FieldError can wrap; test them with errors.Is.
var (
	// ErrUnknownField: a field that is not part of the Kubernetes v1 object
	// (usually a typo).
	ErrUnknownField = errors.New("unknown field")
	// ErrUnsupported: a valid Kubernetes field, kind or value that
	// pelagos-agent does not implement.
	ErrUnsupported = errors.New("not supported by pelagos-agent")
	// ErrInvalid: a value that breaks a validation rule.
	ErrInvalid = errors.New("invalid value")
	// ErrSyntax: the bytes are not YAML or JSON, or break an input limit
	// (size, alias expansion, depth, NUL, invalid UTF-8).
	ErrSyntax = errors.New("malformed document")
	// ErrWarning: a field that is accepted but has no effect on one node
	// (Document.Warnings). Never part of a document's Errs: it does not
	// make the document invalid.
	ErrWarning = errors.New("accepted with a warning")
	// ErrSkipped: a document of a kind that needs a cluster (Service,
	// Ingress, RBAC...), skipped with a notice (Document.Warnings).
	ErrSkipped = errors.New("skipped")
)

// FieldError is one problem found in a manifest. Every error the spec and
// spec/manifest packages report about a manifest is a *FieldError, so a
// caller can group them by file, document and field.
type FieldError struct {
	File string // the file as the caller named it; may be empty
	Doc  int    // 1-based index among the file's non-empty documents; 0 for the whole file
	Path string // field path such as spec.containers[0].image; empty for a whole document or file
	Line int    // 1-based line in File where the field starts; 0 when unknown
	Msg  string // what is wrong, for a person
	Err  error  // the class (ErrUnknownField, ErrUnsupported, ...) or an underlying cause

	// SingleDoc hides "doc N" in Error() for files holding one document.
	SingleDoc bool
}

// Error formats the problem as
//
//	web.yaml: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity (line 14)
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Doc > 0 && !e.SingleDoc {
		b.WriteString("doc ")
		b.WriteString(strconv.Itoa(e.Doc))
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(")")
	}
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors is a list of problems; it is an error when not empty.
type FieldErrors []*FieldError

func (l FieldErrors) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap lets errors.Is and errors.As look at every member.
func (l FieldErrors) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// AsError returns nil for an empty list, so callers can write
// `if err := errs.AsError(); err != nil`.
func (l FieldErrors) AsError() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// pathElem is one step of a field path: a struct field, a map key or a list
// index.
type pathElem struct {
	field string
	key   string
	index int
	kind  byte // 'f', 'k' or 'i'
}

// fieldPath is an immutable path; child methods return extended copies.
type fieldPath []pathElem

func (p fieldPath) child(e pathElem) fieldPath {
	out := make(fieldPath, len(p), len(p)+1)
	copy(out, p)
	return append(out, e)
}

func (p fieldPath) Field(name string) fieldPath { return p.child(pathElem{field: name, kind: 'f'}) }
func (p fieldPath) Key(k string) fieldPath      { return p.child(pathElem{key: k, kind: 'k'}) }
func (p fieldPath) Index(i int) fieldPath       { return p.child(pathElem{index: i, kind: 'i'}) }

func (p fieldPath) String() string {
	var b strings.Builder
	for i, e := range p {
		switch e.kind {
		case 'f':
			if i > 0 {
				b.WriteByte('.')
			}
			b.WriteString(e.field)
		case 'k':
			// Plain keys read like fields (resources.limits.memory);
			// keys with dots or slashes (label keys) go in brackets.
			if plainKey(e.key) {
				b.WriteByte('.')
				b.WriteString(e.key)
			} else {
				b.WriteByte('[')
				b.WriteString(e.key)
				b.WriteByte(']')
			}
		case 'i':
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// parsePath turns a printed path back into steps, to look up its line. A
// bracketed step is an index when numeric, else a map key.
func parsePath(s string) fieldPath {
	var p fieldPath
	for len(s) > 0 {
		switch s[0] {
		case '.':
			s = s[1:]
		case '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return p
			}
			inner := s[1:end]
			if n, err := strconv.Atoi(inner); err == nil {
				p = append(p, pathElem{index: n, kind: 'i'})
			} else {
				p = append(p, pathElem{key: inner, kind: 'k'})
			}
			s = s[end+1:]
		default:
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			p = append(p, pathElem{field: s[:end], kind: 'f'})
			s = s[end:]
		}
	}
	return p
}
