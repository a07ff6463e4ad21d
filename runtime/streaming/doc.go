// Package streaming serves a runtime's exec, attach and port-forward to
// Kubernetes clients (kubectl, client-go programs, later the CRI's
// streaming server) over the Kubernetes streaming protocols, and holds the
// small client pelagos-agent's own CLI uses against the agent.
//
// Remote command (exec, attach):
//   - WebSocket: v5.channel.k8s.io (kubectl's default since 1.30; the
//     client can half-close stdin), v4.channel.k8s.io and
//     v4.base64.channel.k8s.io (exit codes in a Status), channel.k8s.io and
//     base64.channel.k8s.io (errors as text).
//   - SPDY/3.1: v4.channel.k8s.io, v3.channel.k8s.io (resize),
//     v2.channel.k8s.io; kubectl falls back to it when a WebSocket upgrade
//     fails, or uses it with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false.
//
// Port-forward (portforward.k8s.io): SPDY/3.1, SPDY tunnelled through a
// WebSocket (SPDY/3.1+portforward.k8s.io, kubectl's default since 1.31) and
// the WebSocket channel form (v4.channel.k8s.io with ?ports=).
//
// A command's exit code travels as kubectl expects it: a Status with
// reason NonZeroExitCode and an ExitCode cause, which kubectl turns into
// its own exit status.
package streaming
