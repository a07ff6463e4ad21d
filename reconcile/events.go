package reconcile

import (
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
type Event struct {
	Seq            uint64    `json:"seq"`
	Type           string    `json:"type"`
	Reason         string    `json:"reason"`
	Message        string    `json:"message"`
	InvolvedObject ObjectRef `json:"involvedObject"`
	Count          int       `json:"count"`
	FirstTimestamp time.Time `json:"firstTimestamp"`
	LastTimestamp  time.Time `json:"lastTimestamp"`
}

// Events is a bounded ring of events with live subscribers. A repeat of the
// newest event about the same object, reason and message bumps its count
// instead of taking a new slot, so a crash loop cannot flush the ring.
type Events struct {
	mu   sync.Mutex
	ring []Event
	next int
	full bool
	seq  uint64
	subs map[chan Event]struct{}
	log  zerolog.Logger
	now  func() time.Time
}

// NewEvents keeps the last size events (default 1000) and logs each one.
func NewEvents(size int, log zerolog.Logger) *Events {
	if size <= 0 {
		size = 1000
	}
	return &Events{ring: make([]Event, size), subs: map[chan Event]struct{}{}, log: log, now: time.Now}
}

// Record adds an event, logs it and hands it to subscribers.
func (e *Events) Record(typ, reason string, obj ObjectRef, message string) {
	e.mu.Lock()
	now := e.now()
	var ev Event
	if last := e.lastLocked(); last != nil && last.InvolvedObject == obj && last.Reason == reason && last.Message == message && last.Type == typ {
		last.Count++
		last.LastTimestamp = now
		e.seq++
		last.Seq = e.seq
		ev = *last
	} else {
		e.seq++
		ev = Event{Seq: e.seq, Type: typ, Reason: reason, Message: message, InvolvedObject: obj, Count: 1, FirstTimestamp: now, LastTimestamp: now}
		e.ring[e.next] = ev
		e.next = (e.next + 1) % len(e.ring)
		if e.next == 0 {
			e.full = true
		}
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

func (e *Events) lastLocked() *Event {
	if e.next == 0 && !e.full {
		return nil
	}
	i := (e.next - 1 + len(e.ring)) % len(e.ring)
	return &e.ring[i]
}

// List returns the kept events, oldest first.
func (e *Events) List() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	if e.full {
		out = append(out, e.ring[e.next:]...)
	}
	out = append(out, e.ring[:e.next]...)
	return out
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
