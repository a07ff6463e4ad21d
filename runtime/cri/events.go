package cri

import (
	"context"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Container events for GetContainerEvents (kubelet's evented PLEG). Each
// event carries the pod's status and its containers' statuses as they
// are when it is sent. Sandboxes have events too, with the sandbox's ID
// as the container ID, as containerd sends them.

// subscriberBuffer is how many events a slow client may fall behind
// before it loses events (kubelet's relist is the safety net).
const subscriberBuffer = 512

type broadcaster struct {
	mu   sync.Mutex
	subs map[chan *runtimeapi.ContainerEventResponse]struct{}
}

func newBroadcaster() *broadcaster {
	return &broadcaster{subs: map[chan *runtimeapi.ContainerEventResponse]struct{}{}}
}

func (b *broadcaster) subscribe() (chan *runtimeapi.ContainerEventResponse, func()) {
	ch := make(chan *runtimeapi.ContainerEventResponse, subscriberBuffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

func (b *broadcaster) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) > 0
}

func (b *broadcaster) send(ev *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- ev:
		default: // a full subscriber drops the event rather than block the CRI
		}
	}
}

// GetContainerEvents implements the CRI: events from now on, until the
// client goes away.
func (s *Server) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// containerEvent sends an event about a container, with the state of its
// pod as it is now (a deleted container is no longer among them).
func (s *Server) containerEvent(ctx context.Context, rec *containerRecord, typ runtimeapi.ContainerEventType) {
	if !s.events.active() {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{ContainerId: rec.ID, ContainerEventType: typ, CreatedAt: time.Now().UnixNano()}
	s.fillPod(ctx, ev, rec.SandboxID)
	s.events.send(ev)
}

func (s *Server) sandboxEvent(ctx context.Context, rec *sandboxRecord, typ runtimeapi.ContainerEventType) {
	if !s.events.active() {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{ContainerId: rec.ID, ContainerEventType: typ, CreatedAt: time.Now().UnixNano()}
	if typ == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
		o := &observedSandbox{rec: rec, state: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
		ev.PodSandboxStatus = o.status()
	} else {
		s.fillPod(ctx, ev, rec.ID)
	}
	s.events.send(ev)
}

func (s *Server) fillPod(ctx context.Context, ev *runtimeapi.ContainerEventResponse, sandboxID string) {
	sb, err := s.store.sandbox(sandboxID)
	if err != nil {
		return
	}
	if o, err := s.observeSandbox(ctx, sb); err == nil {
		ev.PodSandboxStatus = o.status()
	}
	ctrs, _ := s.store.containers()
	for _, c := range ctrs {
		if c.SandboxID != sandboxID {
			continue
		}
		if st, err := s.containerStatus(ctx, c); err == nil {
			ev.ContainersStatuses = append(ev.ContainersStatuses, st)
		}
	}
}

// watchExits turns the runtime's exit events into CRI events for the
// CRI's containers, until ctx ends.
func (s *Server) watchExits(ctx context.Context) {
	w, ok := s.rt.(runtime.ExitWatcher)
	if !ok {
		return
	}
	ch, err := w.WatchExits(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("container exits are not followed; GetContainerEvents misses them")
		return
	}
	for ev := range ch {
		if rec, err := s.store.container(ev.ContainerID); err == nil {
			s.containerEvent(ctx, rec, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
		}
	}
}
