// Package reconcile makes the node match the manifest directory.
//
// It is level-triggered: a file change, a container exit or a timer only puts
// a pod key in a queue; a pass for that key takes the desired pod (from the
// last load of the manifests) and the observed sandboxes and containers (from
// a cache of what the runtime reported, read again only where something may
// have changed), computes a plan with the pure function Diff, and applies it.
// A failed step re-queues the key with per-pod backoff; a periodic resync
// compares the runtime's sandboxes with the cache, and a full one re-lists
// everything as a safety net. Each key is handled by one worker at a
// time, and workers are independent, so a slow pull or a stuck stop never
// blocks another pod.
//
// The package holds the domain logic (Diff, restart policy, crash-loop
// backoff, status in Kubernetes' shape, events) apart from the machinery
// (queue, workers). It never makes system calls itself: it only talks to the
// runtime contract, so it can be driven against runtime/fake in tests.
package reconcile
