// Package nft owns the agent's nf_tables rules: hostPort publishing (DNAT from
// the node's addresses, from localhost and hairpin from pods), masquerade of
// pod traffic leaving the node, forward accept for the pod bridge and a guard
// that keeps pods away from the host's loopback services.
//
// Everything lives in one IPv4 table per agent instance, named by the caller,
// and is programmed through netlink (google/nftables): no nft or iptables
// binaries. Every pod with published ports gets its own chain, reached from a
// dispatch chain by one jump rule that carries the sandbox ID as a comment, so
// removing a pod deletes exactly its rules in one transaction, and GC can
// find the rules of sandboxes that no longer exist from the kernel alone.
package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/pelagos-containers/pelagos-agent/runtime"
)

// Names of the chains every table has. Pod chains are podChainPrefix + a name
// derived from the sandbox ID.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	chainInput       = "input"
	chainHostports   = "hostports"
	podChainPrefix   = "pod-"

	// commentPrefix marks the jump rule of a pod in the dispatch chain; the
	// sandbox ID follows it.
	commentPrefix = "pelagos sandbox="
)

// Config says which table to manage and what the pod network looks like.
type Config struct {
	// Table is the nftables table name (IPv4 family); one per agent instance.
	Table string
	// Bridge is the pod bridge; traffic from it is forwarded and its
	// route_localnet is enabled so localhost can reach published ports.
	Bridge string
	// Subnet is the pod subnet, masqueraded when it leaves through any
	// interface other than Bridge.
	Subnet netip.Prefix
	// NetNSPath, when set, is the network namespace to program instead of
	// the caller's (tests build a whole "node" in a namespace).
	NetNSPath string
}

// Manager programs the table. It is safe for concurrent use; conflict checks
// and the rule changes they guard are serialised.
type Manager struct {
	cfg   Config
	table *nftables.Table
	nsFD  int // -1: the caller's network namespace

	mu sync.Mutex
	// nl is a lasting netlink connection, dialled on first use and dropped
	// after any error, so one pod operation costs no socket set-up. Every
	// operation ends its batch with Flush, so nothing queued leaks into the
	// next one.
	nl *nftables.Conn
	// pods caches the published mappings per sandbox, loaded from the
	// kernel on first use: only this Manager changes its table, so after
	// loading the cache is the truth and conflict checks need no dumps.
	pods map[string][]Mapping
}

// The length is checked apart: a counted repetition compiles into a large
// program at every start of the binary, pause and shim included.
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// New checks cfg and returns a Manager. It touches nothing until Setup.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Table) > 64 || !validName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("nft: table name %q: want 1-64 of [A-Za-z0-9_.-]: %w", cfg.Table, runtime.ErrInvalidConfig)
	}
	if cfg.Bridge == "" || len(cfg.Bridge) > unix.IFNAMSIZ-1 {
		return nil, fmt.Errorf("nft: bridge name %q: %w", cfg.Bridge, runtime.ErrInvalidConfig)
	}
	if !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, fmt.Errorf("nft: subnet %v: want an IPv4 prefix: %w", cfg.Subnet, runtime.ErrInvalidConfig)
	}
	cfg.Subnet = cfg.Subnet.Masked()
	m := &Manager{
		cfg:   cfg,
		table: &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyIPv4},
		nsFD:  -1,
	}
	if cfg.NetNSPath != "" {
		fd, err := unix.Open(cfg.NetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("nft: open netns %s: %w", cfg.NetNSPath, &os.PathError{Op: "open", Path: cfg.NetNSPath, Err: err})
		}
		m.nsFD = fd
	}
	return m, nil
}

// Close releases the namespace handle; the rules stay.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop()
	if m.nsFD >= 0 {
		err := unix.Close(m.nsFD)
		m.nsFD = -1
		return err
	}
	return nil
}

// Table returns the table name.
func (m *Manager) Table() string { return m.cfg.Table }

func (m *Manager) conn() (*nftables.Conn, error) {
	if m.nl != nil {
		return m.nl, nil
	}
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if m.nsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(m.nsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nft: open netlink: %w", err)
	}
	m.nl = c
	return c, nil
}

// drop forgets the connection after an error: whatever state it was left
// in, the next operation starts on a fresh socket.
func (m *Manager) drop() {
	if m.nl != nil {
		_ = m.nl.CloseLasting()
		m.nl = nil
	}
}

