package linux

import "github.com/rs/zerolog"

// Config configures a Runtime. Every host-global name is configurable so that
// several agents, and every test, can run side by side without touching each
// other's objects.
type Config struct {
	StateRoot    string // persistent: images, leases, emptyDirs, logs (default /var/lib/pelagos)
	RunRoot      string // volatile: records, pidfiles, sockets (default /run/pelagos)
	Bridge       string // default pelagos0
	Subnet       string // CIDR, default 172.16.128.0/20; the gateway is .1 on the bridge
	NetNSPrefix  string // default "pelagos-"; netns pinned at /run/netns/<prefix><id>
	CgroupParent string // default: below the agent's own cgroup
	NFTable      string // nftables table name, default "pelagos"

	PidsLimit          int64 // default pids.max per container when the pod sets none
	LogMaxSize         int64 // container log rotation size in bytes
	LogMaxFiles        int   // rotated files kept per container
	AllowUnsafeSysctls bool
	InsecureRegistries []string // plain HTTP allowed (loopback always is)

	// PodPidsLimit is pids.max of each pod cgroup (kubelet's podPidsLimit):
	// 0 means the sum of what the pod's running containers may use, -1 no
	// pod-level limit.
	PodPidsLimit int64
	// ReservedPids are kept for the host outside all pods: the cgroup
	// parent's pids.max is the host's PID capacity minus these. 0 means
	// DefaultReservedPids, -1 no limit on the parent.
	ReservedPids int64

	Logger zerolog.Logger
}
