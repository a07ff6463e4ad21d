package kubeapi

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// The OpenAPI documents are generated from the Go types of k8s.io/api (and
// k8s.io/metrics) by reflection: each struct becomes a definition named as
// Kubernetes names it (io.k8s.api.core.v1.Pod), its fields properties
// described by the types' SwaggerDoc() (the same text `kubectl explain`
// shows for a cluster), with the patch strategies of their struct tags and
// the group-version-kind of each served kind. They are built on first use
// and kept.

// schemaGen builds definitions.
type schemaGen struct {
	v3   bool
	defs map[string]*spec.Schema
	gvks map[reflect.Type][]map[string]any
}

const (
	extGVK           = "x-kubernetes-group-version-kind"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
	extAction        = "x-kubernetes-action"
)

// definitionName is Kubernetes' name for a type: the package path with its
// host reversed (k8s.io/api/core/v1 -> io.k8s.api.core.v1) and the type.
func definitionName(t reflect.Type) string {
	host, rest, _ := strings.Cut(t.PkgPath(), "/")
	labels := strings.Split(host, ".")
	slices.Reverse(labels)
	parts := append(labels, strings.Split(rest, "/")...)
	return strings.Join(parts, ".") + "." + t.Name()
}

func (g *schemaGen) ref(name string) spec.Schema {
	prefix := "#/definitions/"
	if g.v3 {
		prefix = "#/components/schemas/"
	}
	return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(prefix + name)}}
}

var (
	durationType  = reflect.TypeFor[metav1.Duration]()
	rawObjectType = reflect.TypeFor[kruntime.Object]()
)

type openAPIType interface{ OpenAPISchemaType() []string }
type openAPIFormat interface{ OpenAPISchemaFormat() string }
type openAPIOneOf interface{ OpenAPIV3OneOfTypes() []string }
type swaggerDoc interface{ SwaggerDoc() map[string]string }

func implements[T any](t reflect.Type) (T, bool) {
	v, ok := reflect.New(t).Elem().Interface().(T)
	return v, ok
}

// typeSchema is the schema of a value of type t: inline for primitives,
// maps and slices, a reference for structs.
func (g *schemaGen) typeSchema(t reflect.Type) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return *spec.StringProperty()
	}
	if _, ok := implements[openAPIType](t); ok && t.Kind() == reflect.Struct {
		return g.ref(g.define(t))
	}
	switch t.Kind() {
	case reflect.Struct:
		return g.ref(g.define(t))
	case reflect.String:
		return *spec.StringProperty()
	case reflect.Bool:
		return *spec.BoolProperty()
	case reflect.Int, reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return *spec.Int32Property()
	case reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return *spec.Int64Property()
	case reflect.Float32:
		return *spec.Float32Property()
	case reflect.Float64:
		return *spec.Float64Property()
	case reflect.Map:
		v := g.typeSchema(t.Elem())
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"object"},
			AdditionalProperties: &spec.SchemaOrBool{Allows: true, Schema: &v}}}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"string"}, Format: "byte"}}
		}
		v := g.typeSchema(t.Elem())
		return *spec.ArrayProperty(&v)
	}
	// interface{} and the like: anything.
	return spec.Schema{}
}

// define adds t's definition (once) and returns its name.
func (g *schemaGen) define(t reflect.Type) string {
	name := definitionName(t)
	if _, ok := g.defs[name]; ok {
		return name
	}
	s := &spec.Schema{}
	g.defs[name] = s // before the fields: types may refer to themselves
	if d, ok := implements[swaggerDoc](t); ok {
		s.Description = d.SwaggerDoc()[""]
	}
	if p, ok := implements[openAPIType](t); ok {
		s.Type = p.OpenAPISchemaType()
		if f, ok := implements[openAPIFormat](t); ok {
			s.Format = f.OpenAPISchemaFormat()
		}
		if o, ok := implements[openAPIOneOf](t); ok && g.v3 {
			// OpenAPI 3 says what JSON types the value may take
			// (Quantity: a string or a number), as Kubernetes does.
			s.Type = nil
			for _, typ := range o.OpenAPIV3OneOfTypes() {
				s.OneOf = append(s.OneOf, spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{typ}}})
			}
		}
		return name
	}
	s.Type = []string{"object"}
	s.Properties = map[string]spec.Schema{}
	g.fields(t, s)
	slices.Sort(s.Required)
	if gvk := g.gvks[t]; gvk != nil {
		s.AddExtension(extGVK, gvk)
	}
	return name
}