// flush sends the batch, dropping the connection and the cache on failure
// (the kernel rejected the whole transaction, but we re-read to be sure).
func (m *Manager) flush(c *nftables.Conn) error {
	if err := c.Flush(); err != nil {
		m.drop()
		m.pods = nil
		return err
	}
	return nil
}

func (m *Manager) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: m.table}
}

// Setup creates the table, its base chains and the pod-independent rules,
// and enables the kernel settings published ports and egress need (see
// HostSettings). It is idempotent and keeps every pod's chain: the base
// chains are flushed and refilled in the same transaction, so a restarted
// agent with a changed bridge or subnet converges without a window where
// rules are missing.
func (m *Manager) Setup() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.hostSettings(); err != nil {
		return err
	}
	c, err := m.conn()
	if err != nil {
		return err
	}
	c.AddTable(m.table)
	accept := nftables.ChainPolicyAccept
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		ch := c.AddChain(&nftables.Chain{Name: name, Table: m.table, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
		c.FlushChain(ch)
		return ch
	}
	pre := base(chainPrerouting, nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := base(chainOutput, nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := base(chainPostrouting, nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	fwd := base(chainForward, nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	in := base(chainInput, nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	c.AddChain(m.chain(chainHostports)) // regular chain; never flushed here: it holds the pods' jumps

	bridge := ifname(m.cfg.Bridge)
	subnet := m.cfg.Subnet
	add := func(ch *nftables.Chain, comment string, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: m.table, Chain: ch, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
	}

	// Published ports: any packet to one of the node's own addresses,
	// arriving from outside or from a pod (prerouting) or sent by a host
	// process, 127.0.0.1 included (output), goes through the pods' chains.
	for _, ch := range []*nftables.Chain{pre, out} {
		add(ch, "published ports on local addresses", concat(
			fibDaddrLocal(),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chainHostports}},
		)...)
	}

	// Localhost to a pod: the source is 127.0.0.1, which the pod could never
	// answer; give it the bridge address. route_localnet on the bridge lets
	// the kernel route it there in the first place.
	add(post, "localhost to published port", concat(
		matchPrefix(12, netip.MustParsePrefix("127.0.0.0/8")),
		matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, bridge),
		[]expr.Any{&expr.Masq{}},
	)...)
	// Hairpin: a pod reaching a published port (its own or another pod's)
	// through a node address would get the reply straight over the bridge
	// from the other pod's address; masquerading sends it back through us.
	add(post, "hairpin to published port", concat(
		matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, bridge),
		matchPrefix(12, subnet),
		matchCtStatus(ipsDstNAT),
		[]expr.Any{&expr.Masq{}},
	)...)
	// Egress: pod traffic leaving through any other interface carries the
	// node's address on that interface.
	add(post, "pod egress", concat(
		matchPrefix(12, subnet),
		matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpNeq, bridge),
		[]expr.Any{&expr.Masq{}},
	)...)

	// Forwarding for the bridge only: from pods, replies to pods and
	// published-port traffic to pods. Other forwarded traffic is left to
	// whatever firewall the node has (this chain's policy is accept, and an
	// accept here never overrides another table's drop).
	add(fwd, "from pods", concat(
		matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, bridge),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}},
	)...)
	add(fwd, "replies to pods", concat(
		matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, bridge),
		matchCtState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}},
	)...)
	add(fwd, "published ports to pods", concat(
		matchIfname(expr.MetaKeyOIFNAME, expr.CmpOpEq, bridge),
		matchCtStatus(ipsDstNAT),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}},
	)...)

	// route_localnet guard (the kube-proxy CVE-2020-8558 lesson): with it
	// on, a pod could send new connections to services listening on the
	// host's 127.0.0.1. Only replies of connections the host opened pass.
	add(in, "no new connections from pods to host loopback", concat(
		matchIfname(expr.MetaKeyIIFNAME, expr.CmpOpEq, bridge),
		matchPrefix(16, netip.MustParsePrefix("127.0.0.0/8")),
		matchCtStateNone(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}},
	)...)

	if err := m.flush(c); err != nil {
		return fmt.Errorf("nft: set up table %s: %w", m.cfg.Table, err)
	}
	return nil
}

// Teardown deletes the whole table. Removing a missing table succeeds. The
// kernel settings stay: see HostSettings for why.
func (m *Manager) Teardown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	c.DelTable(m.table)
	err = m.flush(c)
	m.pods = nil
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: delete table %s: %w", m.cfg.Table, err)
	}
	return nil
}

