package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Limits bound the work one manifest file can cause, so that a hostile or
// broken file fails fast with bounded memory instead of hanging the agent.
type Limits struct {
	// MaxBytes caps a file's size. Kubernetes stores objects of at most
	// ~1.5 MiB; a pod manifest is a few KiB. Readers read at most MaxBytes+1
	// bytes to tell "too large" from "exactly the cap".
	MaxBytes int64
	// MaxDocuments caps the documents in one file.
	MaxDocuments int
	// MaxNodes caps a document's YAML nodes counted after alias expansion;
	// this is what defuses "billion laughs".
	MaxNodes int
	// MaxDepth caps the nesting of mappings and sequences.
	MaxDepth int
	// Validation carries the operator's relaxations of validation rules; it
	// travels with the limits because both are the agent's policy for
	// what a manifest may ask.
	Validation ValidationOptions
}

// DefaultLimits are the limits the agent and `validate` use.
var DefaultLimits = Limits{
	MaxBytes:     1 << 20,
	MaxDocuments: 256,
	MaxNodes:     100_000,
	MaxDepth:     32,
}

func (l Limits) orDefault() Limits {
	d := DefaultLimits
	if l.MaxBytes > 0 {
		d.MaxBytes = l.MaxBytes
	}
	if l.MaxDocuments > 0 {
		d.MaxDocuments = l.MaxDocuments
	}
	if l.MaxNodes > 0 {
		d.MaxNodes = l.MaxNodes
	}
	if l.MaxDepth > 0 {
		d.MaxDepth = l.MaxDepth
	}
	d.Validation = l.Validation
	return d
}

// Document is one non-empty YAML document of a file, decoded, defaulted
// and validated. Exactly one of Pod, ConfigMap, Secret and
// PersistentVolumeClaim is set when the
// document decoded strictly to a known kind, even if it then failed
// validation; it is nil after an unknown field, unsupported field or type
// error. Only a document whose Errs is empty (Valid) may be used.
type Document struct {
	Index     int    // 1-based among the file's non-empty documents
	Line      int    // line of the document's first byte in the file
	NameLine  int    // line of metadata.name in the file; 0 if unknown
	Kind      string // the document's kind, as written; may be empty
	Pod       *Pod
	ConfigMap *ConfigMap
	Secret    *Secret
	// PersistentVolumeClaim sizes a node-local named volume.
	PersistentVolumeClaim *PersistentVolumeClaim
	Errs                  FieldErrors
}

func (d *Document) dropObjects() {
	d.Pod, d.ConfigMap, d.Secret, d.PersistentVolumeClaim = nil, nil, nil, nil
}

// Valid reports whether the document decoded and validated cleanly.
func (d *Document) Valid() bool {
	return len(d.Errs) == 0 && (d.Pod != nil || d.ConfigMap != nil || d.Secret != nil || d.PersistentVolumeClaim != nil)
}

// ParseFile decodes every document of a manifest file strictly, applies the
// defaults and validates each object. name is used in error messages only.
// File-level problems (size, NUL, invalid UTF-8, too many documents) are
// returned as fileErrs and then no document is decoded; per-document problems
// are in each Document's Errs. It never panics on any input.
func ParseFile(name string, data []byte, lim Limits) (docs []*Document, fileErrs FieldErrors) {
	lim = lim.orDefault()
	fileErr := func(format string, args ...any) FieldErrors {
		return FieldErrors{{File: name, Msg: fmt.Sprintf(format, args...), Err: ErrSyntax}}
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, fileErr("file is larger than the %d-byte limit", lim.MaxBytes)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, FieldErrors{{File: name, Line: 1 + bytes.Count(data[:i], []byte{'\n'}),
			Msg: "file contains a NUL byte", Err: ErrSyntax}}
	}
	if !utf8.Valid(data) {
		line := 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			if data[i] == '\n' {
				line++
			}
			i += size
		}
		return nil, FieldErrors{{File: name, Line: line, Msg: "file is not valid UTF-8", Err: ErrSyntax}}
	}
	chunks := splitDocuments(data)
	if len(chunks) > lim.MaxDocuments {
		return nil, fileErr("file holds %d documents, more than the limit of %d", len(chunks), lim.MaxDocuments)
	}
	for i, c := range chunks {
		d := decodeDocument(name, i+1, c, lim)
		docs = append(docs, d)
	}
	if len(docs) == 1 {
		for _, e := range docs[0].Errs {
			e.SingleDoc = true
		}
	}
	return docs, nil
}