// fields adds the JSON fields of struct t (inlined members flattened).
func (g *schemaGen) fields(t reflect.Type, s *spec.Schema) {
	var docs map[string]string
	if d, ok := implements[swaggerDoc](t); ok {
		docs = d.SwaggerDoc()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && (name == "" || strings.Contains(opts, "inline")) {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(ft, s)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		if f.Type == rawObjectType {
			s.Properties[name] = spec.Schema{SchemaProps: spec.SchemaProps{Description: docs[name], Type: []string{"object"}}}
			continue
		}
		fs := g.typeSchema(f.Type)
		if desc := docs[name]; desc != "" {
			if fs.Ref.String() != "" && g.v3 {
				// OpenAPI 3 ignores siblings of $ref: wrap it, as
				// Kubernetes does.
				fs = spec.Schema{SchemaProps: spec.SchemaProps{AllOf: []spec.Schema{fs}}}
			}
			fs.Description = desc
		}
		if ps := f.Tag.Get("patchStrategy"); ps != "" {
			fs.AddExtension(extPatchStrategy, ps)
		}
		if mk := f.Tag.Get("patchMergeKey"); mk != "" {
			fs.AddExtension(extPatchMergeKey, mk)
		}
		s.Properties[name] = fs
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			s.Required = append(s.Required, name)
		}
	}
}

// openAPICache holds the documents, built once.
type openAPICache struct {
	once   sync.Once
	v2JSON []byte
	v2PB   []byte
	v2Hash string
	v3     map[string][]byte // "api/v1", "apis/events.k8s.io/v1"...
	v3Hash map[string]string
	err    error
}

