package kubeapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// maxBody bounds a write's request body (a manifest is at most 1 MiB).
const maxBody = 3 << 20

// Writer turns API writes into manifest files in one directory, which the
// agent also watches: the directory stays the single source of truth. A
// file is written only after it passed the loader's own checks (trust,
// size, strict decoding, validation), atomically (temporary dotfile, fsync,
// rename).
type Writer struct {
	dir  string
	opts manifest.Options

	mu      sync.Mutex
	digests map[string]string // file -> digest of the last load
	loads   chan struct{}     // closed and renewed on every load
}

// NewWriter writes into dir, checking files with the loader's options.
func NewWriter(dir string, opts manifest.Options) (*Writer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("write directory %s: %w", dir, err)
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("write directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("write directory %s: not a directory", dir)
	}
	opts.Cache = nil
	return &Writer{dir: abs, opts: opts, digests: map[string]string{}, loads: make(chan struct{})}, nil
}

// Dir is the directory written to.
func (w *Writer) Dir() string { return w.dir }

func (w *Writer) loaded(snap *manifest.Snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.digests)
	for p, fr := range snap.Files {
		w.digests[resolvePath(p)] = fr.Digest
	}
	close(w.loads)
	w.loads = make(chan struct{})
}

// waitLoad waits until a load shows file with digest ("" for gone), or
// the timeout; the agent reloads within milliseconds of a change.
func (w *Writer) waitLoad(ctx context.Context, file, digest string) bool {
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		got, ch := w.digests[file], w.loads
		w.mu.Unlock()
		if got == digest {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		}
	}
}

func resolvePath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// inDir reports whether file is directly in the write directory.
func (w *Writer) inDir(file string) bool { return filepath.Dir(resolvePath(file)) == w.dir }

// fileFor is the file an API-created object is written to; namespace and
// name cannot hold "_", so the name is unambiguous.
func (w *Writer) fileFor(kind, ns, name string) string {
	return filepath.Join(w.dir, strings.ToLower(kind)+"_"+ns+"_"+name+".yaml")
}

// source is where an object is defined now: its file and how many
// documents the file holds.
func (s *Server) source(def *resourceDef, ns, name string) (file string, docs int) {
	snap := s.docs.snapshot()
	key := spec.PodKey{Namespace: ns, Name: name}
	if snap != nil {
		switch def.kind {
		case "Pod":
			if ps := snap.Pods[key]; ps != nil {
				file = ps.File
			}
		case "ConfigMap":
			if cs := snap.ConfigMaps[key]; cs != nil {
				file = cs.File
			}
		case "Secret":
			if ss := snap.Secrets[key]; ss != nil {
				file = ss.File
			}
		}
	}
	if file == "" && def.kind == "Pod" {
		// A broken manifest keeps its pod: the file still defines it.
		if d := s.cfg.Backend.Desired(podKey(ns, name)); d != nil {
			file = d.Source
		}
	}
	if file == "" {
		return "", 0
	}
	docs = 1
	if snap != nil {
		if fr := snap.Files[file]; fr != nil {
			docs = documents(fr)
		}
	}
	return file, docs
}

