package linux

// The pod-networking half of sandboxes: published ports and masquerade
// (package nft), resolv.conf, /etc/hosts and /etc/hostname on the pod's
// size-capped pod-files tmpfs (package resolv; volume.PodFiles), and
// sysctls inside the pod's namespaces (package sysctl). The sandbox code
// calls these hooks at fixed points:
//
//	podNetCheck   before anything is made (invalid config, port conflicts)
//	podNetAttach  once the netns, veth and address exist
//	podNetRelease when the sandbox is removed
//	podNetGC      from GC, with the set of sandboxes that still exist

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/pelagos-containers/pelagos-agent/runtime"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/nft"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/resolv"
	"github.com/pelagos-containers/pelagos-agent/runtime/linux/sysctl"
)

// Files the container half bind-mounts from the pod-files tmpfs.
const (
	ResolvConfFile = "resolv.conf"
	HostsFile      = "hosts"
	HostnameFile   = "hostname"
)

// podFile is the host path of one of the sandbox's pod files.
func (r *Runtime) podFile(id, name string) string {
	return filepath.Join(r.volumes().PodFilesDir(id), name)
}

// writePodFiles mounts the sandbox's pod-files tmpfs (when it is not) and
// writes its resolv.conf and hostname; the hosts file is refreshHosts'.
func (r *Runtime) writePodFiles(rec *sandboxRecord) error {
	if _, _, err := r.volumes().PodFiles(rec.ID); err != nil {
		return err
	}
	dns, err := resolv.Build(rec.Config.DNS, r.net.host)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", rec.ID, err)
	}
	if err := resolv.WriteFile(r.podFile(rec.ID, ResolvConfFile), dns.Bytes(), 0o644); err != nil {
		return fmt.Errorf("sandbox %s: %w", rec.ID, err)
	}
	hostname := rec.Hostname
	if hostNetwork(rec.Namespaces) {
		// The pod shares the node's UTS namespace and its names.
		if h, err := os.Hostname(); err == nil {
			hostname = h
		}
	}
	if err := resolv.WriteFile(r.podFile(rec.ID, HostnameFile), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("sandbox %s: %w", rec.ID, err)
	}
	return nil
}

// ensurePodFiles makes sure a sandbox's pod files are in place before a
// container mounts them. A sandbox this process did not create (the agent
// restarted, or was upgraded from a version that kept them in the sandbox
// directory) may have lost its tmpfs: it is mounted again and the files are
// rewritten from the record.
func (r *Runtime) ensurePodFiles(rec *sandboxRecord) error {
	dir, fresh, err := r.volumes().PodFiles(rec.ID)
	if err != nil {
		return err
	}
	if !fresh {
		complete := true
		for _, f := range []string{ResolvConfFile, HostnameFile, HostsFile} {
			if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
				complete = false
			}
		}
		if complete {
			return nil
		}
	}
	if err := r.writePodFiles(rec); err != nil {
		return err
	}
	return r.refreshHosts(rec.ID, "")
}

type podNet struct {
	nft  *nft.Manager
	host resolv.Host

	setupMu sync.Mutex
	setup   bool // table and base rules in place for this process

	// hostsMu serialises rewrites of the pods' hosts files: they are
	// rewritten in place, and two interleaved writers would mix lines.
	hostsMu sync.Mutex
	// attached holds the records of sandboxes this process attached, until
	// released. A record reaches the disk with its address only when the
	// sandbox is ready, so without this two pods created at the same time
	// would each miss the other.
	attached map[string]*sandboxRecord
}

func (r *Runtime) initPodNet() error {
	subnet, err := netip.ParsePrefix(r.cfg.Subnet)
	if err != nil {
		return fmt.Errorf("linux runtime: subnet %q: %w", r.cfg.Subnet, runtime.ErrInvalidConfig)
	}
	m, err := nft.New(nft.Config{Table: r.cfg.NFTable, Bridge: r.cfg.Bridge, Subnet: subnet})
	if err != nil {
		return fmt.Errorf("linux runtime: %w", err)
	}
	r.net = &podNet{nft: m, host: resolv.DefaultHost, attached: map[string]*sandboxRecord{}}
	return nil
}

