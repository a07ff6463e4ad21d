package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pelagos-containers/pelagos-agent/reconcile"
)

// TestWatchEventsResumes: when the agent ends an events watch (its
// timeout, or the watch fell behind), the client resumes from the last
// resource version it saw, and after a 410 Gone from the version a list
// gives; no event is lost in the first case or delivered twice in either.
// Before, the watch silently ended and `events --watch` (and every caller)
// saw nothing more.
func TestWatchEventsResumes(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string // resourceVersion of each watch
	event := func(w http.ResponseWriter, typ, reason string, rv int) {
		fmt.Fprintf(w, `{"type":%q,"object":{"kind":"Event","metadata":{"name":"e%d","resourceVersion":"%d"},"reason":%q,"involvedObject":{"kind":"Pod","name":"web"}}}`+"\n", typ, rv, rv, reason)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") == "" {
			fmt.Fprint(w, `{"kind":"EventList","metadata":{"resourceVersion":"500"},"items":[]}`)
			return
		}
		mu.Lock()
		asked = append(asked, r.URL.Query().Get("resourceVersion"))
		n := len(asked)
		mu.Unlock()
		switch n {
		case 1: // two events, then the agent ends the watch
			event(w, "ADDED", "One", 10)
			event(w, "MODIFIED", "Two", 11)
		case 2: // resumed from 11: one more, then the version is too old
			event(w, "ADDED", "Three", 12)
		case 3:
			fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}`+"\n")
		default: // resumed after a list, from its version
			event(w, "ADDED", "Four", 501)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []string
	err = NewClient(sock).WatchEvents(ctx, func(ev reconcile.Event) error {
		got = append(got, ev.Reason)
		if len(got) == 4 {
			cancel()
		}
		return nil
	})
	if err != nil {
		mu.Lock()
		t.Fatalf("%v (events %v, watches from %q)", err, got, asked)
	}
	if fmt.Sprint(got) != "[One Two Three Four]" {
		t.Errorf("events %v, want [One Two Three Four]", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(asked) != "[ 11 12 500]" {
		t.Errorf("watches from versions %q, want \"\", 11, 12, 500", asked)
	}
}
