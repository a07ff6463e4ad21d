package spec

import (
	"cmp"
	"reflect"
	"slices"
	"sort"
)

// The status of every Pod field, for docs/manifest.md's field table
// (TestFieldTableDoc keeps the two equal, so the page cannot drift from
// the code). The table is derived from the model: a modelled field is
// supported, a field in unsupportedFields refused, one in ignoredFields
// accepted and ignored; fieldStatus names the exceptions.

// Field statuses.
const (
	FieldSupported = "supported"
	// FieldEvaluated: read against the node (fleet semantics).
	FieldEvaluated = "evaluated"
	// FieldWarned: accepted with a warning; it has no effect here.
	FieldWarned  = "accepted with a warning"
	FieldRefused = "refused"
	// FieldIgnored: accepted and dropped (server-set metadata, status).
	FieldIgnored = "ignored"
	// FieldAccepted: accepted; what it means on one node is in the note.
	FieldAccepted = "accepted"
)

// FieldRow is one line of the field table.
type FieldRow struct {
	Path   string // spec.containers[].image
	Status string
	Note   string
}

type fieldException struct{ status, note string }

// fieldStatus are the fields whose status is not what the model implies,
// or that need a word. Keys are table paths.
var fieldStatus = map[string]fieldException{
	"spec.nodeSelector":          {FieldEvaluated, "matched against the node's labels (--node-labels and the well-known ones); a pod that does not match is not run here"},
	"spec.nodeName":              {FieldEvaluated, "must be this node's name (its host name, lower-cased)"},
	"spec.affinity":              {FieldEvaluated, "required node affinity is evaluated; the rest is accepted with a warning"},
	"spec.affinity.nodeAffinity": {FieldEvaluated, ""},
	"spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution": {FieldEvaluated,
		"every operator (In, NotIn, Exists, DoesNotExist, Gt, Lt) and matchFields on metadata.name"},
	"spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[]": {FieldWarned, "no choice of node on one node"},
	"spec.affinity.podAffinity":                         {FieldWarned, "no other nodes to place pods on"},
	"spec.affinity.podAntiAffinity":                     {FieldWarned, "no other nodes to place pods on"},
	"spec.tolerations[]":                                {FieldEvaluated, "against the node's taints (--node-taints): NoSchedule and NoExecute must be tolerated; Equal and Exists"},
	"spec.topologySpreadConstraints[]":                  {FieldWarned, "one node: nothing to spread over"},
	"spec.priority":                                     {FieldWarned, "no scheduling queue, no preemption"},
	"spec.priorityClassName":                            {FieldWarned, "no scheduling queue, no preemption"},
	"spec.preemptionPolicy":                             {FieldWarned, "no scheduling queue, no preemption"},
	"spec.schedulerName":                                {FieldWarned, "default-scheduler is silent; another name is accepted with a warning"},
	"spec.enableServiceLinks":                           {FieldAccepted, "no effect: there are no Services on one node"},
	"spec.automountServiceAccountToken":                 {FieldSupported, "false only: no API server issues tokens (true is refused)"},
	"spec.containers[].tty":                             {FieldSupported, "false only: true is refused until terminals can be attached"},
	"spec.containers[].stdin":                           {FieldSupported, "false only: true is refused until stdin can be attached"},
	"spec.containers[].stdinOnce":                       {FieldSupported, "false only"},
	"spec.containers[].restartPolicy":                   {FieldSupported, "on init containers: Always makes a native sidecar; refused on app containers"},
	"spec.containers[].resizePolicy[]":                  {FieldAccepted, "no in-place resize: a change of resources restarts the container whatever it says"},
	"spec.initContainers[]":                             {FieldSupported, "the fields of spec.containers[]; probes and lifecycle only on native sidecars"},
	"spec.containers[].resources.limits":                {FieldSupported, "cpu, memory, ephemeral-storage; other resources refused"},
	"spec.containers[].resources.requests":              {FieldSupported, "cpu, memory, ephemeral-storage; other resources refused"},
	"spec.resources":                                    {FieldSupported, "pod-level (KEP-2837): the pod cgroup's limits, shared by its containers; a change recreates the pod"},
	"spec.resources.limits":                             {FieldSupported, "cpu, memory; at least each container's limit; hugepages refused"},
	"spec.resources.requests":                           {FieldSupported, "cpu, memory; at least what the containers request together; defaults as in Kubernetes; decide the QoS class"},
	"spec.securityContext.appArmorProfile":              {FieldSupported, "RuntimeDefault and Unconfined (no profile is loaded); Localhost refused"},
	"spec.containers[].securityContext.appArmorProfile": {FieldSupported, "RuntimeDefault and Unconfined (no profile is loaded); Localhost refused"},
	"spec.volumes[].emptyDir.sizeLimit":                 {FieldSupported, "Memory: the tmpfs size; on disk: a quota where the filesystem enforces one, else advisory"},
	"spec.volumes[].persistentVolumeClaim.claimName":    {FieldSupported, "a node-local named volume, kept when the pod goes"},
	"spec.volumes[].image":                              {FieldSupported, "the image's content, read-only, nosuid, nodev; see Image volumes"},
}

// FieldTable lists every field of a Pod with its status, in a stable
// order (depth first, fields by name).
func FieldTable() []FieldRow {
	var rows []FieldRow
	var walk func(t reflect.Type, prefix string, depth int)
	walk = func(t reflect.Type, prefix string, depth int) {
		si := infoFor(t)
		type entry struct {
			name  string
			ft    reflect.Type
			state string
		}
		var es []entry
		for _, n := range si.names {
			es = append(es, entry{n, si.fields[n], FieldSupported})
		}
		for n := range si.unsupported {
			es = append(es, entry{n, nil, FieldRefused})
		}
		for n := range si.ignored {
			es = append(es, entry{n, nil, FieldIgnored})
		}
		sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
		for _, e := range es {
			if prefix == "" && (e.name == "apiVersion" || e.name == "kind") {
				continue
			}
			path := e.name
			if prefix != "" {
				path = prefix + "." + e.name
			}
			ft := e.ft
			list := false
			for ft != nil && (ft.Kind() == reflect.Pointer || (ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.Uint8)) {
				if ft.Kind() == reflect.Slice {
					list = true
				}
				ft = ft.Elem()
			}
			if list {
				path += "[]"
			}
			row := FieldRow{Path: path, Status: e.state}
			switch e.state {
			case FieldRefused:
				key := t.Name() + "." + e.name
				row.Note = cmp.Or(unsupportedWhy[key], unsupportedWhyVolumes[key], "valid Kubernetes, not implemented here")
			case FieldIgnored:
				row.Note = "set by an API server; dropped"
			}
			if ex, ok := fieldStatus[path]; ok {
				row.Status, row.Note = ex.status, ex.note
			}
			rows = append(rows, row)
			if path == "spec.initContainers[]" || (row.Status != FieldSupported && row.Status != FieldEvaluated) || ft == nil {
				continue // init containers have the fields of containers
			}
			if ft.Kind() == reflect.Struct && ft != quantityType && ft != intOrStringType && depth < 12 {
				walk(ft, path, depth+1)
			}
		}
	}
	walk(reflect.TypeFor[Pod](), "", 0)
	return slices.Clip(rows)
}
