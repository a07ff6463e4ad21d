package kubeapi

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/google/uuid"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// reportingController names the agent in the events it serves.
const reportingController = "pelagos.io/agent"

// events serves the reconciler's events as core/v1 Events (and, through a
// conversion, as events.k8s.io/v1 ones). They arrive two ways, a full
// listing (refreshAll, before a list) and one at a time from the
// subscription (record); each event's sequence number keeps a late copy
// from undoing a newer one.
type events struct {
	s    *Server
	coll *collection

	mu      sync.Mutex
	seqs    map[string]uint64 // event name -> sequence number of what is stored
	records int               // events taken in since the last full listing
}

// relistEvery bounds what the collection holds beyond the reconciler's
// ring: after that many events taken in one at a time, a full listing
// drops the events the ring has let go of.
const relistEvery = 256

func newEvents(s *Server) *events {
	return &events{s: s, coll: newCollection(s.vs), seqs: map[string]uint64{}}
}

// refreshAll makes the collection hold the kept events: events that fell
// out of the reconciler's ring are deleted.
func (e *events) refreshAll() {
	kept := e.s.cfg.Backend.Events().List()
	e.mu.Lock()
	defer e.mu.Unlock()
	objs := make([]object, 0, len(kept))
	seqs := make(map[string]uint64, len(kept))
	for _, ev := range kept {
		o := e.convert(ev)
		if ev.Seq < e.seqs[o.Name] {
			if cur, ok := e.coll.get(o.Namespace, o.Name); ok {
				o = cur.DeepCopyObject().(*corev1.Event)
				ev.Seq = e.seqs[o.Name]
			}
		}
		seqs[o.Name] = ev.Seq
		objs = append(objs, o)
	}
	e.seqs, e.records = seqs, 0
	e.coll.replace(objs)
}

// record takes in one new or repeated event.
func (e *events) record(ev reconcile.Event) {
	o := e.convert(ev)
	e.mu.Lock()
	if ev.Seq < e.seqs[o.Name] {
		e.mu.Unlock()
		return
	}
	e.seqs[o.Name] = ev.Seq
	e.coll.set(o)
	e.records++
	relist := e.records >= relistEvery
	e.mu.Unlock()
	if relist {
		e.refreshAll()
	}
}

// convert builds a core/v1 Event. The reconciler's Event uses core/v1's
// field names, so JSON carries whatever both know (series included, once
// the reconciler keeps it); the rest is derived. The name is stable for the
// life of the event (its object, reason, message and first time), so a
// repeat is a modification of the same Event, as with kubelet's.
func (e *events) convert(ev reconcile.Event) *corev1.Event {
	out := &corev1.Event{}
	if b, err := json.Marshal(ev); err == nil {
		_ = json.Unmarshal(b, out)
	}
	if ev.Series != nil {
		// MicroTime reads only microsecond precision, which a time.Time's
		// JSON does not have: the series' time is set from the value.
		out.Series = &corev1.EventSeries{Count: int32(ev.Series.Count), LastObservedTime: metav1.NewMicroTime(ev.Series.LastObservedTime)}
	}
	out.TypeMeta = metav1.TypeMeta{Kind: "Event", APIVersion: "v1"}
	obj := ev.InvolvedObject
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x00%d", obj.Kind, obj.Namespace, obj.Name, obj.FieldPath,
		ev.Type, ev.Reason, ev.Message, ev.FirstTimestamp.UnixNano())
	name := obj.Name
	if name == "" {
		name = "pelagos-agent"
	}
	ns := obj.Namespace
	if ns == "" {
		// As kubelet does for node events.
		ns = metav1.NamespaceDefault
	}
	// kubelet names an event after its object and first time in hex, so
	// names sort by time; the hash tells apart events of the same moment.
	out.Name = fmt.Sprintf("%s.%x%04x", name, ev.FirstTimestamp.UnixNano(), h.Sum64()&0xffff)
	out.Namespace = ns
	out.UID = types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+e.s.cfg.NodeName+"/events/"+ns+"/"+out.Name)).String())
	out.CreationTimestamp = metav1.NewTime(ev.FirstTimestamp)
	out.InvolvedObject.APIVersion = "v1"
	switch obj.Kind {
	case "Pod":
		out.InvolvedObject.UID = e.s.pods.uidFor(runtime.PodKey{Namespace: obj.Namespace, Name: obj.Name})
	case "Node":
		out.InvolvedObject.UID = e.s.node.uid()
	}
	if out.Count == 0 {
		out.Count = 1
	}
	out.Source = corev1.EventSource{Component: "pelagos-agent", Host: e.s.cfg.NodeName}
	out.ReportingController = reportingController
	out.ReportingInstance = e.s.cfg.NodeName
	if out.Action == "" {
		out.Action = ev.Reason
	}
	return out
}

// toEventsV1 is the events.k8s.io/v1 view of a core Event, as the API
// server converts between the two: a repeated event has a series.
func toEventsV1(ev *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		TypeMeta:                 metav1.TypeMeta{Kind: "Event", APIVersion: "events.k8s.io/v1"},
		ObjectMeta:               ev.ObjectMeta,
		EventTime:                ev.EventTime,
		ReportingController:      ev.ReportingController,
		ReportingInstance:        ev.ReportingInstance,
		Action:                   ev.Action,
		Reason:                   ev.Reason,
		Regarding:                ev.InvolvedObject,
		Related:                  ev.Related,
		Note:                     ev.Message,
		Type:                     ev.Type,
		DeprecatedSource:         ev.Source,
		DeprecatedFirstTimestamp: ev.FirstTimestamp,
		DeprecatedLastTimestamp:  ev.LastTimestamp,
		DeprecatedCount:          ev.Count,
	}
	if out.EventTime.IsZero() {
		out.EventTime = metav1.NewMicroTime(ev.FirstTimestamp.Time)
	}
	switch {
	case ev.Series != nil:
		out.Series = &eventsv1.EventSeries{Count: ev.Series.Count, LastObservedTime: ev.Series.LastObservedTime}
	case ev.Count > 1:
		out.Series = &eventsv1.EventSeries{Count: ev.Count, LastObservedTime: metav1.NewMicroTime(ev.LastTimestamp.Time)}
	}
	return out
}

func gvk(def *resourceDef) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: def.group, Version: def.version, Kind: def.kind}
}

func podKey(ns, name string) runtime.PodKey { return runtime.PodKey{Namespace: ns, Name: name} }
