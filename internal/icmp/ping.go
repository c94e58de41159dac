package icmp

import (
	"os"
	"time"
	"unsafe"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// PingConfig describes the network for Pings.
type PingConfig struct {
	GatewayMAC packet.MAC
	// NAT maps a destination to a host address, or refuses it, and holds
	// the egress policy: a denied echo request is answered with ICMP
	// administratively prohibited from the gateway.
	NAT      nat.Mapper
	MaxFlows int
	// Budget, if set, is the flow budget shared with the other tables.
	Budget *flow.Budget
}

const (
	pingTimeout  = 30 * time.Second
	pingScan     = time.Second
	maxPingFlows = 1024
	pingBatch    = 32
)

// pingFlow is one echo flow: flow.Key with the namespace's echo
// identifier in NSPort, and the ping socket that carries it.
type pingFlow struct {
	key      flow.Key
	fd       int
	nsMAC    packet.MAC
	lastSeen time.Duration
	opened   time.Duration
	toHost   uint64 // echo payload bytes each way
	toNS     uint64
}

// Pings carries echo requests to other hosts on unprivileged ping sockets
// (SOCK_DGRAM, IPPROTO_ICMP or IPPROTO_ICMPV6): one per namespace address, identifier and
// destination. The kernel gives each socket an identifier of its own;
// replies get the namespace's back, with its sequence numbers and data.
type Pings struct {
	cfg    PingConfig
	env    flow.Env
	flows  *flow.Table[pingFlow]
	ipID   uint16
	denied bool // ping sockets are not allowed: said once
	sweep  flow.Sweep
	// Stats: flows opened, refused at the flow limit, denied by the
	// egress policy.
	Opened, FlowLimit, Denied uint64
}

// NewPings returns an empty table.
func NewPings(cfg PingConfig, env flow.Env) *Pings {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = maxPingFlows
	}
	t := &Pings{cfg: cfg, env: env, flows: flow.NewTable(cfg.MaxFlows, pingFlow{fd: -1}), sweep: flow.Sweep{Period: pingScan}}
	t.flows.SetBudget(cfg.Budget)
	return t
}

// HandleFrame sends an echo request from the namespace.
func (t *Pings) HandleFrame(p *packet.Parsed) {
	m := p.ICMP
	request := uint8(packet.ICMPEchoRequest)
	if p.IP6 != nil {
		request = packet.ICMPv6EchoRequest
	}
	if len(m) < packet.ICMPEchoLen || m.Type() != request || m.Code() != 0 || p.SrcMAC.IsMulticast() {
		return
	}
	k := flow.Key{NS: p.Src, Dst: p.Dst, NSPort: m.EchoID()}
	idx, ok := t.flows.Lookup(k)
	if !ok {
		if idx, ok = t.open(p, k); !ok {
			return
		}
	}
	f := t.flows.At(idx)
	f.lastSeen = t.env.Now()
	f.toHost += uint64(len(m) - packet.ICMPEchoLen)
	// The kernel rewrites the identifier and the checksum.
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(f.fd), uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
}