// ensureNFT sets the table up once per process; Setup is idempotent, so a
// restarted agent converges the base rules and keeps every pod's.
func (p *podNet) ensureNFT() error {
	p.setupMu.Lock()
	defer p.setupMu.Unlock()
	if p.setup {
		return nil
	}
	if err := p.nft.Setup(); err != nil {
		return err
	}
	p.setup = true
	return nil
}

func hostNetwork(ns runtime.NamespaceOptions) bool { return ns.Network == runtime.NamespaceNode }

// podNetCheck validates the network parts of a sandbox before anything is
// made: sysctls against the policy, hostAliases, dnsConfig, port mappings,
// and whether another sandbox already holds one of its host ports
// (runtime.ErrConflict; the reconciler retries once that sandbox is gone).
func (r *Runtime) podNetCheck(id string, cfg *runtime.SandboxConfig, ns runtime.NamespaceOptions) error {
	err := sysctl.Validate(cfg.Sysctls, sysctl.Policy{
		AllowUnsafe: r.cfg.AllowUnsafeSysctls,
		HostNetwork: hostNetwork(ns),
		HostIPC:     ns.IPC == runtime.NamespaceNode,
	})
	if err == nil {
		err = resolv.ValidateAliases(cfg.HostAliases)
	}
	if err == nil {
		_, err = resolv.Build(cfg.DNS, r.net.host)
	}
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	if hostNetwork(ns) {
		// The containers bind the node's ports themselves; as in
		// Kubernetes a hostPort must then equal its containerPort.
		for i, p := range cfg.Ports {
			if p.HostPort != 0 && p.HostPort != p.ContainerPort {
				return fmt.Errorf("sandbox %s: ports[%d]: hostNetwork pod with hostPort %d != containerPort %d: %w",
					id, i, p.HostPort, p.ContainerPort, runtime.ErrInvalidConfig)
			}
		}
		return nil
	}
	maps, err := r.net.nft.Mappings(netip.Addr{}, cfg.Ports)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	if len(maps) == 0 {
		return nil
	}
	if err := r.net.ensureNFT(); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	return r.namedConflict(r.net.nft.Check(id, maps))
}

// namedConflict rewrites a port conflict for people: the holder's pod name
// is what a user can act on, its sandbox ID is not.
func (r *Runtime) namedConflict(err error) error {
	var ce *nft.ConflictError
	if !errors.As(err, &ce) {
		return err
	}
	holder := "sandbox " + ce.Holder
	if rec, rerr := r.sandboxRecord(ce.Holder); rerr == nil {
		holder = fmt.Sprintf("pod %s (sandbox %s)", rec.Pod, ce.Holder)
	}
	host := "every address"
	if ce.Want.HostIP.IsValid() {
		host = ce.Want.HostIP.String()
	}
	return fmt.Errorf("sandbox %s: hostPort %d/%s on %s is held by %s: %w",
		ce.Sandbox, ce.Want.HostPort, ce.Want.Protocol, host, holder, runtime.ErrConflict)
}

// podNetAttach finishes a sandbox's networking once its namespaces exist
// (and, for a pod network, its veth and address): the files its containers
// mount, its sysctls, its published ports, and every pod's hosts file so the
// others can find it by name. On error the caller removes the sandbox, which
// calls podNetRelease.
func (r *Runtime) podNetAttach(rec *sandboxRecord) error {
	cfg := &rec.Config
	if err := r.writePodFiles(rec); err != nil {
		return err
	}

	var paths sysctl.Paths
	if !hostNetwork(rec.Namespaces) {
		paths.Net = rec.NetNSPath
	}
	if rec.Namespaces.IPC != runtime.NamespaceNode && rec.Pause.PID > 0 {
		paths.IPC = fmt.Sprintf("/proc/%d/ns/ipc", rec.Pause.PID)
	}
	if err := sysctl.Apply(cfg.Sysctls, paths); err != nil {
		return fmt.Errorf("sandbox %s: %w", rec.ID, err)
	}

	if !hostNetwork(rec.Namespaces) && rec.IP != "" {
		ip, err := netip.ParseAddr(rec.IP)
		if err != nil {
			return fmt.Errorf("sandbox %s: address %q: %w", rec.ID, rec.IP, err)
		}
		maps, err := r.net.nft.Mappings(ip, cfg.Ports)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", rec.ID, err)
		}
		if err := r.net.ensureNFT(); err != nil {
			return fmt.Errorf("sandbox %s: %w", rec.ID, err)
		}
		if len(maps) > 0 {
			if rec.VethHost != "" {
				if err := r.net.nft.Hairpin(rec.VethHost); err != nil {
					return fmt.Errorf("sandbox %s: %w", rec.ID, err)
				}
			}
			if err := r.net.nft.AddPod(rec.ID, maps); err != nil {
				return r.namedConflict(err)
			}
		}
	}
	r.net.hostsMu.Lock()
	r.net.attached[rec.ID] = rec
	r.net.hostsMu.Unlock()
	return r.refreshHosts(rec.ID, "")
}