// documents counts the documents of a manifest file: the valid ones and
// those only its errors name.
func documents(fr *manifest.FileResult) int {
	seen := map[int]bool{}
	for _, p := range fr.Pods {
		seen[p.Doc] = true
	}
	for _, c := range fr.ConfigMaps {
		seen[c.Doc] = true
	}
	for _, sc := range fr.Secrets {
		seen[sc.Doc] = true
	}
	for _, e := range fr.Errs {
		var fe *spec.FieldError
		if errors.As(e, &fe) && fe.Doc > 0 {
			seen[fe.Doc] = true
		}
	}
	return max(1, len(seen))
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef) error {
	wr := s.cfg.Writes
	what := fmt.Sprintf("%s %q", def.groupResource(), ri.name)
	if ri.name == "" {
		what = def.groupResource()
	}
	if !def.writable {
		return errMethodNotAllowed("%s is read-only: it is derived from the node, not from a manifest", def.groupResource())
	}
	if wr == nil {
		return errMethodNotAllowed("the API is read-only: start the agent with --api-write-dir DIR to accept writes (%s was not changed)", what)
	}
	if ri.namespace == "" {
		return errBadRequest("%s must be written in a namespace", def.groupResource())
	}
	dryRun := len(r.URL.Query()["dryRun"]) > 0
	var body []byte
	if ri.verb != "delete" {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil {
			return errBadRequest("read the request body: %v", err)
		}
		if len(b) > maxBody {
			return newError(http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "the request body is larger than %d bytes", maxBody)
		}
		body = b
	}
	if ri.verb != "create" {
		if file, docs := s.source(def, ri.namespace, ri.name); file != "" {
			if !wr.inDir(file) {
				return errMethodNotAllowed("%s is defined in %s, outside the API's write directory %s: it is read-only here; edit that file", what, file, wr.dir)
			}
			if docs > 1 {
				return newError(http.StatusConflict, metav1.StatusReasonConflict, "%s is defined in %s together with other documents: edit that file", what, file)
			}
		}
	}
	switch ri.verb {
	case "delete":
		return s.deleteObject(w, r, ri, def, dryRun)
	case "create":
		obj, err := decodeBody(r, body, def)
		if err != nil {
			return err
		}
		if err := fillName(obj, ri, def, true); err != nil {
			return err
		}
		name := obj["metadata"].(map[string]any)["name"].(string)
		if file, _ := s.source(def, ri.namespace, name); file != "" {
			return newError(http.StatusConflict, metav1.StatusReasonAlreadyExists, "%s %q already exists (defined in %s)", def.groupResource(), name, file).
				with(&metav1.StatusDetails{Name: name, Kind: def.name})
		}
		ri.name = name
		return s.store(w, r, ri, def, obj, http.StatusCreated, dryRun)
	case "update":
		obj, err := decodeBody(r, body, def)
		if err != nil {
			return err
		}
		if err := fillName(obj, ri, def, false); err != nil {
			return err
		}
		if file, _ := s.source(def, ri.namespace, ri.name); file == "" {
			return errNotFound(def.groupResource(), ri.name)
		}
		return s.store(w, r, ri, def, obj, http.StatusOK, dryRun)
	case "patch":
		if file, _ := s.source(def, ri.namespace, ri.name); file == "" {
			return errNotFound(def.groupResource(), ri.name)
		}
		cur, err := s.current(r.Context(), def, ri)
		if err != nil {
			return err
		}
		patched, err := applyPatch(r, cur, body, def)
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := decodeObject(patched, &obj); err != nil {
			return errBadRequest("the patched object is not a JSON object: %v", err)
		}
		if err := fillName(obj, ri, def, false); err != nil {
			return err
		}
		return s.store(w, r, ri, def, obj, http.StatusOK, dryRun)
	}
	return errMethodNotAllowed("%s does not support %s", def.groupResource(), ri.verb)
}

