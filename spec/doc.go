// Package spec is pelagos-agent's Pod model: a wire-compatible subset of
// Kubernetes core/v1 (Pod, ConfigMap, Secret), strict decoding, the
// Kubernetes defaults, validation and the change-detection hashes.
//
// Entry points:
//
//   - ParseFile(name, bytes, limits) decodes every document of one manifest
//     file strictly, applies SetDefaults and validates. It never reads files
//     itself; spec/manifest lists, trust-checks and reads the directory.
//   - SetDefaults(*Pod) applies Kubernetes' defaults in place (idempotent).
//   - ValidatePod / ValidateConfigMap / ValidateSecret return every problem
//     at once as FieldErrors; ValidatePodWithOptions (and Limits.Validation
//     for ParseFile) relaxes what an operator may opt out of (unsafe
//     namespaced sysctls).
//   - SandboxHash(*Pod) and ContainerHash(*Pod, *Container) are the versioned
//     hashes the reconciler compares: a new sandbox hash recreates the sandbox,
//     a new container hash restarts one container. hash.go lists the fields.
//
// Every problem is a *FieldError carrying the file, the 1-based document
// index, the field path and, where the YAML parser can tell, the line:
//
//	web.yaml: doc 2: spec.containers[0].resources.limits.memory: "10Qi" is not a valid quantity (line 14)
//
// Errors wrap ErrUnknownField (a typo), ErrUnsupported (valid Kubernetes that
// pelagos-agent does not implement), ErrInvalid (a broken rule) or ErrSyntax
// (not YAML, or over an input limit); test them with errors.Is.
//
// Validation refuses what a node cannot honour rather than let it wrap or
// fail at every start: numbers beyond what the kernel or Go's durations
// hold (ranges.go), mounts over the runtime's own (isolation.go), sysctl
// values the kernel would refuse (sysctl.go).
//
// Hostile input is bounded by Limits: a byte cap per file, a cap on
// documents, on YAML nodes after alias expansion (billion laughs) and on
// nesting depth, and NUL bytes or invalid UTF-8 anywhere are refused.
package spec