// Mapping is one published port as the table holds it.
type Mapping struct {
	Protocol      runtime.Protocol
	HostIP        netip.Addr // invalid: every local address
	HostPort      uint16
	PodIP         netip.Addr
	ContainerPort uint16
}

func (p Mapping) String() string {
	h := "*"
	if p.HostIP.IsValid() {
		h = p.HostIP.String()
	}
	return fmt.Sprintf("%s:%d/%s->%s:%d", h, p.HostPort, p.Protocol, p.PodIP, p.ContainerPort)
}

// overlaps reports whether two mappings claim the same host socket: same
// protocol and port, and the same address or either on every address.
func (p Mapping) overlaps(q Mapping) bool {
	if p.Protocol != q.Protocol || p.HostPort != q.HostPort {
		return false
	}
	return !p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP
}

// Mappings validates the runtime's port mappings of a pod with address podIP
// and returns the ones that publish a host port. podIP may be the zero Addr
// to validate (and Check) before the pod has an address. Mappings without a hostPort
// only document the container port and publish nothing, as in Kubernetes.
// hostIP must be one of the node's addresses (or 0.0.0.0 / empty for all).
func (m *Manager) Mappings(podIP netip.Addr, ports []runtime.PortMapping) ([]Mapping, error) {
	var out []Mapping
	var local map[netip.Addr]bool // listed only when a hostIP needs checking
	for i, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		where := fmt.Sprintf("ports[%d]", i)
		if podIP.IsValid() && !podIP.Is4() {
			return nil, fmt.Errorf("nft: %s: pod address %v is not IPv4: %w", where, podIP, runtime.ErrInvalidConfig)
		}
		if p.HostPort < 1 || p.HostPort > 65535 {
			return nil, fmt.Errorf("nft: %s: hostPort %d out of range: %w", where, p.HostPort, runtime.ErrInvalidConfig)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("nft: %s: containerPort %d out of range: %w", where, p.ContainerPort, runtime.ErrInvalidConfig)
		}
		proto := p.Protocol
		if proto == "" {
			proto = runtime.ProtocolTCP
		}
		if proto != runtime.ProtocolTCP && proto != runtime.ProtocolUDP {
			return nil, fmt.Errorf("nft: %s: protocol %q: only TCP and UDP can be published: %w", where, p.Protocol, runtime.ErrInvalidConfig)
		}
		mp := Mapping{Protocol: proto, HostPort: uint16(p.HostPort), PodIP: podIP, ContainerPort: uint16(p.ContainerPort)}
		if p.HostIP != "" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil {
				return nil, fmt.Errorf("nft: %s: hostIP %q: %w", where, p.HostIP, runtime.ErrInvalidConfig)
			}
			switch {
			case a.IsUnspecified() && a.Is4():
				// 0.0.0.0 means every address, as no hostIP does.
			case !a.Is4():
				return nil, fmt.Errorf("nft: %s: hostIP %s: only IPv4 is published: %w", where, a, runtime.ErrInvalidConfig)
			case !m.isLocal(&local, a):
				return nil, fmt.Errorf("nft: %s: hostIP %s is not an address of this node: %w", where, a, runtime.ErrInvalidConfig)
			default:
				mp.HostIP = a
			}
		}
		for _, q := range out {
			if mp.overlaps(q) {
				return nil, fmt.Errorf("nft: %s: %s overlaps %s of the same pod: %w", where, mp, q, runtime.ErrInvalidConfig)
			}
		}
		out = append(out, mp)
	}
	return out, nil
}

func (m *Manager) isLocal(local *map[netip.Addr]bool, a netip.Addr) bool {
	if *local == nil {
		l, err := m.localAddrs()
		if err != nil {
			return false // reported as "not an address of this node"
		}
		*local = l
	}
	return (*local)[a]
}

// localAddrs lists the node's IPv4 addresses in the managed namespace.
func (m *Manager) localAddrs() (map[netip.Addr]bool, error) {
	local := map[netip.Addr]bool{}
	err := m.inNetNS(func() error {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("nft: list node addresses: %w", err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					local[ip.Unmap()] = true
				}
			}
		}
		return nil
	})
	return local, err
}

// PodChain returns the chain name of a sandbox. Kernel names are derived
// from a hash unless the ID is already short and plain.
func PodChain(sandboxID string) string {
	if validName.MatchString(sandboxID) && len(sandboxID) <= 32 {
		return podChainPrefix + sandboxID
	}
	sum := sha256.Sum256([]byte(sandboxID))
	return podChainPrefix + hex.EncodeToString(sum[:16])
}

