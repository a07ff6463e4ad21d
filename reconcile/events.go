package reconcile

import (
	"container/list"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Event types, as Kubernetes names them.
const (
	EventNormal  = "Normal"
	EventWarning = "Warning"
)

// ObjectRef names what an event is about.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	FieldPath string `json:"fieldPath,omitempty"` // spec.containers{web}
}

// Event is a Kubernetes-shaped event (core/v1 Event's useful subset).
// Repeats of one event are aggregated as kubelet's event recorder does:
// Count grows and LastTimestamp moves, FirstTimestamp stays.
type Event struct {
	Seq            uint64    `json:"seq"`
	Type           string    `json:"type"`
	Reason         string    `json:"reason"`
	Message        string    `json:"message"`
	InvolvedObject ObjectRef `json:"involvedObject"`
	Count          int       `json:"count"`
	FirstTimestamp time.Time `json:"firstTimestamp"`
	LastTimestamp  time.Time `json:"lastTimestamp"`
	// Series is the events.k8s.io/v1 view of a repeated event; nil until
	// the event is seen a second time, as in Kubernetes.
	Series *EventSeries `json:"series,omitempty"`
}

// EventSeries is events.k8s.io/v1's EventSeries.
type EventSeries struct {
	Count            int       `json:"count"`
	LastObservedTime time.Time `json:"lastObservedTime"`
}

// eventKey is what makes two events the same one: kubelet aggregates by
// object, type, reason and message.
type eventKey struct {
	obj                  ObjectRef
	typ, reason, message string
}

func keyOf(ev *Event) eventKey {
	return eventKey{obj: ev.InvolvedObject, typ: ev.Type, reason: ev.Reason, message: ev.Message}
}

// Events keeps the most recently seen events, a bounded number of them,
// with live subscribers. A repeat of a kept event, however many others came
// in between, bumps that event's count and makes it the newest instead of
// taking a new place, so a crash loop cannot flush the others out. When
// full, the event seen least recently goes; the aggregation index holds
// only kept events, so memory stays bounded by the size.
type Events struct {
	mu    sync.Mutex
	size  int
	order *list.List // of *Event, least recently seen first
	index map[eventKey]*list.Element
	seq   uint64
	subs  map[chan Event]struct{}
	log   zerolog.Logger
	now   func() time.Time
}

// NewEvents keeps the last size events (default 1000) and logs each one.
func NewEvents(size int, log zerolog.Logger) *Events {
	if size <= 0 {
		size = 1000
	}
	return &Events{size: size, order: list.New(), index: make(map[eventKey]*list.Element, size),
		subs: map[chan Event]struct{}{}, log: log, now: time.Now}
}

// Record adds an event (or counts a repeat), logs it and hands it to
// subscribers. A repeat gets a new Seq, so watchers see the new count.
func (e *Events) Record(typ, reason string, obj ObjectRef, message string) {
	e.mu.Lock()
	now := e.now()
	k := eventKey{obj: obj, typ: typ, reason: reason, message: message}
	e.seq++
	var ev Event
	if el, ok := e.index[k]; ok {
		old := el.Value.(*Event)
		old.Count++
		old.LastTimestamp = now
		old.Seq = e.seq
		old.Series = &EventSeries{Count: old.Count, LastObservedTime: now}
		e.order.MoveToBack(el)
		ev = *old
	} else {
		if e.order.Len() >= e.size {
			oldest := e.order.Front()
			delete(e.index, keyOf(oldest.Value.(*Event)))
			e.order.Remove(oldest)
		}
		ev = Event{Seq: e.seq, Type: typ, Reason: reason, Message: message, InvolvedObject: obj, Count: 1, FirstTimestamp: now, LastTimestamp: now}
		stored := ev
		e.index[k] = e.order.PushBack(&stored)
	}
	for ch := range e.subs {
		select {
		case ch <- ev:
		default: // a slow watcher loses events rather than stalling the agent
		}
	}
	e.mu.Unlock()
	lev := e.log.Info()
	if typ == EventWarning {
		lev = e.log.Warn()
	}
	lev = lev.Str("event", reason)
	if obj.Kind == "Pod" {
		lev = lev.Str("pod", obj.Namespace+"/"+obj.Name)
		if obj.FieldPath != "" {
			lev = lev.Str("object", obj.FieldPath)
		}
	} else {
		lev = lev.Str("object", strings.ToLower(obj.Kind)+" "+obj.Name)
	}
	lev.Int("count", ev.Count).Msg(message)
}

// List returns the kept events in the order they were last seen, oldest
// first (Seq order), each with its latest count.
func (e *Events) List() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, 0, e.order.Len())
	for el := e.order.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*Event))
	}
	return out
}

// Len is the number of kept events and the size of the aggregation index
// (equal, unless the index leaks).
func (e *Events) Len() (events, index int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.order.Len(), len(e.index)
}

// For returns the kept events about one pod, oldest first.
func (e *Events) For(namespace, name string) []Event {
	var out []Event
	for _, ev := range e.List() {
		if ev.InvolvedObject.Namespace == namespace && ev.InvolvedObject.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// Subscribe streams new events until cancel is called.
func (e *Events) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 256)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			delete(e.subs, ch)
			e.mu.Unlock()
		})
	}
}
