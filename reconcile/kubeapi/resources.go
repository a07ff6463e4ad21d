package kubeapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// resourceDef is one served resource: how discovery and OpenAPI describe
// it, where its objects come from and how they print.
type resourceDef struct {
	group, version, name, singular, kind string
	namespaced                           bool
	shortNames, categories               []string
	watchable                            bool

	coll *collection
	// refresh brings the whole collection up to date; refreshOne, when
	// set, only the named object (a get).
	refresh    func(ctx context.Context) error
	refreshOne func(ctx context.Context, namespace, name string) error
	newObject  func() object
	newList    func() kruntime.Object
	printer    printer
	// fields are the selectable fields beyond metadata.name and
	// metadata.namespace.
	fields func(o object) fields.Set
	// convert turns a stored object into this resource's version (the
	// events.k8s.io view of core events); stored makes an empty one of
	// the stored type.
	convert func(o object) object
	stored  func() object
	// sensitive objects (Secrets) are shown to admins only.
	sensitive bool
	// writable kinds accept writes when the facade has a write directory.
	writable bool
	// subresources, for discovery: name -> kind and verbs.
	subresources []subresourceDef
	// create, when set, makes this a create-only resource that is not
	// stored (access reviews).
	create func(w http.ResponseWriter, r *http.Request, id Identity) error
}

type subresourceDef struct {
	name, kind string
	verbs      []string
}

func (d *resourceDef) groupVersion() string {
	if d.group == "" {
		return d.version
	}
	return d.group + "/" + d.version
}

func (d *resourceDef) groupResource() string {
	if d.group == "" {
		return d.name
	}
	return d.name + "." + d.group
}

func (d *resourceDef) verbs(s *Server) []string {
	if d.create != nil {
		return []string{"create"}
	}
	v := []string{"get", "list"}
	if d.watchable {
		v = append(v, "watch")
	}
	if d.writable && s.cfg.Writes != nil {
		v = append(v, "create", "delete", "patch", "update")
	}
	slices.Sort(v)
	return v
}

func (s *Server) register(d *resourceDef) {
	if s.resources == nil {
		s.resources = map[string]*resourceDef{}
	}
	s.resources[d.group+"/"+d.version+"/"+d.name] = d
	s.order = append(s.order, d)
}