// loaded returns the cached mappings, reading them from the kernel first
// when needed (first use, or after an error).
func (m *Manager) loaded(c *nftables.Conn) (map[string][]Mapping, error) {
	if m.pods != nil {
		return m.pods, nil
	}
	pods, _, err := m.listPods(c)
	if err != nil {
		m.drop()
		return nil, err
	}
	m.pods = pods
	return pods, nil
}

// AddPod publishes a sandbox's mappings. It fails with runtime.ErrConflict,
// naming the holder, when another sandbox holds one of the host ports; the
// caller retries once that sandbox is gone. Adding the same mappings again
// is a no-op; different mappings for the same sandbox replace the old ones
// atomically.
func (m *Manager) AddPod(sandboxID string, maps []Mapping) error {
	if sandboxID == "" {
		return fmt.Errorf("nft: add pod: empty sandbox ID: %w", runtime.ErrInvalidConfig)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	pods, err := m.loaded(c)
	if err != nil {
		return err
	}
	if err := conflicts(sandboxID, maps, pods); err != nil {
		return err
	}
	old, had := pods[sandboxID]
	if had && sameMappings(old, maps) {
		return nil
	}
	if len(maps) > 0 {
		if err := m.ensureLocalnet(); err != nil {
			return fmt.Errorf("nft: sandbox %s: %w", sandboxID, err)
		}
	}
	if had {
		if err := m.queueDelPod(c, sandboxID); err != nil {
			return err
		}
	}
	if len(maps) > 0 {
		ch := c.AddChain(m.chain(PodChain(sandboxID)))
		for _, mp := range maps {
			c.AddRule(&nftables.Rule{Table: m.table, Chain: ch, Exprs: dnatExprs(mp),
				UserData: userdata.AppendString(nil, userdata.TypeComment, encodeMapping(sandboxID, mp))})
		}
		c.AddRule(&nftables.Rule{Table: m.table, Chain: m.chain(chainHostports),
			Exprs:    []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name}},
			UserData: userdata.AppendString(nil, userdata.TypeComment, commentPrefix+sandboxID)})
	}
	if err := m.flush(c); err != nil {
		return fmt.Errorf("nft: sandbox %s: publish ports in table %s: %w", sandboxID, m.cfg.Table, err)
	}
	if len(maps) > 0 {
		pods[sandboxID] = slices.Clone(maps)
	} else {
		delete(pods, sandboxID)
	}
	var udp []uint16
	for _, mp := range maps {
		if mp.Protocol == runtime.ProtocolUDP {
			udp = append(udp, mp.HostPort)
		}
	}
	if err := m.flushUDP(udp); err != nil {
		return fmt.Errorf("nft: sandbox %s: %w", sandboxID, err)
	}
	return nil
}

// Check reports runtime.ErrConflict, naming the holder, when another
// sandbox holds one of the host ports of maps. It lets a caller refuse a pod
// before making anything; AddPod checks again under its lock.
func (m *Manager) Check(sandboxID string, maps []Mapping) error {
	if len(maps) == 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	pods, err := m.loaded(c)
	if err != nil {
		return err
	}
	return conflicts(sandboxID, maps, pods)
}

func conflicts(sandboxID string, maps []Mapping, pods map[string][]Mapping) error {
	ids := make([]string, 0, len(pods))
	for id := range pods {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if id == sandboxID {
			continue
		}
		for _, want := range maps {
			for _, h := range pods[id] {
				if want.overlaps(h) {
					return &ConflictError{Sandbox: sandboxID, Want: want, Holder: id, Held: h}
				}
			}
		}
	}
	return nil
}

// ConflictError says which sandbox holds a host port another one wants. It
// is runtime.ErrConflict (errors.Is).
type ConflictError struct {
	Sandbox string  // the sandbox that was refused
	Want    Mapping // its mapping
	Holder  string  // the sandbox holding the port
	Held    Mapping // the holder's mapping
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("nft: sandbox %s: host port %d/%s is held by sandbox %s (%s): %v",
		e.Sandbox, e.Want.HostPort, e.Want.Protocol, e.Holder, e.Held, runtime.ErrConflict)
}

func (e *ConflictError) Unwrap() error { return runtime.ErrConflict }

// RemovePod deletes a sandbox's rules and chain in one transaction.
// Removing a pod that has none succeeds.
func (m *Manager) RemovePod(sandboxID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	pods, err := m.loaded(c)
	if err != nil {
		return err
	}
	if _, ok := pods[sandboxID]; !ok {
		return nil
	}
	if err := m.queueDelPod(c, sandboxID); err != nil {
		return err
	}
	if err := m.flush(c); err != nil {
		return fmt.Errorf("nft: sandbox %s: remove published ports from table %s: %w", sandboxID, m.cfg.Table, err)
	}
	delete(pods, sandboxID)
	return nil
}

