package spec

// Fields pelagos-agent will support but does not yet. They are modelled so
// that lifting a refusal is deleting its check here (and adding the field
// to the container hash, hash.go), and refused meanwhile because accepting
// them would silently change what the pod does: a sidecar would run once
// to completion instead of beside the app.

const notYet = "not supported yet: "

// validateNotYet refuses a container's not-yet-supported fields and
// reports whether the container is a native sidecar, whose probes and
// hooks are then not reported again as "not allowed on an init container".
func validateNotYet(l *errList, cp fieldPath, c *Container, init bool) (sidecar bool) {
	// Native sidecars: an init container with restartPolicy Always.
	if rp := c.RestartPolicy; rp != nil {
		switch {
		case !init:
			l.unsupported(cp.Field("restartPolicy"), "per-container restart policies are not supported by pelagos-agent: delete this line; the pod's restartPolicy applies")
		case *rp == ContainerRestartPolicyAlways:
			l.unsupported(cp.Field("restartPolicy"), notYet+"native sidecars (an init container with restartPolicy: Always); move this container to spec.containers to run it beside the app")
			return true
		default:
			l.add(cp.Field("restartPolicy"), "%q is not supported: the only value for an init container is Always (a native sidecar)", *rp)
		}
	}
	return false
}