func (s *Server) registerResources() {
	refreshAll := func(f func()) func(context.Context) error {
		return func(context.Context) error { f(); return nil }
	}
	s.register(&resourceDef{
		version: "v1", name: "pods", singular: "pod", kind: "Pod", namespaced: true, watchable: true,
		shortNames: []string{"po"}, categories: []string{"all"},
		coll: s.pods.coll, refresh: refreshAll(s.pods.refreshAll),
		refreshOne: func(_ context.Context, ns, name string) error {
			s.pods.refresh(podKey(ns, name))
			return nil
		},
		newObject: func() object { return &corev1.Pod{} },
		newList:   func() kruntime.Object { return &corev1.PodList{} },
		printer:   podPrinter, writable: true,
		fields: func(o object) fields.Set {
			p := o.(*corev1.Pod)
			return fields.Set{
				"spec.nodeName": p.Spec.NodeName, "spec.restartPolicy": string(p.Spec.RestartPolicy),
				"spec.schedulerName": p.Spec.SchedulerName, "spec.serviceAccountName": p.Spec.ServiceAccountName,
				"spec.hostNetwork": strconv.FormatBool(p.Spec.HostNetwork), "status.phase": string(p.Status.Phase),
				"status.podIP": p.Status.PodIP, "status.nominatedNodeName": p.Status.NominatedNodeName,
			}
		},
		subresources: []subresourceDef{
			{"attach", "PodAttachOptions", []string{"create", "get"}},
			{"exec", "PodExecOptions", []string{"create", "get"}},
			{"log", "Pod", []string{"get"}},
			{"portforward", "PodPortForwardOptions", []string{"create", "get"}},
			{"status", "Pod", []string{"get"}},
		},
	})
	s.register(&resourceDef{
		version: "v1", name: "namespaces", singular: "namespace", kind: "Namespace", watchable: true,
		shortNames: []string{"ns"},
		coll:       s.docs.namespaces, refresh: refreshAll(s.docs.refreshNamespaces),
		newObject: func() object { return &corev1.Namespace{} },
		newList:   func() kruntime.Object { return &corev1.NamespaceList{} },
		printer:   namespacePrinter,
		fields: func(o object) fields.Set {
			return fields.Set{"status.phase": string(o.(*corev1.Namespace).Status.Phase)}
		},
	})
	s.register(&resourceDef{
		version: "v1", name: "nodes", singular: "node", kind: "Node", watchable: true,
		shortNames: []string{"no"},
		coll:       s.node.coll, refresh: s.node.refresh,
		newObject: func() object { return &corev1.Node{} },
		newList:   func() kruntime.Object { return &corev1.NodeList{} },
		printer:   nodePrinter,
		fields: func(o object) fields.Set {
			return fields.Set{"spec.unschedulable": strconv.FormatBool(o.(*corev1.Node).Spec.Unschedulable)}
		},
		subresources: []subresourceDef{{"status", "Node", []string{"get"}}},
	})
	s.register(&resourceDef{
		version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true, watchable: true,
		shortNames: []string{"ev"},
		coll:       s.events.coll, refresh: refreshAll(s.events.refreshAll),
		newObject: func() object { return &corev1.Event{} },
		newList:   func() kruntime.Object { return &corev1.EventList{} },
		printer:   eventPrinter, fields: eventFields,
	})
	s.register(&resourceDef{
		version: "v1", name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, watchable: true,
		shortNames: []string{"cm"},
		coll:       s.docs.configMaps, refresh: refreshAll(s.docs.refresh),
		newObject: func() object { return &corev1.ConfigMap{} },
		newList:   func() kruntime.Object { return &corev1.ConfigMapList{} },
		printer:   configMapPrinter, writable: true,
	})
	s.register(&resourceDef{
		version: "v1", name: "secrets", singular: "secret", kind: "Secret", namespaced: true, watchable: true,
		coll: s.docs.secrets, refresh: refreshAll(s.docs.refresh),
		newObject: func() object { return &corev1.Secret{} },
		newList:   func() kruntime.Object { return &corev1.SecretList{} },
		printer:   secretPrinter, writable: true, sensitive: true,
		fields: func(o object) fields.Set { return fields.Set{"type": string(o.(*corev1.Secret).Type)} },
	})
	s.register(&resourceDef{
		group: "events.k8s.io", version: "v1", name: "events", singular: "event", kind: "Event", namespaced: true,
		watchable: true, shortNames: []string{"ev"},
		coll: s.events.coll, refresh: refreshAll(s.events.refreshAll),
		newObject: func() object { return &eventsv1.Event{} },
		newList:   func() kruntime.Object { return &eventsv1.EventList{} },
		printer:   eventPrinter, fields: eventFields,
		convert: func(o object) object { return toEventsV1(o.(*corev1.Event)) },
		stored:  func() object { return &corev1.Event{} },
	})
	s.register(&resourceDef{
		group: "metrics.k8s.io", version: "v1beta1", name: "nodes", singular: "", kind: "NodeMetrics",
		coll: s.nodeMetrics, refresh: func(ctx context.Context) error { return s.refreshNodeMetrics(ctx) },
		newObject: func() object { return &metricsv1beta1.NodeMetrics{} },
		newList:   func() kruntime.Object { return &metricsv1beta1.NodeMetricsList{} },
		printer:   defaultPrinter,
	})
	s.register(&resourceDef{
		group: "metrics.k8s.io", version: "v1beta1", name: "pods", singular: "", kind: "PodMetrics", namespaced: true,
		coll: s.podMetrics, refresh: func(ctx context.Context) error { return s.refreshPodMetrics(ctx) },
		newObject: func() object { return &metricsv1beta1.PodMetrics{} },
		newList:   func() kruntime.Object { return &metricsv1beta1.PodMetricsList{} },
		printer:   defaultPrinter,
	})
	s.register(&resourceDef{
		group: "coordination.k8s.io", version: "v1", name: "leases", singular: "lease", kind: "Lease", namespaced: true,
		watchable: true, coll: s.node.leases, refresh: s.node.refreshLease,
		newObject: func() object { return &coordinationv1.Lease{} },
		newList:   func() kruntime.Object { return &coordinationv1.LeaseList{} },
		printer:   defaultPrinter,
	})
	s.registerAccessReviews()
}

// eventFields are the event fields the API server lets clients select on
// (kubectl describe asks for involvedObject.name, namespace, kind and uid).
func eventFields(o object) fields.Set {
	ev := o.(*corev1.Event)
	io := ev.InvolvedObject
	return fields.Set{
		"involvedObject.kind": io.Kind, "involvedObject.namespace": io.Namespace, "involvedObject.name": io.Name,
		"involvedObject.uid": string(io.UID), "involvedObject.apiVersion": io.APIVersion,
		"involvedObject.resourceVersion": io.ResourceVersion, "involvedObject.fieldPath": io.FieldPath,
		"reason": ev.Reason, "reportingComponent": ev.ReportingController, "source": ev.Source.Component, "type": ev.Type,
		// events.k8s.io/v1 names for the same fields.
		"regarding.kind": io.Kind, "regarding.namespace": io.Namespace, "regarding.name": io.Name,
		"regarding.uid": string(io.UID), "regarding.apiVersion": io.APIVersion, "regarding.fieldPath": io.FieldPath,
		"reportingController": ev.ReportingController, "deprecatedSource": ev.Source.Component,
	}
}