// queueDelPod queues the deletion of a pod's jump rules (found by their
// comment; the kernel needs their handles) and of its chain.
func (m *Manager) queueDelPod(c *nftables.Conn, sandboxID string) error {
	rules, err := c.GetRules(m.table, m.chain(chainHostports))
	if err != nil {
		m.drop()
		return fmt.Errorf("nft: sandbox %s: list chain %s of table %s: %w", sandboxID, chainHostports, m.cfg.Table, err)
	}
	for _, r := range rules {
		if cm, _ := userdata.GetString(r.UserData, userdata.TypeComment); cm == commentPrefix+sandboxID {
			_ = c.DelRule(r) // only fails without a handle, and listed rules have one
		}
	}
	ch := m.chain(PodChain(sandboxID))
	c.FlushChain(ch)
	c.DelChain(ch)
	return nil
}

// Pods returns the published mappings per sandbox ID, read from the kernel.
func (m *Manager) Pods() (map[string][]Mapping, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	pods, _, err := m.listPods(c)
	if err != nil {
		m.drop()
	}
	return pods, err
}

// GC removes the rules of every sandbox for which live returns false, and any
// pod chain no jump leads to (left by a crash of an older version or by hand),
// and returns one line per removed object. It re-reads the kernel rather
// than trust the cache.
func (m *Manager) GC(live func(sandboxID string) bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	pods, jumps, err := m.listPods(c)
	if err != nil {
		m.drop()
		return nil, err
	}
	chains, err := m.podChains(c)
	if err != nil {
		m.drop()
		return nil, err
	}
	var removed []string
	ids := make([]string, 0, len(jumps))
	for id := range jumps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		delete(chains, PodChain(id))
		if live(id) {
			continue
		}
		for _, r := range jumps[id] {
			_ = c.DelRule(r)
		}
		if pods[id] != nil || chains[PodChain(id)] {
			ch := m.chain(PodChain(id))
			c.FlushChain(ch)
			c.DelChain(ch)
		}
		delete(pods, id)
		removed = append(removed, fmt.Sprintf("nftables: table %s: rules of sandbox %s", m.cfg.Table, id))
	}
	for name := range chains {
		ch := m.chain(name)
		c.FlushChain(ch)
		c.DelChain(ch)
		removed = append(removed, fmt.Sprintf("nftables: table %s: orphaned chain %s", m.cfg.Table, name))
	}
	sort.Strings(removed)
	if len(removed) > 0 {
		if err := m.flush(c); err != nil {
			return nil, fmt.Errorf("nft: GC of table %s: %w", m.cfg.Table, err)
		}
	}
	m.pods = pods
	return removed, nil
}

// listPods reads the dispatch chain and the pod chains. A missing table
// means no pods.
func (m *Manager) listPods(c *nftables.Conn) (map[string][]Mapping, map[string][]*nftables.Rule, error) {
	pods := map[string][]Mapping{}
	jumps := map[string][]*nftables.Rule{}
	if _, err := c.ListTableOfFamily(m.cfg.Table, nftables.TableFamilyIPv4); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return pods, jumps, nil
		}
		return nil, nil, fmt.Errorf("nft: look up table %s: %w", m.cfg.Table, err)
	}
	rules, err := c.GetRules(m.table, m.chain(chainHostports))
	if err != nil {
		return nil, nil, fmt.Errorf("nft: list chain %s of table %s: %w", chainHostports, m.cfg.Table, err)
	}
	for _, r := range rules {
		cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		id, ok := strings.CutPrefix(cm, commentPrefix)
		if !ok {
			continue
		}
		jumps[id] = append(jumps[id], r)
	}
	chains, err := m.podChains(c)
	if err != nil {
		return nil, nil, err
	}
	for id := range jumps {
		if !chains[PodChain(id)] {
			continue
		}
		prules, err := c.GetRules(m.table, m.chain(PodChain(id)))
		if err != nil {
			return nil, nil, fmt.Errorf("nft: list chain %s of table %s: %w", PodChain(id), m.cfg.Table, err)
		}
		for _, r := range prules {
			cm, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if mid, mp, ok := decodeMapping(cm); ok && mid == id {
				pods[id] = append(pods[id], mp)
			}
		}
	}
	return pods, jumps, nil
}