func (t *Pings) open(p *packet.Parsed, k flow.Key) (int32, bool) {
	addr, ok := t.cfg.NAT.Host(k.Dst)
	if !ok || addr.Is4() != k.NS.Is4() {
		return 0, false
	}
	if !t.cfg.NAT.Allowed(addr, 0) {
		t.Denied++
		t.env.Logf("icmp: echo to %v denied by the egress policy", addr)
		SendUnreachable(t.env, p, packet.ICMPAdminProhibited, t.cfg.NAT.Router(p.Src), t.cfg.GatewayMAC)
		return 0, false
	}
	if t.flows.Full() {
		t.FlowLimit++
		t.env.Logf("icmp: flow limit reached (%d echo flows, or --max-flows of all protocols): dropping new echo requests", t.flows.Max())
		return 0, false
	}
	proto := unix.IPPROTO_ICMP
	if !addr.Is4() {
		proto = unix.IPPROTO_ICMPV6
	}
	fd, err := unix.Socket(flow.Family(addr), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		if !t.denied {
			t.denied = true
			t.env.Logf("ping to other hosts is off: ping sockets are not allowed for group %d (%v); "+
				"allow them with: sysctl -w net.ipv4.ping_group_range=\"%d %d\" (pings to the gateway still work)",
				os.Getgid(), err, os.Getgid(), os.Getgid())
		}
		return 0, false
	}
	if err := unix.Connect(fd, flow.Sockaddr(addr, 0)); err != nil {
		unix.Close(fd)
		return 0, false
	}
	idx, f := t.flows.Add(k)
	*f = pingFlow{key: k, fd: fd, nsMAC: p.SrcMAC, lastSeen: t.env.Now(), opened: t.env.Now()}
	if err := t.env.Watch(fd, unix.EPOLLIN, idx, t.flows.Gen(idx), true); err != nil {
		unix.Close(fd)
		t.flows.Remove(idx)
		return 0, false
	}
	t.Opened++
	return idx, true
}

// AppendFlows appends a description of each open flow to dst.
func (t *Pings) AppendFlows(dst []flow.Info) []flow.Info {
	now := t.env.Now()
	for _, f := range t.flows.All {
		dst = append(dst, flow.Info{Proto: "icmp", Key: f.key, Age: now - f.opened, ToHost: f.toHost, ToNS: f.toNS})
	}
	return dst
}

// HandleEvent reads echo replies for flow idx.
func (t *Pings) HandleEvent(idx int32, gen uint32, events uint32) {
	f := t.flows.Event(idx, gen)
	if f == nil {
		return
	}
	ipLen := packet.IPHeaderLen(f.key.NS)
	off := packet.EtherLen + ipLen
	reply := uint8(packet.ICMPEchoReply)
	if ipLen == packet.IPv6Len {
		reply = packet.ICMPv6EchoReply
	}
	for i := 0; i < pingBatch; i++ {
		buf := t.env.Frame()
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(f.fd), uintptr(unsafe.Pointer(&buf[off])), uintptr(65535-ipLen),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return
		}
		n := int(r)
		m := packet.ICMP(buf[off : off+n])
		if n < packet.ICMPEchoLen || m.Type() != reply {
			continue
		}
		f.lastSeen = t.env.Now()
		f.toNS += uint64(n - packet.ICMPEchoLen)
		m.SetEchoID(f.key.NSPort)
		proto := uint8(packet.ProtoICMP)
		if reply == packet.ICMPv6EchoReply {
			proto = packet.ProtoICMPv6
			m.SetICMPv6Checksum(f.key.Dst, f.key.NS)
		} else {
			m.SetTypeCode(packet.ICMPEchoReply, 0)
		}
		packet.Ether(buf).SetHeader(f.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeOf(f.key.NS))
		t.ipID++
		packet.EncodeIP(buf[packet.EtherLen:], &packet.IPFields{Protocol: proto, Src: f.key.Dst, Dst: f.key.NS, L4Len: n, ID: t.ipID})
		t.env.Send(off+n, packet.Offload{})
	}
}

// NextTimer returns when Tick should next run, or 0.
func (t *Pings) NextTimer() time.Duration { return t.sweep.Next(t.env.Now(), t.flows.Len() > 0) }

// Tick closes ping flows idle for 30 s.
func (t *Pings) Tick() {
	now := t.env.Now()
	if !t.sweep.Due(now) {
		return
	}
	for idx, f := range t.flows.All {
		if now-f.lastSeen > pingTimeout {
			t.remove(idx)
		}
	}
}

// Reset closes every ping flow: the VM behind them has gone (see
// engine.Peer).
func (t *Pings) Reset() {
	for idx := range t.flows.All {
		t.remove(idx)
	}
}

func (t *Pings) remove(idx int32) {
	f := t.flows.At(idx)
	t.env.Unwatch(f.fd)
	unix.Close(f.fd)
	t.flows.Remove(idx)
}

// Len returns the number of echo flows.
func (t *Pings) Len() int { return t.flows.Len() }