// serveResource serves /api/v1/... and /apis/GROUP/VERSION/... requests.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request) {
	ri, ok := parseResourcePath(r)
	def := s.resources[ri.group+"/"+ri.version+"/"+ri.resource]
	if !ok || def == nil || (!def.namespaced && ri.namespace != "") {
		writeStatus(w, newError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	id, _ := identityFrom(r.Context())
	if def.create != nil {
		// Every client may ask what it may do.
		var err error = errMethodNotAllowed("%s only supports create", def.groupResource())
		if ri.verb == "create" && ri.name == "" && ri.subresource == "" {
			err = def.create(w, r, id)
		}
		if err != nil {
			writeStatus(w, err)
		}
		return
	}
	if ri.subresource != "" {
		s.serveSubresource(w, r, ri, def, id)
		return
	}
	if !authorize(id, ri.verb, def, "") {
		writeStatus(w, errForbidden(id.User, ri.verb, def.groupResource(), ri.namespace))
		return
	}
	var err error
	switch ri.verb {
	case "get":
		err = s.get(w, r, ri, def)
	case "list":
		err = s.list(w, r, ri, def)
	case "watch":
		if !def.watchable {
			err = errMethodNotAllowed("%s does not support watch", def.groupResource())
			break
		}
		err = s.watch(w, r, ri, def)
	case "create", "update", "patch", "delete":
		err = s.write(w, r, ri, def)
	default:
		err = errMethodNotAllowed("%s does not support %s", def.groupResource(), ri.verb)
	}
	if err != nil {
		writeStatus(w, err)
	}
}

func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef, id Identity) {
	var sub *subresourceDef
	for i := range def.subresources {
		if def.subresources[i].name == ri.subresource {
			sub = &def.subresources[i]
		}
	}
	if sub == nil {
		writeStatus(w, newError(http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource"))
		return
	}
	verb := ri.verb
	if r.Method == http.MethodPost {
		verb = "create"
	}
	if !slices.Contains(sub.verbs, verb) {
		writeStatus(w, errMethodNotAllowed("%s/%s does not support %s", def.groupResource(), sub.name, verb))
		return
	}
	if !authorize(id, verb, def, sub.name) {
		writeStatus(w, errForbidden(id.User, verb, def.groupResource()+"/"+sub.name, ri.namespace))
		return
	}
	var err error
	switch {
	case def.name == "pods" && sub.name == "log":
		err = s.serveLog(w, r, ri)
	case sub.name == "status":
		err = s.get(w, r, ri, def)
	default:
		err = s.serveStream(w, r, ri, sub.name)
	}
	if err != nil {
		writeStatus(w, err)
	}
}

// selector is what a list or watch selects: namespace, labels, fields.
type selector struct {
	namespace string
	labels    labels.Selector
	fields    fields.Selector
	def       *resourceDef
}

func parseSelector(r *http.Request, ri requestInfo, def *resourceDef) (*selector, error) {
	sel := &selector{namespace: ri.namespace, labels: labels.Everything(), fields: fields.Everything(), def: def}
	q := r.URL.Query()
	if v := q.Get("labelSelector"); v != "" {
		l, err := labels.Parse(v)
		if err != nil {
			return nil, errBadRequest("unable to parse requirement: %v", err)
		}
		sel.labels = l
	}
	if v := q.Get("fieldSelector"); v != "" {
		f, err := fields.ParseSelector(v)
		if err != nil {
			return nil, errBadRequest("%v", err)
		}
		var probe fields.Set
		if def.fields != nil {
			zero := def.newObject
			if def.stored != nil {
				zero = def.stored
			}
			probe = def.fields(zero())
		}
		for _, req := range f.Requirements() {
			if req.Field == "metadata.name" || req.Field == "metadata.namespace" {
				continue
			}
			if _, ok := probe[req.Field]; !ok {
				return nil, errBadRequest("field label not supported: %s", req.Field)
			}
		}
		sel.fields = f
	}
	return sel, nil
}

func (sel *selector) match(o object) bool {
	if sel.namespace != "" && o.GetNamespace() != sel.namespace {
		return false
	}
	if !sel.labels.Matches(labels.Set(o.GetLabels())) {
		return false
	}
	if sel.fields.Empty() {
		return true
	}
	set := fields.Set{"metadata.name": o.GetName()}
	if sel.def.namespaced {
		set["metadata.namespace"] = o.GetNamespace()
	}
	if sel.def.fields != nil {
		for k, v := range sel.def.fields(o) {
			set[k] = v
		}
	}
	return sel.fields.Matches(set)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef) error {
	f, err := negotiated(r)
	if err != nil {
		return err
	}
	o, err := s.fetch(r.Context(), def, ri)
	if err != nil {
		return err
	}
	switch f.kind {
	case formatTable:
		writeJSON(w, http.StatusOK, s.table(r, f, def, []object{o}, o.GetResourceVersion()))
	case formatPartial:
		writeJSON(w, http.StatusOK, partial(o, f.version))
	default:
		writeJSON(w, http.StatusOK, s.output(def, o))
	}
	return nil
}

// fetch brings one object up to date and returns it, or NotFound.
func (s *Server) fetch(ctx context.Context, def *resourceDef, ri requestInfo) (object, error) {
	refresh := def.refresh
	if def.refreshOne != nil {
		refresh = func(ctx context.Context) error { return def.refreshOne(ctx, ri.namespace, ri.name) }
	}
	if err := refresh(ctx); err != nil {
		return nil, err
	}
	o, found := def.coll.get(ri.namespace, ri.name)
	if !found {
		return nil, errNotFound(def.groupResource(), ri.name)
	}
	return o, nil
}

// output is the object as this resource serves it.
func (s *Server) output(def *resourceDef, o object) object {
	if def.convert != nil {
		return def.convert(o)
	}
	return o
}

// list is a typed list (PodList...) as JSON; items are any objects.
type list struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []object `json:"items"`
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef) error {
	f, err := negotiated(r)
	if err != nil {
		return err
	}
	sel, err := parseSelector(r, ri, def)
	if err != nil {
		return err
	}
	if err := def.refresh(r.Context()); err != nil {
		return err
	}
	objs, rv := def.coll.list(sel.match)
	if q := r.URL.Query(); q.Get("resourceVersionMatch") == string(metav1.ResourceVersionMatchExact) &&
		q.Get("resourceVersion") != formatRV(rv) {
		return newError(http.StatusGone, metav1.StatusReasonExpired, "too old resource version: %s (%d)", q.Get("resourceVersion"), rv)
	}
	switch f.kind {
	case formatTable:
		writeJSON(w, http.StatusOK, s.table(r, f, def, objs, formatRV(rv)))
	case formatPartial:
		out := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/" + f.version},
			ListMeta: metav1.ListMeta{ResourceVersion: formatRV(rv)}, Items: []metav1.PartialObjectMetadata{}}
		for _, o := range objs {
			out.Items = append(out.Items, *partial(o, f.version))
		}
		writeJSON(w, http.StatusOK, out)
	default:
		out := list{TypeMeta: metav1.TypeMeta{Kind: def.kind + "List", APIVersion: def.groupVersion()},
			ListMeta: metav1.ListMeta{ResourceVersion: formatRV(rv)}, Items: make([]object, 0, len(objs))}
		for _, o := range objs {
			out.Items = append(out.Items, s.output(def, o))
		}
		writeJSON(w, http.StatusOK, out)
	}
	return nil
}