func (m *Manager) podChains(c *nftables.Conn) (map[string]bool, error) {
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nft: list chains: %w", err)
	}
	out := map[string]bool{}
	for _, ch := range all {
		if ch.Table != nil && ch.Table.Name == m.cfg.Table && strings.HasPrefix(ch.Name, podChainPrefix) {
			out[ch.Name] = true
		}
	}
	return out, nil
}

// Census lists what the table holds, for leak checks: the table itself, every
// chain, and per chain the number of rules. An absent table gives nil.
func (m *Manager) Census() (_ map[string]int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() {
		if err != nil {
			m.drop()
		}
	}()
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nft: list chains: %w", err)
	}
	var out map[string]int
	for _, ch := range all {
		if ch.Table == nil || ch.Table.Name != m.cfg.Table {
			continue
		}
		if out == nil {
			out = map[string]int{}
		}
		rules, err := c.GetRules(m.table, ch)
		if err != nil {
			return nil, fmt.Errorf("nft: list chain %s: %w", ch.Name, err)
		}
		out[ch.Name] = len(rules)
	}
	if out == nil {
		if _, err := c.ListTableOfFamily(m.cfg.Table, nftables.TableFamilyIPv4); err == nil {
			out = map[string]int{}
		}
	}
	return out, nil
}

func sameMappings(a, b []Mapping) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(s []Mapping) []string {
		out := make([]string, len(s))
		for i, p := range s {
			out[i] = p.String()
		}
		sort.Strings(out)
		return out
	}
	ka, kb := key(a), key(b)
	for i := range ka {
		if ka[i] != kb[i] {
			return false
		}
	}
	return true
}

// encodeMapping writes a mapping into the rule comment, so the kernel holds
// all the state conflict checks and GC need: a restarted agent needs no file.
func encodeMapping(id string, p Mapping) string {
	h := "*"
	if p.HostIP.IsValid() {
		h = p.HostIP.String()
	}
	return fmt.Sprintf("%s%s port=%s %s %d %s %d", commentPrefix, id, p.Protocol, h, p.HostPort, p.PodIP, p.ContainerPort)
}

func decodeMapping(s string) (string, Mapping, bool) {
	rest, ok := strings.CutPrefix(s, commentPrefix)
	if !ok {
		return "", Mapping{}, false
	}
	id, rest, ok := strings.Cut(rest, " port=")
	if !ok {
		return "", Mapping{}, false
	}
	f := strings.Fields(rest)
	if len(f) != 5 {
		return "", Mapping{}, false
	}
	var p Mapping
	p.Protocol = runtime.Protocol(f[0])
	if f[1] != "*" {
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			return "", Mapping{}, false
		}
		p.HostIP = a
	}
	hp, err1 := strconv.ParseUint(f[2], 10, 16)
	ip, err2 := netip.ParseAddr(f[3])
	cp, err3 := strconv.ParseUint(f[4], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil {
		return "", Mapping{}, false
	}
	p.HostPort, p.PodIP, p.ContainerPort = uint16(hp), ip, uint16(cp)
	return id, p, true
}

// dnatExprs: [ip daddr H] meta l4proto P th dport N dnat to podIP:port.
func dnatExprs(p Mapping) []expr.Any {
	var e []expr.Any
	if p.HostIP.IsValid() {
		a := p.HostIP.As4()
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
	}
	proto := byte(unix.IPPROTO_TCP)
	if p.Protocol == runtime.ProtocolUDP {
		proto = unix.IPPROTO_UDP
	}
	pod := p.PodIP.As4()
	e = append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(p.HostPort)},
		&expr.Immediate{Register: 1, Data: pod[:]},
		&expr.Immediate{Register: 2, Data: be16(p.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
	return e
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ifname pads an interface name the way the kernel compares it.
func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func matchIfname(key expr.MetaKey, op expr.CmpOp, name []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: name},
	}
}

// matchPrefix matches the IPv4 source (offset 12) or destination (16).
func matchPrefix(offset uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	a := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func matchCtStatus(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bit), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctState(bits uint32, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: make([]byte, 4)},
	}
}

func matchCtState(bits uint32) []expr.Any     { return ctState(bits, expr.CmpOpNeq) }
func matchCtStateNone(bits uint32) []expr.Any { return ctState(bits, expr.CmpOpEq) }

func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

// ipsDstNAT is the conntrack status bit of a destination-NATed connection
// (IPS_DST_NAT in linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5
