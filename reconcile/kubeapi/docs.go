package kubeapi

import (
	"encoding/json"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/pelagos-containers/pelagos-agent/spec"
	"github.com/pelagos-containers/pelagos-agent/spec/manifest"
)

// docs serves what the manifest directory defines besides pods:
// ConfigMaps, Secrets, and the namespaces everything lives in.
type docs struct {
	s                               *Server
	configMaps, secrets, namespaces *collection

	nsMu sync.Mutex // serialises namespace refreshes
	mu   sync.Mutex
	snap *manifest.Snapshot
	// born remembers when each object was first seen (its file's mtime
	// then), so its age does not move with every reload.
	born map[string]time.Time
}

func newDocs(s *Server) *docs {
	return &docs{s: s, configMaps: newCollection(s.vs), secrets: newCollection(s.vs), namespaces: newCollection(s.vs),
		born: map[string]time.Time{}}
}

// SetSnapshot hands the facade each load of the manifest directory (the
// agent's watcher calls it with what it gives the reconciler).
func (s *Server) SetSnapshot(snap *manifest.Snapshot) {
	if snap == nil {
		return
	}
	s.docs.mu.Lock()
	s.docs.snap = snap
	s.docs.mu.Unlock()
	if s.docs.configMaps.watching() || s.docs.secrets.watching() {
		s.docs.refresh()
	}
	if s.docs.namespaces.watching() {
		s.docs.refreshNamespaces()
	}
	if s.cfg.Writes != nil {
		s.cfg.Writes.loaded(snap)
	}
}

func (d *docs) snapshot() *manifest.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snap
}

func (d *docs) bornLocked(kind, key, file string) metav1.Time {
	k := kind + "/" + key
	t, ok := d.born[k]
	if !ok {
		t = d.s.start
		if st, err := os.Stat(file); err == nil && st.ModTime().Before(t) {
			t = st.ModTime()
		}
		d.born[k] = t
	}
	return metav1.NewTime(t)
}

func (d *docs) uid(kind, ns, name string) types.UID {
	return types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+d.s.cfg.NodeName+"/"+kind+"/"+ns+"/"+name)).String())
}

// refresh rebuilds the ConfigMaps and Secrets from the last snapshot. The
// lock is held to the end, so two refreshes cannot store out of order.
func (d *docs) refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	snap := d.snap
	var cms, secrets []object
	if snap != nil {
		for k, src := range snap.ConfigMaps {
			cms = append(cms, d.configMapLocked(k, src))
		}
		for k, src := range snap.Secrets {
			secrets = append(secrets, d.secretLocked(k, src))
		}
	}
	d.configMaps.replace(cms)
	d.secrets.replace(secrets)
}

func nsOr(ns string) string {
	if ns == "" {
		return spec.DefaultNamespace
	}
	return ns
}

func (d *docs) configMapLocked(k spec.PodKey, src *manifest.ConfigMapSource) *corev1.ConfigMap {
	out := &corev1.ConfigMap{}
	if b, err := json.Marshal(src.ConfigMap); err == nil {
		_ = json.Unmarshal(b, out)
	}
	out.TypeMeta = metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}
	out.Namespace = nsOr(k.Namespace)
	out.UID = d.uid("configmaps", out.Namespace, out.Name)
	out.CreationTimestamp = d.bornLocked("configmaps", out.Namespace+"/"+out.Name, src.File)
	setAnnotation(&out.ObjectMeta, AnnotationSourceFile, src.File)
	return out
}

func (d *docs) secretLocked(k spec.PodKey, src *manifest.SecretSource) *corev1.Secret {
	out := &corev1.Secret{}
	// stringData is already merged into data by the loader.
	if b, err := json.Marshal(src.Secret); err == nil {
		_ = json.Unmarshal(b, out)
	}
	out.StringData = nil
	out.TypeMeta = metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"}
	out.Namespace = nsOr(k.Namespace)
	out.UID = d.uid("secrets", out.Namespace, out.Name)
	out.CreationTimestamp = d.bornLocked("secrets", out.Namespace+"/"+out.Name, src.File)
	if out.Type == "" {
		out.Type = corev1.SecretTypeOpaque
	}
	setAnnotation(&out.ObjectMeta, AnnotationSourceFile, src.File)
	return out
}

func setAnnotation(m *metav1.ObjectMeta, k, v string) {
	if v == "" {
		return
	}
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[k] = v
}

// refreshNamespaces rebuilds the namespaces: "default", the node lease's,
// and every namespace a manifest or a running pod names.
func (d *docs) refreshNamespaces() {
	d.nsMu.Lock()
	defer d.nsMu.Unlock()
	names := map[string]bool{metav1.NamespaceDefault: true, NodeLeaseNamespace: true}
	if snap := d.snapshot(); snap != nil {
		for k := range snap.Pods {
			names[nsOr(k.Namespace)] = true
		}
		for k := range snap.ConfigMaps {
			names[nsOr(k.Namespace)] = true
		}
		for k := range snap.Secrets {
			names[nsOr(k.Namespace)] = true
		}
	}
	for _, p := range d.s.cfg.Backend.Pods() {
		names[p.Metadata.Namespace] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	objs := make([]object, 0, len(sorted))
	for _, n := range sorted {
		objs = append(objs, &corev1.Namespace{
			TypeMeta: metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Name: n, UID: d.uid("namespaces", "", n), CreationTimestamp: metav1.NewTime(d.s.start),
				Labels: map[string]string{"kubernetes.io/metadata.name": n}},
			Spec:   corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
			Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
	}
	d.namespaces.replace(objs)
}
