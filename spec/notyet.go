package spec

// Fields pelagos-agent will support but does not yet. They are modelled so
// that lifting a refusal is deleting its check here (and adding the field
// to the container hash, hash.go), and refused meanwhile because accepting
// them would silently change what the pod does: a shell with tty: true
// exits at once without a terminal, where Kubernetes keeps it running.

const notYet = "not supported yet: "

// validateNotYet refuses a container's not-yet-supported fields.
func validateNotYet(l *errList, cp fieldPath, c *Container) {
	// Terminals and stdin: the runtime has no attach yet.
	if c.TTY {
		l.unsupported(cp.Field("tty"), notYet+"pelagos-agent cannot attach a terminal to a container; delete this line (or set false), and use `pelagos-agent exec -t` for an interactive shell")
	}
	if c.Stdin {
		l.unsupported(cp.Field("stdin"), notYet+"pelagos-agent cannot attach to a container's stdin; delete this line (or set false): the container's stdin is /dev/null")
	}
	if c.StdinOnce {
		l.unsupported(cp.Field("stdinOnce"), notYet+"pelagos-agent cannot attach to a container's stdin; delete this line (or set false)")
	}
}
