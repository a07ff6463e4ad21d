package agent

import (
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/pelagos-containers/pelagos-agent/runtime/linux/oomscore"
	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// nodeIdentity is the node as pods see it, from the host name and the
// --node-labels and --node-taints flags (or the settings file): one model
// for the reconciler's matching and the API's Node object. It is read at
// start; a restart with other flags starts or removes the pods whose match
// changed.
func nodeIdentity(o *Options) (*node.Node, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("node name: %w", err)
	}
	taints, err := node.ParseTaints(o.NodeTaints)
	if err != nil {
		return nil, fmt.Errorf("--node-taints: %w", err)
	}
	n, err := node.New(node.NameFromHostname(host), o.NodeLabels, taints)
	if err != nil {
		return nil, fmt.Errorf("--node-labels/--node-taints: %w", err)
	}
	return n, nil
}

// nodeAllocatable is what the downward API reports as the limits of a
// container without its own: the node's CPUs (millicores) and the size of
// the state root's filesystem (bytes), as Kubernetes reports the node's
// allocatable amounts.
func nodeAllocatable(stateRoot string) (cpuMilli, ephemeral int64) {
	cpuMilli = int64(goruntime.NumCPU()) * 1000
	var st syscall.Statfs_t
	if syscall.Statfs(stateRoot, &st) == nil {
		ephemeral = int64(st.Blocks) * st.Bsize
	}
	return cpuMilli, ephemeral
}

// setAgentOOMScore lowers the agent's own OOM score as kubelet does its
// own. Where the kernel refuses (no CAP_SYS_RESOURCE), the agent runs on
// with the value it has and says so once.
func setAgentOOMScore(log zerolog.Logger) {
	if got, err := oomscore.SetSelf(oomscore.Agent); err != nil {
		log.Warn().Err(err).Msg("the agent's OOM score is not lowered: under memory pressure the kernel may kill the agent before pods")
	} else {
		log.Debug().Str("oomScoreAdj", strconv.Itoa(got)).Msg("OOM score set")
	}
}

// nodeMemory is the node's memory in bytes (MemTotal), 0 when unknown.
func nodeMemory() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