type chunk struct {
	line int // first line, 1-based
	data []byte
}

// splitDocuments splits a stream on lines that are exactly "---" (plus
// trailing blanks), as Kubernetes' YAML reader does, and drops documents
// that hold only blanks and comments.
func splitDocuments(data []byte) []chunk {
	var out []chunk
	start, startLine, line := 0, 1, 1
	flush := func(end int) {
		c := data[start:end]
		if !blankYAML(c) {
			out = append(out, chunk{line: startLine, data: c})
		}
	}
	for i := 0; i <= len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		var l []byte
		next := len(data) + 1
		if end < 0 {
			l = data[i:]
		} else {
			l = data[i : i+end]
			next = i + end + 1
		}
		if bytes.HasPrefix(l, []byte("---")) && len(bytes.TrimRight(l[3:], " \t\r")) == 0 {
			flush(i)
			start, startLine = min(next, len(data)), line+1
		}
		i = next
		line++
	}
	if start < len(data) {
		flush(len(data))
	}
	return out
}

func blankYAML(b []byte) bool {
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		t := bytes.TrimSpace(l)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("...")) {
			return false
		}
	}
	return true
}

// docDecoder carries one document through the decode steps.
type docDecoder struct {
	file string
	doc  *Document
	c    chunk
	root *yamlv3.Node // for line numbers; nil if unavailable
	errs FieldErrors
	// typoOf are the paths of fields an unknown field probably misspells.
	typoOf []string
}

func (d *docDecoder) add(p fieldPath, err error, format string, args ...any) {
	path := p.String()
	d.errs = append(d.errs, &FieldError{
		File: d.file, Doc: d.doc.Index, Path: path, Line: d.lineOf(p),
		Msg: fmt.Sprintf(format, args...), Err: err,
	})
}

