package cri

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Network makes the pod network of a sandbox in the network namespace the
// runtime made for it (runtime.SandboxConfig.ExternalNetwork), instead of
// the runtime's bridge: a CNI plugin chain (CNI) in practice.
type Network interface {
	// Ready says whether pods can get a network now (kubelet's
	// NetworkReady condition).
	Ready() error
	// Setup attaches the sandbox; the result says what to tear down.
	Setup(ctx context.Context, sandboxID, netnsPath string, c *runtimeapi.PodSandboxConfig) (*NetworkResult, error)
	// Teardown detaches what Setup attached; it succeeds when it is gone.
	Teardown(ctx context.Context, sandboxID string, r *NetworkResult, c *runtimeapi.PodSandboxConfig) error
}

// NetworkResult is what a sandbox's network was made with and got; the
// sandbox record keeps it, so that teardown uses the configuration the
// network was added with, whatever the directory holds by then.
type NetworkResult struct {
	NetNS  string   `json:"netns"`
	Config []byte   `json:"config"`        // the network configuration list
	IPs    []string `json:"ips,omitempty"` // the pod's addresses, first is primary
}

// CNI is a Network from the first CNI configuration in a directory (by
// file name, as kubelet's runtimes choose), run with libcni. Plugins are
// looked up in BinDirs; results are cached under CacheDir (not the host's
// /var/lib/cni) for DEL.
type CNI struct {
	ConfDir string
	cni     *libcni.CNIConfig
}

// NewCNI returns a CNI network for confDir.
func NewCNI(confDir string, binDirs []string, cacheDir string) *CNI {
	return &CNI{ConfDir: confDir, cni: libcni.NewCNIConfigWithCacheDir(binDirs, cacheDir, nil)}
}

// load reads the configuration list in use: the first file of the
// directory, by name, that parses.
func (c *CNI) load() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(c.ConfDir, []string{".conflist", ".conf", ".json"})
	if err != nil {
		return nil, fmt.Errorf("CNI configuration %s: %w", c.ConfDir, err)
	}
	sort.Strings(files)
	var errs []error
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
		} else {
			var one *libcni.NetworkConfig
			if one, err = libcni.ConfFromFile(f); err == nil {
				list, err = libcni.ConfListFromConf(one)
			}
		}
		if err == nil {
			return list, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("CNI configuration %s: no usable network: %w", c.ConfDir, errors.Join(errs...))
	}
	return nil, fmt.Errorf("CNI configuration %s: no network configuration (.conflist, .conf, .json)", c.ConfDir)
}

// Ready implements Network.
func (c *CNI) Ready() error {
	_, err := c.load()
	return err
}

// cniPortMapping is the portMappings capability of the CNI conventions.
type cniPortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// runtimeConf is what every plugin of the chain is told about the pod: the
// CNI_ARGS kubelet's runtimes pass, and the published ports and DNS as
// capabilities (plugins take what they declare).
func runtimeConf(sandboxID, netns string, c *runtimeapi.PodSandboxConfig) *libcni.RuntimeConf {
	md := c.GetMetadata()
	rt := &libcni.RuntimeConf{ContainerID: sandboxID, NetNS: netns, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", md.GetNamespace()}, {"K8S_POD_NAME", md.GetName()},
			{"K8S_POD_INFRA_CONTAINER_ID", sandboxID}, {"K8S_POD_UID", md.GetUid()}},
		CapabilityArgs: map[string]any{},
	}
	var ports []cniPortMapping
	for _, p := range c.GetPortMappings() {
		if p.GetHostPort() > 0 {
			ports = append(ports, cniPortMapping{HostPort: p.GetHostPort(), ContainerPort: p.GetContainerPort(),
				Protocol: strings.ToLower(p.GetProtocol().String()), HostIP: p.GetHostIp()})
		}
	}
	if len(ports) > 0 {
		rt.CapabilityArgs["portMappings"] = ports
	}
	if d := c.GetDnsConfig(); d != nil {
		rt.CapabilityArgs["dns"] = map[string]any{"servers": d.GetServers(), "searches": d.GetSearches(), "options": d.GetOptions()}
	}
	return rt
}

// Setup implements Network: ADD of the whole list. A failed ADD is undone
// with DEL, as the CNI specification asks of runtimes.
func (c *CNI) Setup(ctx context.Context, sandboxID, netns string, sb *runtimeapi.PodSandboxConfig) (*NetworkResult, error) {
	list, err := c.load()
	if err != nil {
		return nil, err
	}
	rt := runtimeConf(sandboxID, netns, sb)
	res, err := c.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		if derr := c.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt); derr != nil {
			err = fmt.Errorf("%w (undo: %v)", err, derr)
		}
		return nil, fmt.Errorf("CNI network %s: add: %w", list.Name, err)
	}
	out := &NetworkResult{NetNS: netns, Config: list.Bytes}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return out, fmt.Errorf("CNI network %s: result: %w", list.Name, err)
	}
	for _, ip := range r.IPs {
		out.IPs = append(out.IPs, ip.Address.IP.String())
	}
	return out, nil
}

// Teardown implements Network: DEL with the configuration ADD used.
func (c *CNI) Teardown(ctx context.Context, sandboxID string, r *NetworkResult, sb *runtimeapi.PodSandboxConfig) error {
	list, err := libcni.ConfListFromBytes(r.Config)
	if err != nil {
		return fmt.Errorf("CNI network of sandbox %s: recorded configuration: %w", sandboxID, err)
	}
	if err := c.cni.DelNetworkList(ctx, list, runtimeConf(sandboxID, r.NetNS, sb)); err != nil {
		return fmt.Errorf("CNI network %s: delete: %w", list.Name, err)
	}
	return nil
}
