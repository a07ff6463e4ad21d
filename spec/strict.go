package spec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
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
// valid in Kubernetes but not implemented here. They get ErrUnsupported, not
// ErrUnknownField, so a user knows the manifest is fine for a cluster.
var unsupportedFields = map[reflect.Type][]string{
	reflect.TypeFor[ObjectMeta](): {"generateName", "ownerReferences", "finalizers", "deletionTimestamp",
		"deletionGracePeriodSeconds"},
	reflect.TypeFor[PodSpec](): {"activeDeadlineSeconds", "affinity", "automountServiceAccountToken",
		"enableServiceLinks", "ephemeralContainers", "hostUsers", "hostnameOverride", "nodeName", "os", "overhead",
		"preemptionPolicy", "priority", "priorityClassName", "readinessGates", "resourceClaims", "resources",
		"runtimeClassName", "schedulerName", "schedulingGates", "serviceAccount", "serviceAccountName",
		"setHostnameAsFQDN", "tolerations", "topologySpreadConstraints"},
	reflect.TypeFor[Container](): {"resizePolicy", "restartPolicy", "restartPolicyRules", "stdinOnce",
		"volumeDevices"},
	reflect.TypeFor[EnvVarSource]():         {"resourceFieldRef", "fileKeyRef"},
	reflect.TypeFor[ResourceRequirements](): {"claims"},
	reflect.TypeFor[VolumeMount]():          {"mountPropagation", "subPathExpr", "recursiveReadOnly"},
	reflect.TypeFor[Lifecycle]():            {"stopSignal"},
	reflect.TypeFor[LifecycleHandler]():     {"tcpSocket"},
	reflect.TypeFor[SecurityContext]():      {"seLinuxOptions", "windowsOptions", "procMount", "appArmorProfile"},
	reflect.TypeFor[PodSecurityContext](): {"seLinuxOptions", "windowsOptions", "fsGroupChangePolicy",
		"supplementalGroupsPolicy", "appArmorProfile", "seLinuxChangePolicy"},
	reflect.TypeFor[Volume](): {"awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
		"downwardAPI", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk", "gitRepo", "glusterfs",
		"image", "iscsi", "nfs", "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected",
		"quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume"},
}

// ignoredFields are accepted and dropped: server-set metadata that
// `kubectl get -o yaml` prints and a pod's status.
var ignoredFields = map[reflect.Type][]string{
	reflect.TypeFor[ObjectMeta](): {"uid", "resourceVersion", "creationTimestamp", "generation", "selfLink",
		"managedFields"},
	reflect.TypeFor[Pod](): {"status"},
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
	unsupported map[string]bool
	ignored     map[string]bool
}

var structCache sync.Map // reflect.Type -> *structInfo

func infoFor(t reflect.Type) *structInfo {
	if v, ok := structCache.Load(t); ok {
		return v.(*structInfo)
	}
	si := &structInfo{fields: map[string]reflect.Type{}, unsupported: map[string]bool{}, ignored: map[string]bool{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for _, f := range unsupportedFields[t] {
			si.unsupported[f] = true
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

// checkValue walks v (decoded with UseNumber) against type t.
func (d *docDecoder) checkValue(v any, t reflect.Type, p fieldPath) {
	if v == nil {
		return // null is the zero value, as in Kubernetes
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
			return
		}
		if _, err := resource.ParseQuantity(s); err != nil {
			d.add(p, ErrInvalid, "%q is not a valid quantity", s)
		}
		return
	case intOrStringType:
		switch x := v.(type) {
		case string:
			d.checkString(x, p)
		case json.Number:
			if n, err := strconv.ParseInt(x.String(), 10, 32); err != nil || n < math.MinInt32 {
				d.add(p, ErrInvalid, "%s is not a 32-bit integer", x)
			}
		default:
			d.add(p, ErrInvalid, "must be a number or a name, not %s", jsonKind(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(p, ErrInvalid, "must be an object, not %s", jsonKind(v))
			return
		}
		si := infoFor(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fp := p.Field(k)
			ft, known := si.fields[k]
			switch {
			case known:
				d.checkValue(m[k], ft, fp)
			case si.ignored[k]:
			case si.unsupported[k]:
				d.add(fp, ErrUnsupported, "field is not supported by pelagos-agent (it is valid in Kubernetes; see docs/manifest.md)")
			default:
				d.checkString(k, p)
				if s := suggest(k, si.names); s != "" {
					d.add(fp, ErrUnknownField, "unknown field %q (did you mean %q?)", k, s)
				} else {
					d.add(fp, ErrUnknownField, "unknown field %q", k)
				}
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			s, ok := v.(string)
			if !ok {
				d.add(p, ErrInvalid, "must be a base64 string, not %s", jsonKind(v))
				return
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				d.add(p, ErrInvalid, "is not valid base64: %v", err)
			}
			return
		}
		l, ok := v.([]any)
		if !ok {
			d.add(p, ErrInvalid, "must be a list, not %s", jsonKind(v))
			return
		}
		for i, e := range l {
			d.checkValue(e, t.Elem(), p.Index(i))
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.add(p, ErrInvalid, "must be an object, not %s", jsonKind(v))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.checkString(k, p)
			d.checkValue(m[k], t.Elem(), p.Key(k))
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.add(p, ErrInvalid, "must be a string, not %s (quote it)", jsonKind(v))
			return
		}
		d.checkString(s, p)
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			d.add(p, ErrInvalid, "must be true or false, not %s", jsonKind(v))
		}
	case reflect.Int32, reflect.Int64, reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			d.add(p, ErrInvalid, "must be an integer, not %s", jsonKind(v))
			return
		}
		if _, err := strconv.ParseInt(n.String(), 10, t.Bits()); err != nil {
			d.add(p, ErrInvalid, "%s is not a %d-bit integer", n, t.Bits())
		}
	default:
		d.add(p, ErrInvalid, "cannot be decoded into %s", t)
	}
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
