package reconcile

import (
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Repeats are merged across interleaving, as kubelet aggregates: by object,
// type, reason and message, with count, first and last time, and the
// events.k8s.io series view.
func TestEventsAggregateAcrossInterleaving(t *testing.T) {
	e := NewEvents(10, zerolog.Nop())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	e.now = func() time.Time { now = now.Add(time.Second); return now }
	pod := ObjectRef{Kind: "Pod", Namespace: "default", Name: "crash"}
	for range 7 {
		e.Record(EventWarning, "BackOff", pod, "Back-off restarting failed container")
		e.Record(EventNormal, "Started", pod, "Started container app")
	}
	e.Record(EventNormal, "Started", ObjectRef{Kind: "Pod", Namespace: "default", Name: "other"}, "Started container app")
	list := e.List()
	if len(list) != 3 {
		t.Fatalf("%d events kept, want 3 (two aggregated, one other): %+v", len(list), list)
	}
	b := list[0]
	if b.Reason != "BackOff" || b.Count != 7 || !b.FirstTimestamp.Equal(t0.Add(time.Second)) || !b.LastTimestamp.Equal(t0.Add(13*time.Second)) {
		t.Errorf("BackOff aggregated as %+v", b)
	}
	if b.Series == nil || b.Series.Count != 7 || !b.Series.LastObservedTime.Equal(b.LastTimestamp) {
		t.Errorf("series view %+v", b.Series)
	}
	if list[1].Reason != "Started" || list[1].Count != 7 || list[2].Count != 1 || list[2].Series != nil {
		t.Errorf("events %+v", list)
	}
	for i := 1; i < len(list); i++ {
		if list[i].Seq <= list[i-1].Seq {
			t.Errorf("List is not in last-seen order: %+v", list)
		}
	}
}

// The store is bounded: the least recently seen event goes first, a repeat
// keeps its event alive, and the aggregation index never outgrows the kept
// events.
func TestEventsBounded(t *testing.T) {
	e := NewEvents(5, zerolog.Nop())
	node := ObjectRef{Kind: "Node", Name: "n"}
	e.Record(EventWarning, "Loop", node, "crash loop")
	for i := range 50 {
		e.Record(EventNormal, "Other", node, fmt.Sprint("message ", i))
		e.Record(EventWarning, "Loop", node, "crash loop")
	}
	n, idx := e.Len()
	if n != 5 || idx != 5 {
		t.Fatalf("kept %d events with %d index entries, want 5 and 5", n, idx)
	}
	list := e.List()
	last := list[len(list)-1]
	if last.Reason != "Loop" || last.Count != 51 {
		t.Errorf("the repeated event was evicted or split: %+v", list)
	}
	if list[0].Message != "message 46" {
		t.Errorf("oldest kept %q, want message 46", list[0].Message)
	}
}
