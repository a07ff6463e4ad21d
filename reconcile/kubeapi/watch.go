package kubeapi

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// watchEvent is one event of a watch stream.
type watchEvent struct {
	Type   watch.EventType `json:"type"`
	Object any             `json:"object"`
}

// watch streams changes as the API server does: JSON watch events, one
// after another, until timeoutSeconds, the client going away, or the watch
// falling too far behind. A resource version older than the history ends
// at once with an ERROR event carrying 410 Expired, and the client lists
// again.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, ri requestInfo, def *resourceDef) error {
	f, err := negotiated(r)
	if err != nil {
		return err
	}
	sel, err := parseSelector(r, ri, def)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	timeout := time.Duration(30+rand.IntN(30)) * time.Minute
	if n, set, err := queryInt(r, "timeoutSeconds"); err != nil {
		return err
	} else if set {
		timeout = time.Duration(n) * time.Second
	}
	bookmarks := isTrue(q.Get("allowWatchBookmarks"))
	initialEvents := isTrue(q.Get("sendInitialEvents"))
	rvs := q.Get("resourceVersion")
	var from uint64
	fromSet := rvs != "" && rvs != "0" && !initialEvents
	if fromSet {
		from, err = strconv.ParseUint(rvs, 10, 64)
		if err != nil {
			return errBadRequest("resourceVersion: %q is not a resource version", rvs)
		}
	}
	if err := def.refresh(r.Context()); err != nil {
		return err
	}
	wt, initial, err := def.coll.watch(from, fromSet)
	var expired errExpired
	var tooNew errTooNew
	switch {
	case errors.As(err, &tooNew):
		return newError(http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "Too large resource version: %d, current: %d", tooNew.requested, s.vs.current()).
			with(&metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}, RetryAfterSeconds: 1})
	case err != nil && !errors.As(err, &expired):
		return err
	}
	// Wake Run so it starts keeping this collection current.
	select {
	case s.watchStart <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	send := func(ev watchEvent) bool {
		if err := enc.Encode(ev); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if wt == nil {
		st := newError(http.StatusGone, metav1.StatusReasonExpired, "too old resource version: %d (%d)", expired.requested, expired.oldest).st
		send(watchEvent{Type: watch.Error, Object: st})
		return nil
	}
	defer wt.stop()
	if flusher != nil {
		flusher.Flush()
	}
	last := from
	emit := func(ch change) bool {
		typ, ok := s.transition(sel, ch)
		if ch.rv > last {
			last = ch.rv
		}
		if !ok {
			return true
		}
		return send(watchEvent{Type: typ, Object: s.watchObject(r, f, def, ch.obj)})
	}
	for _, ch := range initial {
		if !emit(ch) {
			return nil
		}
	}
	bookmark := func(initialEnd bool) bool {
		o := def.newObject()
		o.SetResourceVersion(formatRV(max(last, s.vs.current())))
		if initialEnd {
			o.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
		}
		o.GetObjectKind().SetGroupVersionKind(gvk(def))
		return send(watchEvent{Type: watch.Bookmark, Object: o})
	}
	if initialEvents && bookmarks && !bookmark(true) {
		return nil
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var tick <-chan time.Time
	if bookmarks {
		t := time.NewTicker(s.bookmarkEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-deadline.C:
			return nil
		case <-tick:
			if !bookmark(false) {
				return nil
			}
		case ch, ok := <-wt.ch:
			if !ok || !emit(ch) {
				return nil
			}
		}
	}
}

// transition is the event a selective watch sends for a change: an object
// that starts matching is ADDED, one that stops matching is DELETED.
func (s *Server) transition(sel *selector, ch change) (watch.EventType, bool) {
	now := sel.match(ch.obj)
	switch ch.typ {
	case watch.Added:
		return watch.Added, now
	case watch.Deleted:
		return watch.Deleted, ch.prev == nil || sel.match(ch.prev)
	}
	before := ch.prev != nil && sel.match(ch.prev)
	switch {
	case before && now:
		return watch.Modified, true
	case now:
		return watch.Added, true
	case before:
		return watch.Deleted, true
	}
	return "", false
}

func (s *Server) watchObject(r *http.Request, f format, def *resourceDef, o object) any {
	switch f.kind {
	case formatTable:
		return s.table(r, f, def, []object{o}, o.GetResourceVersion())
	case formatPartial:
		return partial(o, f.version)
	}
	return s.output(def, o)
}
