package main

import (
	"fmt"
	"os"

	"github.com/pelagos-containers/pelagos-agent/spec/node"
)

// nodeIdentity is the node as pods see it, from the host name and the
// --node-labels and --node-taints flags (or the settings file): one model
// for the reconciler's matching and the API's Node object. It is read at
// start; a restart with other flags starts or removes the pods whose match
// changed.
func nodeIdentity(o *agentOptions) (*node.Node, error) {
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
