package spec

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Strict decoding: before the JSON form of a document is unmarshalled into
// our types, checkValue walks it against those types and reports, with full
// field paths and all at once, every unknown field, every Kubernetes field we
// do not support, every value of the wrong JSON type, every invalid quantity
// and every string holding a NUL. encoding/json alone would stop at the first
// problem and name fields without list indexes.

// unsupportedFields lists, per Go type, the Kubernetes v1 fields that are
// valid in Kubernetes but not implemented here, alpha and beta fields of
// the current release included (TestEveryKubernetesFieldIsKnown). They get
// ErrUnsupported, not ErrUnknownField, so a user knows the manifest is fine
// for a cluster.
var unsupportedFields = map[reflect.Type][]string{
	reflect.TypeFor[ObjectMeta](): {"generateName", "ownerReferences", "finalizers", "deletionTimestamp",
		"deletionGracePeriodSeconds"},
	reflect.TypeFor[PodSpec](): {"activeDeadlineSeconds",
		"ephemeralContainers", "evictionResponders", "hostUsers", "hostnameOverride",
		"os", "overhead", "readinessGates", "resourceClaims",
		"runtimeClassName", "schedulingGates", "schedulingGroup", "serviceAccount",
		"serviceAccountName", "setHostnameAsFQDN"},
	reflect.TypeFor[Container]():            {"restartPolicyRules", "volumeDevices"},
	reflect.TypeFor[EnvVarSource]():         {"fileKeyRef"},
	reflect.TypeFor[ResourceRequirements](): {"claims"},
	reflect.TypeFor[VolumeMount]():          {"mountPropagation", "subPathExpr", "recursiveReadOnly", "bindMountOptions"},
	reflect.TypeFor[Lifecycle]():            {"stopSignal"},
	reflect.TypeFor[LifecycleHandler]():     {"tcpSocket"},
	reflect.TypeFor[HTTPGetAction]():        {"protocol"},
	reflect.TypeFor[GRPCAction]():           {"mode"},
	reflect.TypeFor[SecurityContext]():      {"seLinuxOptions", "windowsOptions", "procMount"},
	reflect.TypeFor[PodSecurityContext](): {"seLinuxOptions", "windowsOptions", "fsGroupChangePolicy",
		"seLinuxChangePolicy"},
	reflect.TypeFor[EmptyDirVolumeSource]():    {"mode"},
	reflect.TypeFor[KeyToPath]():               {"user"},
	reflect.TypeFor[SecretVolumeSource]():      {"defaultUser"},
	reflect.TypeFor[ConfigMapVolumeSource]():   {"defaultUser"},
	reflect.TypeFor[DownwardAPIVolumeSource](): {"defaultUser"},
	reflect.TypeFor[DownwardAPIVolumeFile]():   {"user"},
	reflect.TypeFor[ProjectedVolumeSource]():   {"defaultUser"},
	reflect.TypeFor[VolumeProjection]():        {"serviceAccountToken", "clusterTrustBundle", "podCertificate"},
	reflect.TypeFor[Volume](): {"awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
		"ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs",
		"iscsi", "nfs", "photonPersistentDisk", "portworxVolume",
		"quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume"},
	reflect.TypeFor[PersistentVolumeClaimSpec](): {"selector", "volumeName", "dataSource", "dataSourceRef",
		"volumeAttributesClassName"},
	reflect.TypeFor[VolumeResourceRequirements](): {"claims"},
}

// Reasons and one-line remedies for refused fields, keyed "Type.field";
// a field without one gets the generic message.
const (
	noScheduler  = "there is no scheduler on one node, so it would have no effect; delete this line"
	noAPIServer  = "there is no API server to issue service-account tokens; delete this line"
	noController = "there are no controllers on one node; delete this line"
)

var unsupportedWhy = map[string]string{
	"ObjectMeta.generateName":                "a manifest must name its pod; set metadata.name instead",
	"ObjectMeta.ownerReferences":             noController,
	"ObjectMeta.finalizers":                  noController,
	"PodSpec.schedulingGroup":                noScheduler,
	"PodSpec.schedulingGates":                "the pod would wait for a scheduler that does not exist here; delete this block to run it",
	"PodSpec.serviceAccountName":             noAPIServer,
	"PodSpec.serviceAccount":                 noAPIServer,
	"PodSpec.os":                             "pods here always run on Linux; delete this block",
	"EnvVarSource.fileKeyRef":                "use `valueFrom.configMapKeyRef` with a ConfigMap in the manifest directory",
	"Volume.gitRepo":                         "clone the repository in an init container into an emptyDir volume",
	"VolumeMount.mountPropagation":           "mounts are never propagated here (None); delete this line",
	"LifecycleHandler.tcpSocket":             "Kubernetes never runs a tcpSocket hook either; use exec, httpGet or sleep",
	"SecurityContext.seLinuxOptions":         seLinuxRefusal,
	"PodSecurityContext.seLinuxOptions":      seLinuxRefusal,
	"PodSecurityContext.seLinuxChangePolicy": seLinuxRefusal,
	"SecurityContext.windowsOptions":         "Windows options have no effect on Linux; delete this block",
	"PodSecurityContext.windowsOptions":      "Windows options have no effect on Linux; delete this block",
	"SecurityContext.procMount":              "the runtime always masks /proc (Default); delete this line",
	"PodSecurityContext.fsGroupChangePolicy": "volume files get fsGroup's ownership as they are written; delete this line",
}

