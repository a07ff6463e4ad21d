// Package kubeapi serves the node as a Kubernetes API, so that kubectl,
// k9s and client-go programs work against pelagos-agent.
//
// The objects it serves are real k8s.io/api types built from what the
// reconciler knows (desired pods, their status, events) and from the
// manifest directory (ConfigMaps, Secrets, namespaces); the node is
// described from the host. Nothing is stored: every object is derived, and
// resource versions come from one in-memory counter that starts at the
// agent's start time, so a version kept from an earlier agent is older than
// any this one serves (a watch from it answers 410 Gone and the client
// lists again).
//
// Writes are opt-in: with a write directory, create/update/patch/delete of
// Pods, ConfigMaps and Secrets write or remove manifest files there, and the
// directory stays the single source of truth. Everything else is read-only.
//
// The package knows Kubernetes' wire conventions (discovery, tables,
// watches, Status errors, OpenAPI); the reconciler behind it does not change
// for it.
package kubeapi