// lineOf finds the line of the deepest existing node on the path.
func (d *docDecoder) lineOf(p fieldPath) int {
	n := d.root
	if n == nil {
		return 0
	}
	line := n.Line
	for _, e := range p {
		for n.Kind == yamlv3.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		var next *yamlv3.Node
		switch {
		case n.Kind == yamlv3.MappingNode && e.kind != 'i':
			want := e.field
			if e.kind == 'k' {
				want = e.key
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == want {
					line = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
		case n.Kind == yamlv3.SequenceNode && e.kind == 'i':
			if e.index < len(n.Content) {
				next = n.Content[e.index]
				line = next.Line
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	if line == 0 {
		return 0
	}
	return d.c.line + line - 1
}

func decodeDocument(file string, index int, c chunk, lim Limits) *Document {
	doc := &Document{Index: index, Line: c.line}
	d := &docDecoder{file: file, doc: doc, c: c}
	defer func() {
		doc.Errs = append(doc.Errs, d.errs...)
		sortByLine(doc.Errs)
	}()

	// Parse once with yaml.v3 for line numbers and to measure the document
	// before anything expands its aliases.
	var n yamlv3.Node
	dec := yamlv3.NewDecoder(bytes.NewReader(c.data))
	if err := dec.Decode(&n); err != nil {
		d.syntaxError(err)
		return doc
	}
	// A second document here would be silently dropped by the converters
	// below: it can only come from a separator that is not alone on its
	// line ("--- # x", "--- !tag"), which Kubernetes does not split on either.
	var extra yamlv3.Node
	if err := dec.Decode(&extra); err != io.EOF {
		d.add(nil, ErrSyntax, "holds more than one YAML document: put each \"---\" separator alone on its line")
		return doc
	}
	if n.Kind == yamlv3.DocumentNode && len(n.Content) == 1 {
		d.root = n.Content[0]
	}
	if msg := checkShape(d.root, lim); msg != "" {
		d.root = nil
		d.add(nil, ErrSyntax, "%s", msg)
		return doc
	}
	if d.root == nil || d.root.Kind != yamlv3.MappingNode {
		d.add(nil, ErrSyntax, "document must be a mapping with apiVersion and kind")
		return doc
	}

	// Convert with sigs.k8s.io/yaml, which resolves scalars with the same
	// YAML 1.1 rules as kubectl and refuses duplicate keys.
	js, err := yaml.YAMLToJSONStrict(c.data)
	if err != nil {
		d.syntaxError(err)
		return doc
	}
	var tree any
	jdec := json.NewDecoder(bytes.NewReader(js))
	jdec.UseNumber()
	if err := jdec.Decode(&tree); err != nil {
		d.add(nil, ErrSyntax, "not valid YAML: %v", err)
		return doc
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		d.add(nil, ErrSyntax, "document must be a mapping with apiVersion and kind")
		return doc
	}
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	doc.Kind = kind
	var target any
	switch kind {
	case KindPod:
		doc.Pod = &Pod{}
		target = doc.Pod
	case KindConfigMap:
		doc.ConfigMap = &ConfigMap{}
		target = doc.ConfigMap
	case KindSecret:
		doc.Secret = &Secret{}
		target = doc.Secret
	case KindPersistentVolumeClaim:
		doc.PersistentVolumeClaim = &PersistentVolumeClaim{}
		target = doc.PersistentVolumeClaim
	case "":
		d.add(fieldPath{}.Field("kind"), ErrInvalid, "is required: one of Pod, ConfigMap, Secret, PersistentVolumeClaim")
		return doc
	default:
		d.add(fieldPath{}.Field("kind"), ErrUnsupported, "%q is not supported by pelagos-agent: only Pod, ConfigMap, Secret and PersistentVolumeClaim are", kind)
		return doc
	}
	if apiVersion != APIVersion {
		if apiVersion == "" {
			d.add(fieldPath{}.Field("apiVersion"), ErrInvalid, "is required: v1")
		} else {
			d.add(fieldPath{}.Field("apiVersion"), ErrUnsupported, "%q is not supported for kind %s: use v1", apiVersion, kind)
		}
	}
	d.checkValue(tree, reflectTypeOf(target), nil, "")
	strictErrs := len(d.errs)
	if strictErrs > 0 {
		// checkValue pruned what cannot be decoded: decode the rest, so
		// validation still reports the document's other problems.
		if js, err = json.Marshal(tree); err != nil {
			d.add(nil, ErrInvalid, "cannot decode: %v", err)
			doc.dropObjects()
			return doc
		}
	}
	if err := json.Unmarshal(js, target); err != nil {
		// checkValue should have caught this; report rather than trust it.
		d.add(nil, ErrInvalid, "cannot decode: %v", err)
		doc.dropObjects()
		return doc
	}
	// A document with decoding problems is still validated, so the user
	// sees every problem in one go; the object itself is dropped below.
	defer func() {
		if strictErrs > 0 {
			doc.dropObjects()
		}
	}()
	doc.NameLine = d.lineOf(fieldPath{}.Field("metadata").Field("name"))
	var verrs FieldErrors
	switch {
	case doc.Pod != nil:
		SetDefaults(doc.Pod)
		verrs = ValidatePodWithOptions(doc.Pod, lim.Validation)
	case doc.ConfigMap != nil:
		SetConfigMapDefaults(doc.ConfigMap)
		verrs = ValidateConfigMap(doc.ConfigMap)
	case doc.Secret != nil:
		SetSecretDefaults(doc.Secret)
		verrs = ValidateSecret(doc.Secret)
	case doc.PersistentVolumeClaim != nil:
		SetPersistentVolumeClaimDefaults(doc.PersistentVolumeClaim)
		verrs = ValidatePersistentVolumeClaim(doc.PersistentVolumeClaim)
	}
	decodePaths := make([]string, 0, strictErrs+len(d.typoOf))
	for _, e := range d.errs {
		decodePaths = append(decodePaths, e.Path)
	}
	decodePaths = append(decodePaths, d.typoOf...)
	for _, e := range verrs {
		if cascade(e.Path, decodePaths) {
			continue
		}
		e.File, e.Doc = file, index
		e.Line = d.lineOf(parsePath(e.Path))
		d.errs = append(d.errs, e)
	}
	return doc
}

// cascade reports whether a validation problem at path follows from a
// decoding problem (unknown, unsupported or undecodable field) at, above
// or below it, or concerns the field an unknown field misspells: "must set
// exactly one volume type" after an unsupported volume type, "is required"
// after a value of the wrong type or after "imagee". Such problems are not
// reported: they are not what the user has to fix.
func cascade(path string, decodePaths []string) bool {
	if path == "" {
		return false
	}
	within := func(inner, outer string) bool {
		return strings.HasPrefix(inner, outer) && (len(inner) == len(outer) || inner[len(outer)] == '.' || inner[len(outer)] == '[')
	}
	for _, dp := range decodePaths {
		if dp != "" && (within(path, dp) || within(dp, path)) {
			return true
		}
	}
	return false
}

// sortByLine orders a document's problems as they appear in the file:
// by line, then by field path; problems of the whole document first.
func sortByLine(errs FieldErrors) {
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Path < errs[j].Path
	})
}

// checkShape bounds depth, alias-expanded node count and alias-expanded
// scalar bytes before any decoder that expands aliases sees the document.
// (Counting nodes alone is not enough: one long string aliased ten thousand
// times is few nodes and many megabytes.) Sizes of anchored nodes are
// memoised, so the check itself is linear in the document.
func checkShape(root *yamlv3.Node, lim Limits) string {
	if root == nil {
		return ""
	}
	if depthExceeded(root, lim.MaxDepth) {
		return fmt.Sprintf("document nests deeper than %d levels", lim.MaxDepth)
	}
	type weight struct{ nodes, bytes int64 }
	maxNodes, maxBytes := int64(lim.MaxNodes), 2*lim.MaxBytes
	over := func(w weight) bool { return w.nodes > maxNodes || w.bytes > maxBytes }
	memo := map[*yamlv3.Node]weight{}
	var size func(n *yamlv3.Node) weight
	size = func(n *yamlv3.Node) weight {
		if n.Kind == yamlv3.AliasNode {
			if n.Alias == nil {
				return weight{1, 0}
			}
			if w, ok := memo[n.Alias]; ok {
				return w
			}
			// An alias to a node still being measured is a cycle; count it
			// as over the limit.
			memo[n.Alias] = weight{maxNodes + 1, 0}
			w := size(n.Alias)
			memo[n.Alias] = w
			return w
		}
		w := weight{1, int64(len(n.Value))}
		for _, c := range n.Content {
			cw := size(c)
			w.nodes += cw.nodes
			w.bytes += cw.bytes
			if over(w) {
				break
			}
		}
		if n.Anchor != "" {
			memo[n] = w
		}
		return w
	}
	if w := size(root); over(w) {
		return fmt.Sprintf("document expands to more than %d YAML nodes or %d bytes (aliases included); refusing it as a possible YAML bomb", maxNodes, maxBytes)
	}
	return ""
}

func depthExceeded(root *yamlv3.Node, max int) bool {
	var walk func(n *yamlv3.Node, depth int) bool
	walk = func(n *yamlv3.Node, depth int) bool {
		if depth > max {
			return true
		}
		for _, c := range n.Content {
			if walk(c, depth+1) {
				return true
			}
		}
		return false
	}
	return walk(root, 0)
}

// lineRE finds the parser's "line N: " in a message.
var lineRE = regexp.MustCompile(`line ([0-9]+): `)

// syntaxError reports a YAML parser error with its line in Line (as every
// other problem has it, so `validate -o json` can show it) rather than in
// the message.
func (d *docDecoder) syntaxError(err error) {
	msg := strings.Join(strings.Fields(yamlMessage(err, d.c.line)), " ")
	line := 0
	if m := lineRE.FindStringSubmatchIndex(msg); m != nil {
		line, _ = strconv.Atoi(msg[m[2]:m[3]])
		msg = msg[:m[0]] + msg[m[1]:]
	}
	msg = strings.TrimPrefix(msg, "unmarshal errors: ")
	d.errs = append(d.errs, &FieldError{File: d.file, Doc: d.doc.Index, Line: line,
		Msg: "not valid YAML: " + msg, Err: ErrSyntax})
}

// yamlMessage shifts "line N" in a parser message by the document's offset
// so it names the line in the file.
func yamlMessage(err error, firstLine int) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: yaml: ")
	if firstLine <= 1 {
		return msg
	}
	var out strings.Builder
	for {
		i := strings.Index(msg, "line ")
		if i < 0 {
			out.WriteString(msg)
			break
		}
		out.WriteString(msg[:i+5])
		msg = msg[i+5:]
		j := 0
		for j < len(msg) && msg[j] >= '0' && msg[j] <= '9' {
			j++
		}
		if j == 0 {
			continue
		}
		var n int
		fmt.Sscan(msg[:j], &n)
		fmt.Fprintf(&out, "%d", n+firstLine-1)
		msg = msg[j:]
	}
	return out.String()
}
