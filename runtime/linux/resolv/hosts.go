package resolv

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Peer is one pod as other pods see it in /etc/hosts.
type Peer struct {
	ID    string   `json:"id"` // sandbox ID
	IP    string   `json:"ip"`
	Names []string `json:"names"`
}

// PeerNames are the names a pod is known by on the node: <pod>.<namespace>,
// and with a subdomain the Kubernetes-style <hostname>.<subdomain>.<namespace>
// FQDN and the bare hostname, as a headless Service would publish them.
func PeerNames(pod runtime.PodKey, hostname, subdomain string) []string {
	names := []string{pod.Name + "." + pod.Namespace}
	if hostname == "" {
		hostname = pod.Name
	}
	if subdomain != "" {
		names = append(names, hostname+"."+subdomain+"."+pod.Namespace)
	}
	if hostname != pod.Name || subdomain != "" {
		names = append(names, hostname)
	}
	return dedupe(names)
}

// HostsConfig is everything a pod's /etc/hosts holds.
type HostsConfig struct {
	Pod       runtime.PodKey
	PodIP     string // "" with hostNetwork: the pod shares the node's names
	Hostname  string
	Subdomain string
	Aliases   []runtime.HostAlias
	// Peers are the other pods on the node; the pod itself is skipped.
	Peers []Peer
	Self  string // the pod's sandbox ID, to skip itself among Peers
}

// ValidateAliases checks hostAliases before anything is made.
func ValidateAliases(aliases []runtime.HostAlias) error {
	for i, a := range aliases {
		if _, err := netip.ParseAddr(a.IP); err != nil {
			return fmt.Errorf("resolv: hostAliases[%d].ip: %q is not an IP address: %w", i, a.IP, runtime.ErrInvalidConfig)
		}
		for j, h := range a.Hostnames {
			if h == "" || strings.ContainsAny(h, " \t\n#") {
				return fmt.Errorf("resolv: hostAliases[%d].hostnames[%d]: %q is not a host name: %w", i, j, h, runtime.ErrInvalidConfig)
			}
		}
	}
	return nil
}

// Hosts renders the pod's /etc/hosts in the layout the kubelet uses, with
// the node's other pods in a section of their own, sorted for stable bytes
// (so an unchanged set is never rewritten).
func Hosts(c HostsConfig) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by pelagos-agent; rewritten in place as pods come and go.\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if c.PodIP != "" {
		hostname := c.Hostname
		if hostname == "" {
			hostname = c.Pod.Name
		}
		names := []string{}
		if c.Subdomain != "" {
			names = append(names, hostname+"."+c.Subdomain+"."+c.Pod.Namespace)
		}
		names = append(names, hostname)
		if c.Pod.Name != "" {
			names = append(names, c.Pod.Name+"."+c.Pod.Namespace)
		}
		fmt.Fprintf(&b, "%s\t%s\n", c.PodIP, strings.Join(dedupe(names), " "))
	}
	peers := append([]Peer(nil), c.Peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].ID < peers[j].ID })
	first := true
	for _, p := range peers {
		if p.ID == c.Self || p.IP == "" || len(p.Names) == 0 {
			continue
		}
		if first {
			b.WriteString("# Pods on this node.\n")
			first = false
		}
		fmt.Fprintf(&b, "%s\t%s\n", p.IP, strings.Join(p.Names, " "))
	}
	if len(c.Aliases) > 0 {
		b.WriteString("# Entries added by HostAliases.\n")
		for _, a := range c.Aliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}

// HostNetworkHosts is /etc/hosts for a hostNetwork pod: the node's own file,
// since the pod has the node's names and addresses, plus its hostAliases.
func HostNetworkHosts(node []byte, aliases []runtime.HostAlias) []byte {
	var b bytes.Buffer
	b.Write(node)
	if len(node) > 0 && node[len(node)-1] != '\n' {
		b.WriteByte('\n')
	}
	if len(aliases) > 0 {
		b.WriteString("# Entries added by HostAliases.\n")
		for _, a := range aliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}
