package reconcile

import (
	"sync"
	"time"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// queue is a set of pod keys waiting for a pass. It carries keys, not
// events: adding a key already waiting does nothing, and a key being worked
// on is handed out again only after Done, so one pod never has two passes at
// once while different pods proceed in parallel.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []runtime.PodKey
	dirty      map[runtime.PodKey]bool
	processing map[runtime.PodKey]bool
	timers     map[runtime.PodKey]*delayed
	shutdown   bool
	now        func() time.Time
}

type delayed struct {
	at    time.Time
	timer *time.Timer
}

func newQueue() *queue {
	q := &queue{dirty: map[runtime.PodKey]bool{}, processing: map[runtime.PodKey]bool{},
		timers: map[runtime.PodKey]*delayed{}, now: time.Now}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add makes key due now.
func (q *queue) Add(key runtime.PodKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key runtime.PodKey) {
	if q.shutdown || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if !q.processing[key] {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// AddAfter makes key due after d; an earlier pending due time wins.
func (q *queue) AddAfter(key runtime.PodKey, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := q.now().Add(d)
	if t, ok := q.timers[key]; ok {
		if !at.Before(t.at) {
			return
		}
		t.timer.Stop()
	}
	dl := &delayed{at: at}
	dl.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[key] == dl {
			delete(q.timers, key)
		}
		q.addLocked(key)
	})
	q.timers[key] = dl
}

// Get blocks until a key is due or the queue shuts down (ok false).
func (q *queue) Get() (runtime.PodKey, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if len(q.order) == 0 {
		return runtime.PodKey{}, false
	}
	key := q.order[0]
	q.order = q.order[1:]
	q.processing[key] = true
	delete(q.dirty, key)
	return key, true
}

// Done ends the pass for key; if it was added meanwhile it is due again.
func (q *queue) Done(key runtime.PodKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.shutdown {
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// Len is the number of keys due now.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// ShutDown wakes every Get with ok false and stops the timers.
func (q *queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, t := range q.timers {
		t.timer.Stop()
		delete(q.timers, k)
	}
	q.order = nil
	q.cond.Broadcast()
}