// unsupportedWhyVolumes are the reasons for the volume sources and claim
// fields that stay refused beside the supported ones.
var unsupportedWhyVolumes = map[string]string{
	"Volume.ephemeral":                        "use a persistentVolumeClaim (a named volume of this node that outlives the pod) or an emptyDir (one that goes with it)",
	"VolumeProjection.serviceAccountToken":    "the serviceAccountToken source needs an API server to issue the token; delete this source (in a pod exported from a cluster, delete the whole kube-api-access-* volume and its volumeMounts)",
	"VolumeProjection.clusterTrustBundle":     "the clusterTrustBundle source needs an API server that holds ClusterTrustBundle objects; put the certificates in a ConfigMap and project it with a configMap source",
	"VolumeProjection.podCertificate":         "the podCertificate source needs an API server and a signer to issue the certificate; put the certificate in a Secret and project it with a secret source",
	"PersistentVolumeClaimSpec.selector":      "a claim here is a directory of this node, never bound to a PersistentVolume; delete this block",
	"PersistentVolumeClaimSpec.volumeName":    "a claim here is a directory of this node, never bound to a PersistentVolume; delete this line",
	"PersistentVolumeClaimSpec.dataSource":    "a claim here starts as an empty directory; fill it from an init container instead",
	"PersistentVolumeClaimSpec.dataSourceRef": "a claim here starts as an empty directory; fill it from an init container instead",
}

// unsupportedMessage is the refusal of one field of type t.
func unsupportedMessage(t reflect.Type, field string) string {
	key := t.Name() + "." + field
	if why := cmp.Or(unsupportedWhy[key], unsupportedWhyVolumes[key]); why != "" {
		return "field is not supported by pelagos-agent: " + why
	}
	return "field is not supported by pelagos-agent (it is valid in Kubernetes; see docs/manifest.md)"
}

// ignoredFields are accepted and dropped: server-set metadata that
// `kubectl get -o yaml` prints and a pod's status.
var ignoredFields = map[reflect.Type][]string{
	reflect.TypeFor[ObjectMeta](): {"uid", "resourceVersion", "creationTimestamp", "generation", "selfLink",
		"managedFields"},
	reflect.TypeFor[Pod]():                   {"status"},
	reflect.TypeFor[PersistentVolumeClaim](): {"status"},
}

var (
	quantityType    = reflect.TypeFor[resource.Quantity]()
	intOrStringType = reflect.TypeFor[IntOrString]()
)

// UnsupportedFields returns the refused Kubernetes field names per object,
// keyed by Go type name, for documentation and tests.
func UnsupportedFields() map[string][]string {
	out := map[string][]string{}
	for t, fs := range unsupportedFields {
		out[t.Name()] = append([]string(nil), fs...)
	}
	return out
}

type structInfo struct {
	fields      map[string]reflect.Type // json name -> type, embedded structs flattened
	names       []string
	unsupported map[string]string // field -> refusal message
	ignored     map[string]bool
	ranges      map[string]string // field -> `range` tag parameter
}

var structCache sync.Map // reflect.Type -> *structInfo