func hashOf(b []byte) string {
	sum := sha512.Sum512(b)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// kindTypes are the served kinds' Go types and their group-version-kinds.
func (s *Server) kindTypes() (map[reflect.Type][]map[string]any, map[string][]reflect.Type) {
	gvks := map[reflect.Type][]map[string]any{}
	byGV := map[string][]reflect.Type{}
	add := func(gv string, group, version, kind string, o any) {
		t := reflect.TypeOf(o).Elem()
		gvks[t] = append(gvks[t], map[string]any{"group": group, "version": version, "kind": kind})
		byGV[gv] = append(byGV[gv], t)
	}
	for _, d := range s.order {
		add(d.groupVersion(), d.group, d.version, d.kind, d.newObject())
		if d.newList != nil {
			add(d.groupVersion(), d.group, d.version, d.kind+"List", d.newList())
		}
	}
	for _, gv := range s.groupVersions() {
		group, version := splitGV(gv)
		add(gv, group, version, "Status", &metav1.Status{})
		add(gv, group, version, "DeleteOptions", &metav1.DeleteOptions{})
		add(gv, group, version, "WatchEvent", &metav1.WatchEvent{})
	}
	return gvks, byGV
}

func (s *Server) buildOpenAPI() {
	c := &s.openapi
	gvks, byGV := s.kindTypes()
	// Version 2: one document of definitions (kubectl validates against
	// them when the server cannot validate fields itself).
	g2 := &schemaGen{defs: map[string]*spec.Schema{}, gvks: gvks}
	for _, types := range byGV {
		for _, t := range types {
			g2.define(t)
		}
	}
	sw := &spec.Swagger{SwaggerProps: spec.SwaggerProps{Swagger: "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "pelagos-agent", Version: agentVersion(s.cfg.Version)}},
		Paths:       &spec.Paths{Paths: map[string]spec.PathItem{}},
		Definitions: spec.Definitions{}}}
	for n, d := range g2.defs {
		sw.Definitions[n] = *d
	}
	if c.v2JSON, c.err = json.Marshal(sw); c.err != nil {
		return
	}
	c.v2Hash = hashOf(c.v2JSON)
	doc, err := openapiv2.ParseDocument(c.v2JSON)
	if err != nil {
		c.err = fmt.Errorf("openapi v2 to protobuf: %w", err)
		return
	}
	if c.v2PB, c.err = proto.Marshal(doc); c.err != nil {
		return
	}
	// Version 3: one document per group version, with its paths (kubectl
	// reads the PATCH operations to learn that the server validates
	// fields itself) and the definitions they reach.
	c.v3, c.v3Hash = map[string][]byte{}, map[string]string{}
	for gv, types := range byGV {
		g3 := &schemaGen{v3: true, defs: map[string]*spec.Schema{}, gvks: gvks}
		for _, t := range types {
			g3.define(t)
		}
		doc := &spec3.OpenAPI{Version: "3.0.0",
			Info:       &spec.Info{InfoProps: spec.InfoProps{Title: "pelagos-agent", Version: agentVersion(s.cfg.Version)}},
			Paths:      &spec3.Paths{Paths: map[string]*spec3.Path{}},
			Components: &spec3.Components{Schemas: g3.defs}}
		for _, d := range s.order {
			if d.groupVersion() == gv {
				s.addPaths(doc.Paths, g3, d)
			}
		}
		b, err := json.Marshal(doc)
		if err != nil {
			c.err = err
			return
		}
		key := "api/v1"
		if group, version := splitGV(gv); group != "" {
			key = "apis/" + group + "/" + version
		}
		c.v3[key], c.v3Hash[key] = b, hashOf(b)
	}
}

// addPaths describes a resource's operations.
func (s *Server) addPaths(paths *spec3.Paths, g *schemaGen, d *resourceDef) {
	base := "/api/" + d.version
	if d.group != "" {
		base = "/apis/" + d.group + "/" + d.version
	}
	kindRef := g.ref(definitionName(reflect.TypeOf(d.newObject()).Elem()))
	statusRef := g.ref(definitionName(reflect.TypeFor[metav1.Status]()))
	param := func(name, in, desc string, required bool) *spec3.Parameter {
		return &spec3.Parameter{ParameterProps: spec3.ParameterProps{Name: name, In: in, Description: desc, Required: required,
			Schema: spec.StringProperty()}}
	}
	pathParams := func(item bool) []*spec3.Parameter {
		var out []*spec3.Parameter
		if d.namespaced {
			out = append(out, param("namespace", "path", "object name and auth scope, such as for teams and projects", true))
		}
		if item {
			out = append(out, param("name", "path", "name of the "+d.kind, true))
		}
		return out
	}
	listParams := []*spec3.Parameter{
		param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels.", false),
		param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields.", false),
		param("resourceVersion", "query", "Where a list or watch starts.", false),
		param("watch", "query", "Watch for changes to the described resources.", false),
		param("timeoutSeconds", "query", "Timeout for the list/watch call.", false),
	}
	writeParams := []*spec3.Parameter{
		param("dryRun", "query", "When present, indicates that modifications should not be persisted.", false),
		param("fieldManager", "query", "A name associated with the actor or entity that is making these changes.", false),
		param("fieldValidation", "query", "How the server treats unknown and duplicate fields; this agent is always Strict.", false),
	}
	op := func(action, id string, params []*spec3.Parameter, resp spec.Schema, body []string) *spec3.Operation {
		o := &spec3.Operation{OperationProps: spec3.OperationProps{OperationId: id, Parameters: params,
			Responses: &spec3.Responses{ResponsesProps: spec3.ResponsesProps{StatusCodeResponses: map[int]*spec3.Response{
				http.StatusOK: {ResponseProps: spec3.ResponseProps{Description: "OK",
					Content: map[string]*spec3.MediaType{"application/json": {MediaTypeProps: spec3.MediaTypeProps{Schema: &resp}}}}},
			}}}}}
		if len(body) > 0 {
			content := map[string]*spec3.MediaType{}
			for _, ct := range body {
				content[ct] = &spec3.MediaType{MediaTypeProps: spec3.MediaTypeProps{Schema: &kindRef}}
			}
			o.RequestBody = &spec3.RequestBody{RequestBodyProps: spec3.RequestBodyProps{Content: content, Required: true}}
		}
		o.AddExtension(extAction, action)
		o.AddExtension(extGVK, map[string]any{"group": d.group, "version": d.version, "kind": d.kind})
		return o
	}
	name := strings.ToUpper(d.kind[:1]) + d.kind[1:]
	collection := base + "/" + d.name
	if d.create != nil {
		paths.Paths[collection] = &spec3.Path{PathProps: spec3.PathProps{
			Post: op("post", "create"+name, nil, kindRef, []string{"application/json"})}}
		return
	}
	listRef := g.ref(definitionName(reflect.TypeOf(d.newList()).Elem()))
	item := collection + "/{name}"
	if d.namespaced {
		paths.Paths[collection] = &spec3.Path{PathProps: spec3.PathProps{
			Get: op("list", "list"+name+"ForAllNamespaces", listParams, listRef, nil)}}
		collection = base + "/namespaces/{namespace}/" + d.name
		item = collection + "/{name}"
	}
	coll := &spec3.Path{PathProps: spec3.PathProps{Get: op("list", "listNamespaced"+name, append(pathParams(false), listParams...), listRef, nil)}}
	it := &spec3.Path{PathProps: spec3.PathProps{Get: op("get", "read"+name, pathParams(true), kindRef, nil)}}
	if d.writable {
		coll.Post = op("post", "create"+name, append(pathParams(false), writeParams...), kindRef, []string{"application/json", "application/yaml"})
		it.Put = op("put", "replace"+name, append(pathParams(true), writeParams...), kindRef, []string{"application/json", "application/yaml"})
		it.Patch = op("patch", "patch"+name, append(pathParams(true), writeParams...), kindRef, []string{
			"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"})
		it.Delete = op("delete", "delete"+name, pathParams(true), statusRef, nil)
	}
	paths.Paths[collection] = coll
	paths.Paths[item] = it
}

const openAPIV2Proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

func (s *Server) openAPI() (*openAPICache, error) {
	s.openapi.once.Do(s.buildOpenAPI)
	return &s.openapi, s.openapi.err
}

func (s *Server) serveOpenAPIV2(w http.ResponseWriter, r *http.Request) {
	c, err := s.openAPI()
	if err != nil {
		writeStatus(w, errInternal("openapi: %v", err))
		return
	}
	body, ct := c.v2JSON, "application/json"
	for _, a := range parseAccept(r.Header.Get("Accept")) {
		if a.Type+"/"+a.SubType == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf" ||
			a.Type+"/"+a.SubType == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" {
			body, ct = c.v2PB, openAPIV2Proto
			break
		}
		if a.Type == "application" && a.SubType == "json" {
			break
		}
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("ETag", `"`+c.v2Hash+`"`)
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(body)
}

func (s *Server) serveOpenAPIV3Index(w http.ResponseWriter, _ *http.Request) {
	c, err := s.openAPI()
	if err != nil {
		writeStatus(w, errInternal("openapi: %v", err))
		return
	}
	type entry struct {
		URL string `json:"serverRelativeURL"`
	}
	idx := struct {
		Paths map[string]entry `json:"paths"`
	}{Paths: map[string]entry{}}
	for k, h := range c.v3Hash {
		idx.Paths[k] = entry{URL: "/openapi/v3/" + k + "?hash=" + h}
	}
	writeJSON(w, http.StatusOK, idx)
}

func (s *Server) serveOpenAPIV3(w http.ResponseWriter, r *http.Request) {
	c, err := s.openAPI()
	if err != nil {
		writeStatus(w, errInternal("openapi: %v", err))
		return
	}
	key := r.PathValue("path")
	b, ok := c.v3[key]
	if !ok {
		writeStatus(w, newError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", `"`+c.v3Hash[key]+`"`)
	if r.URL.Query().Get("hash") == c.v3Hash[key] {
		w.Header().Set("Cache-Control", "public, immutable")
	}
	_, _ = w.Write(b)
}