// podNetRelease removes a sandbox's published ports and its name from the
// other pods' hosts files. Releasing a sandbox that has neither succeeds.
func (r *Runtime) podNetRelease(id string) error {
	if err := r.net.nft.RemovePod(id); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	r.net.hostsMu.Lock()
	delete(r.net.attached, id)
	r.net.hostsMu.Unlock()
	return r.refreshHosts("", id)
}

// podNetGC removes the published ports of sandboxes that no longer exist.
func (r *Runtime) podNetGC(live func(id string) bool) ([]string, error) {
	removed, err := r.net.nft.GC(live)
	if err != nil {
		return nil, err
	}
	if len(removed) > 0 {
		if err := r.refreshHosts("", ""); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// refreshHosts rewrites the hosts file of every sandbox so that each pod
// lists all the others. self is the sandbox being created: its file is
// created; other sandboxes' files are only updated in place, never created,
// so a sandbox being removed does not get files back. gone is a sandbox
// being removed, left out even while its record still exists.
//
// Only a failure on self's file is returned. Another pod's file is that
// pod's to break (its containers can write it, and fill the tmpfs it is
// on): a failure there is logged, and never fails the creation or removal
// of this one.
func (r *Runtime) refreshHosts(self, gone string) error {
	r.net.hostsMu.Lock()
	defer r.net.hostsMu.Unlock()
	ids, err := r.recordIDs()
	if err != nil {
		return err
	}
	var recs []*sandboxRecord
	for _, id := range ids {
		if id == gone {
			continue
		}
		if rec, ok := r.net.attached[id]; ok {
			recs = append(recs, rec)
			continue
		}
		rec, err := r.sandboxRecord(id)
		if err != nil || rec.Phase != phaseReady {
			continue // being made or removed elsewhere: its own refresh covers it
		}
		recs = append(recs, rec)
	}
	var peers []resolv.Peer
	for _, rec := range recs {
		if hostNetwork(rec.Namespaces) || rec.IP == "" {
			continue
		}
		peers = append(peers, resolv.Peer{ID: rec.ID, IP: rec.IP,
			Names: resolv.PeerNames(rec.Pod, rec.Hostname, rec.Config.Subdomain)})
	}
	var node []byte
	var selfErr error
	for _, rec := range recs {
		var data []byte
		if hostNetwork(rec.Namespaces) {
			if node == nil {
				if node, err = resolv.ReadHostFile("/etc/hosts"); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("sandbox %s: read node hosts file: %w", rec.ID, err)
				}
			}
			data = resolv.HostNetworkHosts(node, rec.Config.HostAliases)
		} else {
			data = resolv.Hosts(resolv.HostsConfig{
				Pod: rec.Pod, PodIP: rec.IP, Hostname: rec.Hostname, Subdomain: rec.Config.Subdomain,
				Aliases: rec.Config.HostAliases, Peers: peers, Self: rec.ID,
			})
		}
		path := r.podFile(rec.ID, HostsFile)
		if rec.ID == self {
			if err := resolv.WriteFile(path, data, 0o644); err != nil {
				selfErr = fmt.Errorf("sandbox %s: %w", rec.ID, err)
			}
		} else if err := resolv.UpdateFile(path, data); err != nil {
			r.log.Warn().Err(err).Str("sandbox", rec.ID).Msg("update the hosts file of another pod")
		}
	}
	return selfErr
}