func partial(o object, version string) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/" + version}}
	m.ObjectMeta = metav1.ObjectMeta{
		Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion(),
		CreationTimestamp: o.GetCreationTimestamp(), DeletionTimestamp: o.GetDeletionTimestamp(),
		DeletionGracePeriodSeconds: o.GetDeletionGracePeriodSeconds(), Labels: o.GetLabels(), Annotations: o.GetAnnotations(),
		Generation: o.GetGeneration(),
	}
	return m
}

// table prints objects as kubectl shows them; each row carries the
// object's metadata (or the object, or nothing: includeObject).
func (s *Server) table(r *http.Request, f format, def *resourceDef, objs []object, rv string) *metav1.Table {
	now := s.now()
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/" + f.version},
		ListMeta: metav1.ListMeta{ResourceVersion: rv}, ColumnDefinitions: def.printer.columns, Rows: []metav1.TableRow{}}
	include := r.URL.Query().Get("includeObject")
	for _, o := range objs {
		row := metav1.TableRow{Cells: def.printer.cells(o, now)}
		if def.printer.conditions != nil {
			row.Conditions = def.printer.conditions(o)
		}
		switch strings.ToLower(include) {
		case "none":
		case "object":
			row.Object.Object = s.output(def, o)
		default:
			row.Object.Object = partial(o, f.version)
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}