// current is the object as served, as JSON (what patches apply to).
func (s *Server) current(ctx context.Context, def *resourceDef, ri requestInfo) ([]byte, error) {
	o, err := s.fetch(ctx, def, ri)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

func decodeBody(r *http.Request, body []byte, def *resourceDef) (map[string]any, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var err error
	switch ct {
	case "application/yaml":
		body, err = yaml.YAMLToJSON(body)
	case "application/json", "":
	default:
		return nil, newError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml")
	}
	if err != nil {
		return nil, errBadRequest("the request body is not YAML: %v", err)
	}
	var obj map[string]any
	if err := decodeObject(body, &obj); err != nil {
		return nil, errBadRequest("the request body is not a JSON object: %v", err)
	}
	if k, _ := obj["kind"].(string); k != def.kind {
		return nil, errBadRequest("the body holds a %q, not a %s", k, def.kind)
	}
	if v, _ := obj["apiVersion"].(string); v != def.groupVersion() {
		return nil, errBadRequest("the body's apiVersion is %q, not %s", v, def.groupVersion())
	}
	return obj, nil
}

// decodeObject decodes a JSON object keeping numbers as written: an int64
// such as terminationGracePeriodSeconds must not pass through float64.
func decodeObject(b []byte, obj *map[string]any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(obj)
}

// fillName checks the body's name and namespace against the request.
func fillName(obj map[string]any, ri requestInfo, def *resourceDef, create bool) error {
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		obj["metadata"] = md
	}
	name, _ := md["name"].(string)
	if name == "" && create {
		if gen, _ := md["generateName"].(string); gen != "" {
			name = gen + rand.String(5)
			delete(md, "generateName")
		}
	}
	switch {
	case name == "":
		return newError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "%s is invalid: metadata.name: Required value: name or generateName is required", def.kind)
	case !create && name != ri.name:
		return errBadRequest("the name of the object (%s) does not match the name on the URL (%s)", name, ri.name)
	}
	md["name"] = name
	ns, _ := md["namespace"].(string)
	switch {
	case ns == "":
		md["namespace"] = ri.namespace
	case ns != ri.namespace:
		return errBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	return nil
}

func applyPatch(r *http.Request, cur, patch []byte, def *resourceDef) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var out []byte
	var err error
	switch ct {
	case "application/json-patch+json":
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(patch); err == nil {
			out, err = p.Apply(cur)
		}
	case "application/merge-patch+json":
		out, err = jsonpatch.MergePatch(cur, patch)
	case "application/strategic-merge-patch+json":
		// The typed object carries the patch strategies and merge keys
		// (patchStrategy/patchMergeKey struct tags).
		out, err = strategicpatch.StrategicMergePatch(cur, patch, def.newObject())
	case "application/apply-patch+yaml", "application/apply-patch+cbor":
		return nil, newError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			"server-side apply is not supported by pelagos-agent: use kubectl apply without --server-side")
	default:
		return nil, newError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, "unknown patch type %q", ct)
	}
	if err != nil {
		return nil, newError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "the patch cannot be applied: %v", err)
	}
	return out, nil
}

// manifestOf is an object as a manifest: what the server fills in
// (status, uid, resourceVersion, timestamps, the node, the agent's
// annotations) is left out.
func (s *Server) manifestOf(obj map[string]any, def *resourceDef) ([]byte, error) {
	delete(obj, "status")
	if md, ok := obj["metadata"].(map[string]any); ok {
		for _, k := range []string{"uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
			"deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"} {
			delete(md, k)
		}
		if ann, ok := md["annotations"].(map[string]any); ok {
			for k := range ann {
				if IsAgentAnnotation(k) {
					delete(ann, k)
				}
			}
			if len(ann) == 0 {
				delete(md, "annotations")
			}
		}
	}
	if def.kind == "Pod" {
		if sp, ok := obj["spec"].(map[string]any); ok {
			if n, _ := sp["nodeName"].(string); n != "" {
				if n != s.cfg.NodeName {
					return nil, newError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
						"Pod %q is invalid: spec.nodeName: Invalid value: %q: this node is %q", obj["metadata"].(map[string]any)["name"], n, s.cfg.NodeName)
				}
				delete(sp, "nodeName")
			}
		}
	}
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, errInternal("encode: %v", err)
	}
	return yaml.JSONToYAML(j)
}

