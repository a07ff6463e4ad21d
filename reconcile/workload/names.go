package workload

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/pelagos-containers/pelagos-agent/spec"
)

// Names. Kubernetes names a Deployment's pods <deployment>-<pod template
// hash>-<5 random characters>, a DaemonSet's and a Job's <name>-<5 random
// characters> and a StatefulSet's <name>-<ordinal>. Here the five
// characters are not random: they derive from the workload, its template
// and the replica's index, so a restarted agent names the same pods the
// same way and adopts them (same processes, no restart), and two agents of
// a fleet sharing one directory name their replicas alike. They use
// Kubernetes' alphabet (no vowels, no look-alike digits), so they look and
// behave as Kubernetes' names do.

// alphabet is k8s.io/apimachinery's rand alphabet.
const alphabet = "bcdfghjklmnpqrstvwxz2456789"

// maxGeneratedNameLength is Kubernetes' room for the base of a generated
// name: a label's 63 characters less the 5-character suffix.
const maxGeneratedNameLength = 63 - 5

// safeEncode maps each character of s onto the alphabet, as Kubernetes'
// rand.SafeEncodeString does for a pod template hash.
func safeEncode(s string) string {
	out := make([]byte, len(s))
	for i := range s {
		out[i] = alphabet[int(s[i])%len(alphabet)]
	}
	return string(out)
}

// suffix is five alphabet characters derived from the parts.
func suffix(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	v := h.Sum64()
	out := make([]byte, 5)
	for i := range out {
		out[i] = alphabet[v%uint64(len(alphabet))]
		v /= uint64(len(alphabet))
	}
	return string(out)
}

// generatedName is Kubernetes' generateName: the base cut to leave room
// for the suffix.
func generatedName(base, sfx string) string {
	if len(base) > maxGeneratedNameLength {
		base = base[:maxGeneratedNameLength]
	}
	return base + sfx
}

// templateHash is the pod template hash: what a Deployment's pod names and
// its pod-template-hash label carry, and the revision of StatefulSet and
// DaemonSet pods. It covers the fields that restart a pod or a container
// here (spec.SandboxHash and every spec.ContainerHash, which are versioned
// so that an agent upgrade does not change them): a template change that
// would restart something rolls the pods; one that would not (labels,
// annotations, the grace period, nodeSelector) reaches the running pods in
// place, as an edit of a Pod manifest does.
func templateHash(w spec.Workload) string {
	p := spec.TemplatePod(w)
	parts := []string{spec.SandboxHash(p)}
	for i := range p.Spec.InitContainers {
		parts = append(parts, spec.ContainerHash(p, &p.Spec.InitContainers[i]))
	}
	for i := range p.Spec.Containers {
		parts = append(parts, spec.ContainerHash(p, &p.Spec.Containers[i]))
	}
	h := fnv.New32a()
	b, _ := json.Marshal(parts)
	h.Write(b)
	return safeEncode(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// specHash identifies a Job's whole spec: editing it makes a new run.
func specHash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("workload: hashing %T: %v", v, err))
	}
	h := fnv.New64a()
	h.Write(b)
	return safeEncode(strconv.FormatUint(h.Sum64(), 10))
}
