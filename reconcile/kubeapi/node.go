package kubeapi

import (
	"context"
	"maps"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	nodeid "github.com/pelagos-containers/pelagos-agent/spec/node"
)

// HostSource describes the machine the agent runs on. cmd/pelagos-agent
// reads it from /proc, /etc/os-release and the state root's file system.
type HostSource interface {
	HostInfo(ctx context.Context) (HostInfo, error)
}

// HostInfo is one reading of the machine.
type HostInfo struct {
	InternalIP string // the address of the default route's interface

	CPUs             int
	MemoryBytes      int64
	MemoryAvailable  int64 // MemAvailable
	StorageBytes     int64 // the state root's file system
	StorageAvailable int64
	InodesTotal      uint64
	InodesFree       uint64
	PIDsMax          int64 // the lower of pid_max and threads-max
	PIDsInUse        int64

	KernelVersion string
	OSImage       string // PRETTY_NAME of /etc/os-release
	MachineID     string
	SystemUUID    string
	BootID        string
	BootTime      time.Time

	// CPUUsageNanos is the CPU time the host has spent busy, for
	// metrics.k8s.io; MemoryWorkingSet is memory in use (total less
	// available).
	CPUUsageNanos    uint64
	MemoryWorkingSet int64
}

// Pressure thresholds, kubelet's default hard eviction thresholds where it
// has one: memory.available < 100Mi, nodefs.available < 10%,
// nodefs.inodesFree < 5%. For PIDs kubelet has no default; here fewer
// than 10% free PIDs is pressure.
const (
	memoryPressureBelow = 100 << 20
	diskPressurePercent = 10
	inodePressurePct    = 5
	pidPressurePercent  = 10
	// heartbeatEvery is how often an unchanged node still gets a new
	// heartbeat time (kubelet's nodeStatusReportFrequency).
	heartbeatEvery = 5 * time.Minute
)

// nodeState builds the Node object from the host and the reconciler.
type nodeState struct {
	s         *Server
	coll      *collection
	leases    *collection
	refreshMu sync.Mutex

	mu      sync.Mutex
	ip      string
	ipTried time.Time
	conds   map[corev1.NodeConditionType]corev1.NodeCondition
	muid    types.UID
}

func newNodeState(s *Server) *nodeState {
	return &nodeState{s: s, coll: newCollection(s.vs), leases: newCollection(s.vs), conds: map[corev1.NodeConditionType]corev1.NodeCondition{}}
}

// internalIP is the node's address (pods' hostIP), read from the host the
// first time it is needed; a node refresh keeps it current.
func (n *nodeState) internalIP() string {
	n.mu.Lock()
	ip, tried := n.ip, n.ipTried
	n.mu.Unlock()
	now := n.s.now()
	if ip != "" || n.s.cfg.Host == nil || now.Sub(tried) < 30*time.Second {
		return ip
	}
	h, err := n.s.cfg.Host.HostInfo(context.Background())
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ipTried = now
	if err == nil && h.InternalIP != "" && n.ip == "" {
		n.ip = h.InternalIP
	}
	return n.ip
}

func (n *nodeState) uid() types.UID {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.muid == "" {
		return types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+n.s.cfg.NodeName+"/node")).String())
	}
	return n.muid
}

// refresh reads the host and stores the Node; refreshes take turns, so
// an older reading never overwrites a newer one.
func (n *nodeState) refresh(ctx context.Context) error {
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	var h HostInfo
	var herr error
	if n.s.cfg.Host != nil {
		h, herr = n.s.cfg.Host.HostInfo(ctx)
	}
	n.coll.set(n.build(h, herr))
	return nil
}

// NodeLeaseNamespace holds the node's Lease, as in a cluster.
const NodeLeaseNamespace = "kube-node-lease"

// refreshLease stores the node's heartbeat Lease (kubectl describe node
// shows it): renewed whenever it is read, held by the node.
func (n *nodeState) refreshLease(context.Context) error {
	name := n.s.cfg.NodeName
	dur := int32(40)
	n.leases.set(&coordinationv1.Lease{
		TypeMeta: metav1.TypeMeta{Kind: "Lease", APIVersion: "coordination.k8s.io/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: NodeLeaseNamespace, CreationTimestamp: metav1.NewTime(n.s.start),
			UID:             types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+name+"/lease")).String()),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: n.uid()}}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: &dur, RenewTime: &metav1.MicroTime{Time: n.s.now()}},
	})
	return nil
}

func quantity(v int64, f resource.Format) resource.Quantity { return *resource.NewQuantity(v, f) }