// store validates obj as the loader would and writes it to its file.
func (s *Server) store(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef, obj map[string]any, code int, dryRun bool) error {
	wr := s.cfg.Writes
	data, err := s.manifestOf(obj, def)
	if err != nil {
		return err
	}
	file, _ := s.source(def, ri.namespace, ri.name)
	if file == "" {
		file = wr.fileFor(def.kind, ri.namespace, ri.name)
	}
	final := resolvePath(file)
	// The loader's own checks, on the bytes as they will be on disk: a
	// temporary dotfile (the loader ignores dotfiles) in the directory.
	tmp, err := os.CreateTemp(wr.dir, "."+filepath.Base(final)+".*")
	if err != nil {
		return errInternal("write %s: %v", final, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Chmod(0o644)
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errInternal("write %s: %v", final, err)
	}
	fr := manifest.LoadFile(tmp.Name(), wr.opts)
	if err := invalid(def, ri.name, fr); err != nil {
		return err
	}
	if !dryRun {
		if err := os.Rename(tmp.Name(), final); err != nil {
			return errInternal("write %s: %v", final, err)
		}
		if d, err := os.Open(wr.dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
		sum := sha256.Sum256(data)
		if !wr.waitLoad(r.Context(), final, hex.EncodeToString(sum[:])) {
			s.cfg.Log.Warn().Str("file", final).Msg("API write: the agent has not loaded the file yet")
		}
		s.cfg.Log.Info().Str("file", final).Str("object", def.kind+" "+ri.namespace+"/"+ri.name).Str("verb", ri.verb).Msg("API write")
	}
	// Answer with the object as it is now served (or, on a dry run or a
	// slow load, as written).
	if !dryRun {
		if o, err := s.current(r.Context(), def, ri); err == nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write(o)
			return nil
		}
	}
	writeJSON(w, code, obj)
	return nil
}

// invalid turns the loader's findings into a 422 naming the fields, as
// the API server reports invalid objects.
func invalid(def *resourceDef, name string, fr *manifest.FileResult) error {
	if len(fr.Errs) == 0 && len(fr.Pods)+len(fr.ConfigMaps)+len(fr.Secrets) == 1 {
		return nil
	}
	var causes []metav1.StatusCause
	var msgs []string
	for _, e := range fr.Errs {
		var fe *spec.FieldError
		if errors.As(e, &fe) {
			if errors.Is(fe, manifest.ErrUntrusted) {
				return errInternal("the write directory fails the trust check: %s", fe.Msg)
			}
			reason := metav1.CauseTypeFieldValueInvalid
			switch {
			case errors.Is(fe, spec.ErrUnknownField):
				reason = metav1.CauseTypeFieldValueNotFound
			case errors.Is(fe, spec.ErrUnsupported):
				reason = metav1.CauseTypeFieldValueNotSupported
			}
			causes = append(causes, metav1.StatusCause{Type: reason, Field: fe.Path, Message: fe.Msg})
			if fe.Path != "" {
				msgs = append(msgs, fe.Path+": "+fe.Msg)
			} else {
				msgs = append(msgs, fe.Msg)
			}
			continue
		}
		msgs = append(msgs, e.Error())
	}
	msg := strings.Join(msgs, ", ")
	if len(msgs) > 1 {
		msg = "[" + msg + "]"
	}
	if len(msgs) == 0 {
		msg = "the body does not define exactly one object"
	}
	return newError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "%s %q is invalid: %s", def.kind, name, msg).
		with(&metav1.StatusDetails{Name: name, Group: def.group, Kind: def.kind, Causes: causes})
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef, dryRun bool) error {
	file, _ := s.source(def, ri.namespace, ri.name)
	if file == "" {
		return errNotFound(def.groupResource(), ri.name)
	}
	final := resolvePath(file)
	if !dryRun {
		if err := os.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
			return errInternal("remove %s: %v", final, err)
		}
		if d, err := os.Open(s.cfg.Writes.dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
		s.cfg.Writes.waitLoad(r.Context(), final, "")
		s.cfg.Log.Info().Str("file", final).Str("object", def.kind+" "+ri.namespace+"/"+ri.name).Msg("API delete")
	}
	// A pod goes away gracefully: answer with it, being deleted, as the
	// API server does; other kinds are gone at once.
	if def.kind == "Pod" {
		if o, err := s.current(r.Context(), def, ri); err == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(o)
			return nil
		}
	}
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusSuccess, Details: &metav1.StatusDetails{Name: ri.name, Kind: def.name}})
	return nil
}
