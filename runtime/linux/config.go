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

	Logger zerolog.Logger
}