func (n *nodeState) build(h HostInfo, herr error) *corev1.Node {
	s := n.s
	now := s.now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if h.InternalIP != "" {
		n.ip = h.InternalIP
	}
	seed := s.cfg.NodeName
	if h.MachineID != "" {
		seed = h.MachineID
	}
	n.muid = types.UID(uuid.NewSHA1(uuid.NameSpaceURL, []byte("pelagos://"+seed+"/node")).String())
	// The labels and taints the reconciler matches pods with (spec/node).
	id := s.cfg.Node
	if id == nil {
		id = &nodeid.Node{Name: s.cfg.NodeName, Labels: map[string]string{
			nodeid.LabelHostname: s.cfg.NodeName, nodeid.LabelOS: goruntime.GOOS, nodeid.LabelArch: goruntime.GOARCH}}
	}
	node := &corev1.Node{
		TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: s.cfg.NodeName, UID: n.muid, Labels: maps.Clone(id.Labels),
			CreationTimestamp: metav1.NewTime(s.start)},
	}
	for _, t := range id.Taints {
		node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	if !h.BootTime.IsZero() {
		node.CreationTimestamp = metav1.NewTime(h.BootTime)
	}
	capacity := corev1.ResourceList{corev1.ResourcePods: quantity(int64(s.cfg.MaxPods), resource.DecimalSI)}
	if h.CPUs > 0 {
		capacity[corev1.ResourceCPU] = quantity(int64(h.CPUs), resource.DecimalSI)
	}
	if h.MemoryBytes > 0 {
		capacity[corev1.ResourceMemory] = quantity(h.MemoryBytes, resource.BinarySI)
	}
	if h.StorageBytes > 0 {
		capacity[corev1.ResourceEphemeralStorage] = quantity(h.StorageBytes, resource.BinarySI)
	}
	node.Status.Capacity = capacity
	node.Status.Allocatable = capacity.DeepCopy()
	if n.ip != "" {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.ip})
	}
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: s.cfg.NodeName})
	version := agentVersion(s.cfg.Version)
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		MachineID: h.MachineID, SystemUUID: h.SystemUUID, BootID: h.BootID, KernelVersion: h.KernelVersion,
		OSImage: h.OSImage, ContainerRuntimeVersion: "pelagos://" + strings.TrimPrefix(version, "v"),
		KubeletVersion: version, OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH,
	}
	node.Status.Phase = corev1.NodeRunning

	type cond struct {
		typ             corev1.NodeConditionType
		bad             bool
		reason, message string
	}
	var cs []cond
	readErr := herr
	if readErr == nil && s.cfg.Host == nil {
		readErr = errNoHost
	}
	mem := h.MemoryAvailable < memoryPressureBelow && h.MemoryBytes > 0
	disk := h.StorageBytes > 0 && (h.StorageAvailable*100 < h.StorageBytes*diskPressurePercent ||
		(h.InodesTotal > 0 && h.InodesFree*100 < h.InodesTotal*inodePressurePct))
	pid := h.PIDsMax > 0 && (h.PIDsMax-h.PIDsInUse)*100 < h.PIDsMax*pidPressurePercent
	pressure := func(typ corev1.NodeConditionType, bad bool, okReason, okMsg, badReason, badMsg string) cond {
		if bad {
			return cond{typ, true, badReason, badMsg}
		}
		return cond{typ, false, okReason, okMsg}
	}
	cs = append(cs,
		pressure(corev1.NodeMemoryPressure, mem, "KubeletHasSufficientMemory", "the node has sufficient memory available",
			"KubeletHasInsufficientMemory", "the node has memory pressure: less than 100Mi available"),
		pressure(corev1.NodeDiskPressure, disk, "KubeletHasNoDiskPressure", "the node has no disk pressure",
			"KubeletHasDiskPressure", "the node has disk pressure: less than 10% of the space or 5% of the inodes free on the state root"),
		pressure(corev1.NodePIDPressure, pid, "KubeletHasSufficientPID", "the node has sufficient PID available",
			"KubeletHasInsufficientPID", "the node has PID pressure: less than 10% of the PIDs free"))
	ready := cond{corev1.NodeReady, false, "KubeletReady", "pelagos-agent is posting ready status"}
	switch {
	case !s.cfg.Backend.Ready():
		ready = cond{corev1.NodeReady, true, "KubeletNotReady", "pelagos-agent has not finished start-up recovery or its first manifest load"}
	case readErr != nil:
		ready = cond{corev1.NodeReady, true, "KubeletNotReady", "cannot read the host: " + readErr.Error()}
	}
	cs = append(cs, ready)
	for _, c := range cs {
		status := corev1.ConditionFalse
		if c.bad != (c.typ == corev1.NodeReady) {
			status = corev1.ConditionTrue
		}
		prev, seen := n.conds[c.typ]
		nc := corev1.NodeCondition{Type: c.typ, Status: status, Reason: c.reason, Message: c.message,
			LastHeartbeatTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)}
		if seen && prev.Status == status {
			nc.LastTransitionTime = prev.LastTransitionTime
			// An unchanged condition keeps its heartbeat for a while, so a
			// refresh is not a change that wakes every watcher.
			if prev.Reason == c.reason && prev.Message == c.message && now.Sub(prev.LastHeartbeatTime.Time) < heartbeatEvery {
				nc.LastHeartbeatTime = prev.LastHeartbeatTime
			}
		}
		n.conds[c.typ] = nc
		node.Status.Conditions = append(node.Status.Conditions, nc)
	}
	return node
}

type hostError string

func (e hostError) Error() string { return string(e) }

const errNoHost = hostError("no host information source configured")

// agentVersion is the agent's version as Kubernetes writes versions.
func agentVersion(v string) string {
	switch {
	case v == "" || v == "dev":
		return "v0.0.0-dev"
	case strings.HasPrefix(v, "v"):
		return v
	}
	return "v" + v
}
