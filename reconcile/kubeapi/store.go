package kubeapi

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// historySize bounds the changes a collection keeps for watches that resume
// from a resource version; a client further behind gets 410 Gone and lists
// again, as with the API server's watch cache.
const historySize = 1024

// watcherBuffer is how many changes a watch may fall behind before it is
// closed (the client then resumes from its last version). It is the
// history's size: a watch further behind could not resume anyway, and a
// burst no larger than the history (the events that fell out of the ring,
// deleted together at a relist; every pod changed by a full resync) never
// ends a watch that keeps reading.
const watcherBuffer = historySize

// versions hands out resource versions: one counter for every collection,
// as etcd's revision. It starts at the agent's start time in microseconds,
// so any version an earlier agent handed out is older than this one's.
type versions struct{ n atomic.Uint64 }

func newVersions(start time.Time) *versions {
	v := &versions{}
	v.n.Store(uint64(start.UnixMicro()))
	return v
}

func (v *versions) next() uint64    { return v.n.Add(1) }
func (v *versions) current() uint64 { return v.n.Load() }

func formatRV(rv uint64) string { return strconv.FormatUint(rv, 10) }

// object is what a collection holds: a Kubernetes object with metadata.
type object interface {
	kruntime.Object
	metav1.Object
}

// change is one entry of a collection's history, and what a watch sends.
type change struct {
	rv   uint64
	typ  watch.EventType
	obj  object
	prev object // the object before a MODIFIED or DELETED, for selector transitions
}

type entry struct {
	obj object
	sum []byte // the object's JSON without its resource version
}

// collection holds the current objects of one resource, each with the
// resource version of its last change, and the recent changes for watches.
// Objects are never changed after they are stored: every refresh builds new
// ones, and an identical object (same JSON) is not a change.
type collection struct {
	vs *versions

	mu       sync.Mutex
	items    map[string]*entry
	hist     []change
	oldest   uint64 // every change after this version is in hist
	watchers map[*watcher]struct{}
}

func newCollection(vs *versions) *collection {
	return &collection{vs: vs, items: map[string]*entry{}, oldest: vs.current(), watchers: map[*watcher]struct{}{}}
}

func objKey(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }

// fingerprint is the object's JSON with the resource version left out.
func fingerprint(o object) []byte {
	rv := o.GetResourceVersion()
	o.SetResourceVersion("")
	b, err := json.Marshal(o)
	o.SetResourceVersion(rv)
	if err != nil {
		// Every object here is a k8s.io/api type, which always encodes;
		// an unencodable one is simply always a change.
		return nil
	}
	return b
}

// set stores obj under its namespace/name, as a change when it differs from
// what is stored. obj must not be changed afterwards.
func (c *collection) set(obj object) {
	sum := fingerprint(obj)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(obj, sum)
}

func (c *collection) setLocked(obj object, sum []byte) {
	key := objKey(obj)
	old := c.items[key]
	if old != nil && sum != nil && bytes.Equal(old.sum, sum) {
		return
	}
	rv := c.vs.next()
	obj.SetResourceVersion(formatRV(rv))
	c.items[key] = &entry{obj: obj, sum: sum}
	ch := change{rv: rv, typ: watch.Added, obj: obj}
	if old != nil {
		ch.typ, ch.prev = watch.Modified, old.obj
	}
	c.recordLocked(ch)
}

// remove deletes the object stored under namespace/name, if any.
func (c *collection) remove(namespace, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(namespace + "/" + name)
}

func (c *collection) removeLocked(key string) {
	old := c.items[key]
	if old == nil {
		return
	}
	delete(c.items, key)
	rv := c.vs.next()
	// The DELETED event carries the object as last seen, at the version of
	// the deletion (as the API server sends it).
	gone := old.obj.DeepCopyObject().(object)
	gone.SetResourceVersion(formatRV(rv))
	c.recordLocked(change{rv: rv, typ: watch.Deleted, obj: gone, prev: old.obj})
}

// replace makes the collection hold exactly objs.
func (c *collection) replace(objs []object) {
	sums := make([][]byte, len(objs))
	for i, o := range objs {
		sums[i] = fingerprint(o)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := make(map[string]bool, len(objs))
	for i, o := range objs {
		keep[objKey(o)] = true
		c.setLocked(o, sums[i])
	}
	var gone []string
	for k := range c.items {
		if !keep[k] {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		c.removeLocked(k)
	}
}

func (c *collection) recordLocked(ch change) {
	if len(c.hist) >= historySize {
		c.oldest = c.hist[0].rv
		c.hist = append(c.hist[:0], c.hist[1:]...)
	}
	c.hist = append(c.hist, ch)
	for w := range c.watchers {
		select {
		case w.ch <- ch:
		default:
			// Too far behind: end this watch; the client resumes from the
			// last version it saw.
			delete(c.watchers, w)
			close(w.ch)
		}
	}
}

// get returns the object stored under namespace/name.
func (c *collection) get(namespace, name string) (object, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.items[namespace+"/"+name]
	if e == nil {
		return nil, false
	}
	return e.obj, true
}

// list returns the objects that match, sorted by namespace and name, and
// the resource version the list is current at.
func (c *collection) list(match func(object) bool) ([]object, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listLocked(match), c.vs.current()
}

func (c *collection) listLocked(match func(object) bool) []object {
	out := make([]object, 0, len(c.items))
	for _, e := range c.items {
		if match == nil || match(e.obj) {
			out = append(out, e.obj)
		}
	}
	sort.Slice(out, func(i, j int) bool { return objKey(out[i]) < objKey(out[j]) })
	return out
}

// watcher receives a collection's changes from the moment it was made.
type watcher struct {
	c  *collection
	ch chan change
}

// errExpired: the requested resource version is older than the history.
type errExpired struct{ requested, oldest uint64 }

// errTooNew: the requested resource version has not been handed out yet.
type errTooNew struct{ requested uint64 }

func (errExpired) Error() string { return "too old resource version" }
func (errTooNew) Error() string  { return "too large resource version" }

// watch starts a watch. from == 0 means "now": the current objects come
// first as ADDED changes (as the API server does for a watch without a
// resource version). Otherwise every change after from is replayed, or
// errExpired when history no longer reaches back that far.
func (c *collection) watch(from uint64, fromSet bool) (*watcher, []change, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var initial []change
	cur := c.vs.current()
	switch {
	case !fromSet:
		for _, o := range c.listLocked(nil) {
			rv, _ := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
			initial = append(initial, change{rv: rv, typ: watch.Added, obj: o})
		}
	case from > cur:
		return nil, nil, errTooNew{from}
	case from < c.oldest:
		return nil, nil, errExpired{from, c.oldest}
	default:
		for _, ch := range c.hist {
			if ch.rv > from {
				initial = append(initial, ch)
			}
		}
	}
	w := &watcher{c: c, ch: make(chan change, watcherBuffer)}
	c.watchers[w] = struct{}{}
	return w, initial, nil
}

func (w *watcher) stop() {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	if _, ok := w.c.watchers[w]; ok {
		delete(w.c.watchers, w)
		close(w.ch)
	}
}

// watching reports whether anyone watches the collection.
func (c *collection) watching() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watchers) > 0
}