func infoFor(t reflect.Type) *structInfo {
	if v, ok := structCache.Load(t); ok {
		return v.(*structInfo)
	}
	si := &structInfo{fields: map[string]reflect.Type{}, unsupported: map[string]string{}, ignored: map[string]bool{},
		ranges: map[string]string{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for _, f := range unsupportedFields[t] {
			si.unsupported[f] = unsupportedMessage(t, f)
		}
		for _, f := range ignoredFields[t] {
			si.ignored[f] = true
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if tag == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				add(f.Type)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			si.fields[name] = f.Type
			si.names = append(si.names, name)
			for _, rule := range strings.Split(f.Tag.Get("validate"), ",") {
				if r, ok := strings.CutPrefix(rule, "range="); ok {
					si.ranges[name] = r
				}
			}
		}
	}
	add(t)
	sort.Strings(si.names)
	structCache.Store(t, si)
	return si
}

func reflectTypeOf(v any) reflect.Type { return reflect.TypeOf(v) }

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// checkValue walks v (decoded with UseNumber) against type t and reports
// every problem. It returns false when v cannot be decoded into t; the
// caller then prunes it from the tree, so the rest of the document still
// decodes and validates (one bad value must not hide the other errors).
// rng is the field's `range` tag parameter, for messages.
func (d *docDecoder) checkValue(v any, t reflect.Type, p fieldPath, rng string) bool {
	if v == nil {
		return true // null is the zero value, as in Kubernetes
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case quantityType:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			d.add(p, ErrInvalid, "must be a quantity such as 500m or 64Mi, not %s", jsonKind(v))
			return false
		}
		if _, err := resource.ParseQuantity(s); err != nil {
			d.add(p, ErrInvalid, "%q is not a valid quantity", s)
			return false
		}
		return true
	case intOrStringType:
		switch x := v.(type) {
		case string:
			d.checkString(x, p)
			return true
		case json.Number:
			if _, err := strconv.ParseInt(x.String(), 10, 32); err != nil {
				d.add(p, ErrInvalid, "%s is out of range: must be a port number 1..65535 or a port name", x)
				return false
			}
			return true
		}
		d.add(p, ErrInvalid, "must be a number or a name, not %s", jsonKind(v))
		return false
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(p, ErrInvalid, "must be an object, not %s", jsonKind(v))
			return false
		}
		si := infoFor(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fp := p.Field(k)
			ft, known := si.fields[k]
			switch {
			case known:
				if !d.checkValue(m[k], ft, fp, si.ranges[k]) {
					delete(m, k)
				}
				continue
			case si.ignored[k]:
			case si.unsupported[k] != "":
				d.add(fp, ErrUnsupported, "%s", si.unsupported[k])
			default:
				d.checkString(k, p)
				if s := suggest(k, si.names); s != "" {
					d.add(fp, ErrUnknownField, "unknown field %q (did you mean %q?)", k, s)
					// The field it is a typo of is missing; saying so again
					// ("image: is required") would be a cascade.
					d.typoOf = append(d.typoOf, p.Field(s).String())
				} else {
					d.add(fp, ErrUnknownField, "unknown field %q", k)
				}
			}
			delete(m, k)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s, ok := v.(string)
			if !ok {
				d.add(p, ErrInvalid, "must be a base64 string, not %s", jsonKind(v))
				return false
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				d.add(p, ErrInvalid, "is not valid base64: %v", err)
				return false
			}
			return true
		}
		l, ok := v.([]any)
		if !ok {
			d.add(p, ErrInvalid, "must be a list, not %s", jsonKind(v))
			return false
		}
		for i, e := range l {
			if !d.checkValue(e, t.Elem(), p.Index(i), rng) {
				l[i] = nil
			}
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(p, ErrInvalid, "must be an object, not %s", jsonKind(v))
			return false
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			d.checkString(k, p)
			if !d.checkValue(m[k], t.Elem(), p.Key(k), rng) {
				delete(m, k)
			}
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.add(p, ErrInvalid, "must be a string, not %s (quote it)", jsonKind(v))
			return false
		}
		d.checkString(s, p)
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			d.add(p, ErrInvalid, "must be true or false, not %s", jsonKind(v))
			return false
		}
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			d.add(p, ErrInvalid, "must be an integer, not %s", jsonKind(v))
			return false
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			if errors.Is(err, strconv.ErrRange) {
				if rng == "" {
					rng = fmt.Sprintf("%d:%d", int64(-1)<<(t.Bits()-1), uint64(1)<<(t.Bits()-1)-1)
				}
				d.add(p, ErrInvalid, "%s is out of range: must be %s", n, rangeText(rng))
			} else {
				d.add(p, ErrInvalid, "must be an integer, not %s", n)
			}
			return false
		}
	default:
		d.add(p, ErrInvalid, "cannot be decoded into %s", t)
		return false
	}
	return true
}

func (d *docDecoder) checkString(s string, p fieldPath) {
	if strings.IndexByte(s, 0) >= 0 {
		d.add(p, ErrSyntax, "contains a NUL character")
	} else if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
		d.add(p, ErrSyntax, "contains invalid UTF-8")
	}
}

// suggest returns the known name closest to a misspelled one, if any is
// close enough to be a likely typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(name), strings.ToLower(k)); dist < bestD {
			best, bestD = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
