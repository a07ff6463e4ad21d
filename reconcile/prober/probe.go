// Package prober runs Kubernetes liveness, readiness and startup probes for
// the reconciler: httpGet, tcpSocket and grpc are performed by the agent
// itself against the pod IP from the host (images need no curl or nc), exec
// goes through the runtime's Exec with a timeout and bounded output.
//
// The package applies Kubernetes' defaults and semantics (initialDelaySeconds,
// periodSeconds, timeoutSeconds, successThreshold, failureThreshold, startup
// gating liveness and readiness) and reports results as Updates through a
// callback; what to do about them (restart, Ready condition, events) is the
// reconciler's decision. It makes no system calls of its own.
package prober

import (
	"fmt"
	"time"
)

// Kind is the probe type.
type Kind string

const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Result of one probe or of a worker's thresholded state.
type Result int

const (
	// Unknown: not probed yet (the initial state of a startup probe).
	Unknown Result = iota
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	default:
		return "unknown"
	}
}

// Kubernetes defaults (k8s.io/api core/v1 SetDefaults_Probe).
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = 1 * time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// maxOutput bounds what is kept of an exec probe's output or an HTTP body,
// as the kubelet does (10 KiB): a chatty probe must not grow the agent.
const maxOutput = 10 << 10

// Probe is one probe of a container, already translated from the manifest.
// Zero durations and thresholds take the Kubernetes defaults (see Normalize).
// Exactly one action is set.
type Probe struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC      *GRPCAction      `json:"grpc,omitempty"`

	InitialDelay     time.Duration `json:"initialDelay,omitempty"`
	Period           time.Duration `json:"period,omitempty"`
	Timeout          time.Duration `json:"timeout,omitempty"`
	SuccessThreshold int           `json:"successThreshold,omitempty"`
	FailureThreshold int           `json:"failureThreshold,omitempty"`
	// TerminationGracePeriod, when set, replaces the pod's grace period when
	// a liveness or startup failure kills the container.
	TerminationGracePeriod *time.Duration `json:"terminationGracePeriod,omitempty"`
}

// ExecAction runs Command in the container; exit status 0 is success.
type ExecAction struct {
	Command []string `json:"command"`
}

// Port is a container port by number or by name (resolved against the
// container's named ports).
type Port struct {
	Number int32  `json:"number,omitempty"`
	Name   string `json:"name,omitempty"`
}

func (p Port) String() string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprint(p.Number)
}

// HTTPHeader is one request header; a Host header sets the request's Host.
type HTTPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// HTTPGetAction is a GET; a status in [200,400) is success.
type HTTPGetAction struct {
	Scheme  string       `json:"scheme,omitempty"` // HTTP (default) or HTTPS (certificate not verified)
	Host    string       `json:"host,omitempty"`   // default: the pod IP
	Path    string       `json:"path,omitempty"`
	Port    Port         `json:"port"`
	Headers []HTTPHeader `json:"headers,omitempty"`
}

// TCPSocketAction succeeds when a TCP connection opens.
type TCPSocketAction struct {
	Host string `json:"host,omitempty"` // default: the pod IP
	Port Port   `json:"port"`
}

// GRPCAction calls grpc.health.v1.Health/Check; SERVING is success.
type GRPCAction struct {
	Port    int32  `json:"port"`
	Service string `json:"service,omitempty"`
}

// Normalize returns a copy with the Kubernetes defaults applied. Liveness and
// startup probes always use a success threshold of 1, as the API requires.
func (p Probe) Normalize(kind Kind) Probe {
	if p.Period <= 0 {
		p.Period = DefaultPeriod
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.SuccessThreshold <= 0 || kind != Readiness {
		p.SuccessThreshold = DefaultSuccessThreshold
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = DefaultFailureThreshold
	}
	if p.InitialDelay < 0 {
		p.InitialDelay = 0
	}
	return p
}

// validate reports a probe the worker could never run.
func (p *Probe) validate() error {
	n := 0
	if p.Exec != nil {
		n++
		if len(p.Exec.Command) == 0 {
			return fmt.Errorf("exec probe: empty command")
		}
	}
	if p.HTTPGet != nil {
		n++
		switch p.HTTPGet.Scheme {
		case "", "HTTP", "HTTPS", "http", "https":
		default:
			return fmt.Errorf("httpGet probe: scheme %q is neither HTTP nor HTTPS", p.HTTPGet.Scheme)
		}
	}
	if p.TCPSocket != nil {
		n++
	}
	if p.GRPC != nil {
		n++
		if p.GRPC.Port <= 0 || p.GRPC.Port > 65535 {
			return fmt.Errorf("grpc probe: port %d out of range", p.GRPC.Port)
		}
	}
	if n != 1 {
		return fmt.Errorf("probe must have exactly one action, has %d", n)
	}
	return nil
}

// Target is the running container a probe is aimed at.
type Target struct {
	Namespace     string
	Pod           string
	ContainerName string
	ContainerID   string
	// PodIP is where httpGet, tcpSocket and grpc connect when the action
	// names no host; for hostNetwork pods the reconciler passes 127.0.0.1.
	PodIP string
	// StartedAt is when the container started; initialDelay counts from it.
	StartedAt time.Time
	// Ports maps the container's named ports to numbers.
	Ports map[string]int32
}

func (t *Target) resolvePort(p Port) (int, error) {
	if p.Name == "" {
		if p.Number <= 0 || p.Number > 65535 {
			return 0, fmt.Errorf("port %d out of range", p.Number)
		}
		return int(p.Number), nil
	}
	n, ok := t.Ports[p.Name]
	if !ok {
		return 0, fmt.Errorf("container %s has no port named %q", t.ContainerName, p.Name)
	}
	return int(n), nil
}

// userAgent mimics the kubelet's so that applications that special-case
// probes ("kube-probe/") keep working under the agent.
const userAgent = "kube-probe/1.33"
