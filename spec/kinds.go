package spec

import (
	"fmt"
	"slices"
	"strings"
)

// What a manifest directory may hold besides the kinds the agent runs. A
// Git repository made for a cluster holds Services, Ingresses, RBAC and
// the like beside its workloads: those are skipped with a notice (one
// event, one log line, `validate` info), so one repository serves a cluster
// and a node alike. Kinds whose absence would change what the pods do or
// what protects them (NetworkPolicy, LimitRange, ResourceQuota) and
// workload kinds the agent does not run are refused instead: skipping them
// would be silent in effect.

// skippedKinds are built-in kinds skipped with a notice, by API group
// ("" is core), with why one node has no use for them.
var skippedKinds = map[string]map[string]string{
	"": {
		"Service":          "pods here publish ports with hostPort and reach each other by pod IP; there is no kube-proxy or cluster DNS",
		"ServiceAccount":   "there is no API server to issue its tokens",
		"Namespace":        "namespaces need no declaration here: a pod's namespace is part of its name",
		"Endpoints":        "there are no Services to route to",
		"PersistentVolume": "there is no volume binding on one node",
		"PodTemplate":      "templates are written inside the workloads here",
		"Event":            "events are recorded by the agent itself",
	},
	"networking.k8s.io": {
		"Ingress":      "there is no ingress controller on one node; publish with hostPort",
		"IngressClass": "there is no ingress controller on one node",
		"ServiceCIDR":  "there are no Services on one node",
		"IPAddress":    "there are no Services on one node",
	},
	"gateway.networking.k8s.io": {},
	"rbac.authorization.k8s.io": {
		"Role": "there is no API server here whose access it could grant", "RoleBinding": "there is no API server here whose access it could grant",
		"ClusterRole": "there is no API server here whose access it could grant", "ClusterRoleBinding": "there is no API server here whose access it could grant",
	},
	"policy": {
		"PodDisruptionBudget": "nothing evicts pods on one node",
	},
	"autoscaling": {
		"HorizontalPodAutoscaler": "there is no autoscaler on one node; set replicas",
	},
	"scheduling.k8s.io": {
		"PriorityClass": "there is no scheduling queue or preemption on one node",
	},
	"storage.k8s.io": {
		"StorageClass": "there is no volume provisioning on one node", "CSIDriver": "there are no CSI drivers here",
		"CSINode": "there are no CSI drivers here", "VolumeAttachment": "there are no CSI drivers here",
		"CSIStorageCapacity": "there are no CSI drivers here", "VolumeAttributesClass": "there is no volume provisioning on one node",
	},
	"discovery.k8s.io": {
		"EndpointSlice": "there are no Services to route to",
	},
	"coordination.k8s.io": {
		"Lease": "there is no leader election between controllers here",
	},
	"apps": {
		"ControllerRevision": "workload revisions are kept by the agent's controllers",
	},
	"node.k8s.io": {
		"RuntimeClass": "pods here always use the agent's own runtime",
	},
	"apiextensions.k8s.io": {
		"CustomResourceDefinition": "there is no API server to serve custom resources",
	},
	"admissionregistration.k8s.io": {
		"ValidatingWebhookConfiguration": "there is no API server to call webhooks", "MutatingWebhookConfiguration": "there is no API server to call webhooks",
		"ValidatingAdmissionPolicy": "there is no API server to apply admission policies", "ValidatingAdmissionPolicyBinding": "there is no API server to apply admission policies",
		"MutatingAdmissionPolicy": "there is no API server to apply admission policies", "MutatingAdmissionPolicyBinding": "there is no API server to apply admission policies",
	},
	"certificates.k8s.io": {
		"CertificateSigningRequest": "there is no certificate signer here", "ClusterTrustBundle": "there is no API server to serve trust bundles",
	},
	"apiregistration.k8s.io": {
		"APIService": "there is no API server to aggregate",
	},
	"flowcontrol.apiserver.k8s.io": {
		"FlowSchema": "there is no API server here", "PriorityLevelConfiguration": "there is no API server here",
	},
}

// refusedKinds are built-in kinds refused by name, with a remedy.
var refusedKinds = map[string]map[string]string{
	"": {
		"ReplicationController": "use a Deployment (apps/v1), which pelagos-agent runs",
		"LimitRange":            "its defaults would not be applied to pods here; write the resources into each pod",
		"ResourceQuota":         "it would not be enforced here; limit what runs with --max-pods and each pod's resources",
		"List":                  "write each object as its own document, separated by ---",
	},
	"apps": {
		"ReplicaSet": "write a Deployment with the same template, which pelagos-agent runs",
	},
	"batch": {
		"CronJob": "run the Job from a systemd timer (copy it into the manifest directory); CronJobs are not run here",
	},
	"networking.k8s.io": {
		"NetworkPolicy": "it would not be enforced: pods on the agent's bridge reach each other; isolate them with the host's firewall",
	},
}

// builtinGroup reports whether an API group is Kubernetes' own: core, the
// unqualified groups and *.k8s.io.
func builtinGroup(group string) bool {
	return group == "" || !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io")
}

func groupOf(apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return g
	}
	return ""
}

// runKinds are the kinds the agent runs or consumes, for messages.
var runKinds = []string{KindPod, KindConfigMap, KindSecret, KindPersistentVolumeClaim, KindDeployment, KindStatefulSet, KindDaemonSet, KindJob}

// kindVerdict decides about a kind the agent does not run: skipped with a
// notice (skip is the notice), or refused (refusal is the message).
func kindVerdict(apiVersion, kind string) (skip, refusal string) {
	group := groupOf(apiVersion)
	if why, ok := skippedKinds[group][kind]; ok {
		return fmt.Sprintf("%s is skipped: one node has no use for it (%s); it stays valid for a cluster", kind, why), ""
	}
	if _, known := skippedKinds[group]; known && group == "gateway.networking.k8s.io" {
		return fmt.Sprintf("%s (%s) is skipped: there is no gateway controller on one node; it stays valid for a cluster", kind, apiVersion), ""
	}
	if why, ok := refusedKinds[group][kind]; ok {
		return "", fmt.Sprintf("%q is not supported by pelagos-agent: %s", kind, why)
	}
	if !builtinGroup(group) {
		return fmt.Sprintf("%s (%s) is skipped: it is a custom resource, and the operator that acts on it does not run on one node", kind, apiVersion), ""
	}
	msg := fmt.Sprintf("%q is not a kind pelagos-agent runs: use one of %s", kind, strings.Join(runKinds, ", "))
	all := slices.Clone(runKinds)
	for _, kinds := range skippedKinds {
		for k := range kinds {
			all = append(all, k)
		}
	}
	if s := suggest(kind, all); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return "", msg
}
