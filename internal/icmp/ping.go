package icmp

import (
	"encoding/binary"
	"os"
	"unsafe"

	"github.com/nsgate/nsgate/internal/loop"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Env is what the engine lends the ping translator.
type Env = loop.Env

// PingConfig describes the network for Pings.
type PingConfig struct {
	GatewayMAC packet.MAC
	// HostAddr maps a destination to a host address, or refuses it.
	HostAddr func(dst packet.IPv4Addr) ([4]byte, bool)
	MaxFlows int
}

const (
	pingTimeout   = 30e9
	pingScan      = 1e9
	maxPingFlows  = 1024
	pingBatch     = 32
	icmpHeaderLen = 8
)

type pingKey struct {
	nsIP, dstIP packet.IPv4Addr
	id          uint16
}

type pingFlow struct {
	key      pingKey
	gen      uint32
	fd       int
	nsMAC    packet.MAC
	lastSeen int64
}

// Pings carries echo requests to other hosts on unprivileged ping sockets
// (SOCK_DGRAM, IPPROTO_ICMP): one per namespace address, identifier and
// destination. The kernel gives each socket an identifier of its own;
// replies get the namespace's back, with its sequence numbers and data.
type Pings struct {
	cfg    PingConfig
	env    Env
	flows  []pingFlow
	free   []int32
	index  map[pingKey]int32
	ipID   uint16
	denied bool // ping sockets are not allowed: said once
	sweep  loop.Sweep
}

// NewPings returns an empty table.
func NewPings(cfg PingConfig, env Env) *Pings {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = maxPingFlows
	}
	return &Pings{cfg: cfg, env: env, index: make(map[pingKey]int32), sweep: loop.Sweep{Period: pingScan}}
}

// HandleFrame sends an echo request from the namespace.
func (t *Pings) HandleFrame(p *packet.Parsed) {
	m := p.ICMP
	if m.Type() != packet.ICMPEchoRequest || m.Code() != 0 || p.SrcMAC.IsMulticast() {
		return
	}
	k := pingKey{nsIP: p.Src, dstIP: p.Dst, id: m.EchoID()}
	idx, ok := t.index[k]
	if !ok {
		if idx, ok = t.open(p, k); !ok {
			return
		}
	}
	f := &t.flows[idx]
	f.lastSeen = t.env.Now()
	// The kernel rewrites the identifier and the checksum.
	_, _, _ = unix.Syscall6(unix.SYS_SENDTO, uintptr(f.fd), uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)),
		unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
}

func (t *Pings) open(p *packet.Parsed, k pingKey) (int32, bool) {
	if len(t.index) >= t.cfg.MaxFlows {
		return 0, false
	}
	addr, ok := t.cfg.HostAddr(k.dstIP)
	if !ok {
		return 0, false
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		if !t.denied {
			t.denied = true
			t.env.Logf("ping to other hosts is off: ping sockets are not allowed for group %d (%v); "+
				"allow them with: sysctl -w net.ipv4.ping_group_range=\"%d %d\" (pings to the gateway still work)",
				os.Getgid(), err, os.Getgid(), os.Getgid())
		}
		return 0, false
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr}); err != nil {
		unix.Close(fd)
		return 0, false
	}
	idx := loop.Alloc(&t.flows, &t.free, pingFlow{fd: -1})
	f := &t.flows[idx]
	*f = pingFlow{key: k, gen: f.gen + 1, fd: fd, nsMAC: p.SrcMAC, lastSeen: t.env.Now()}
	if err := t.env.Watch(fd, unix.EPOLLIN, idx, f.gen, true); err != nil {
		unix.Close(fd)
		f.fd = -1
		t.free = append(t.free, idx)
		return 0, false
	}
	t.index[k] = idx
	return idx, true
}

// HandleEvent reads echo replies for flow idx.
func (t *Pings) HandleEvent(idx int32, gen uint32, events uint32) {
	if int(idx) >= len(t.flows) || t.flows[idx].gen != gen || t.flows[idx].fd < 0 {
		return
	}
	f := &t.flows[idx]
	const off = packet.EtherLen + packet.IPv4Len
	for i := 0; i < pingBatch; i++ {
		buf := t.env.Frame()
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(f.fd), uintptr(unsafe.Pointer(&buf[off])), uintptr(65535-packet.IPv4Len),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return
		}
		n := int(r)
		if n < icmpHeaderLen || buf[off] != packet.ICMPEchoReply {
			continue
		}
		f.lastSeen = t.env.Now()
		m := packet.ICMP(buf[off : off+n])
		binary.BigEndian.PutUint16(m[4:6], f.key.id)
		m.SetTypeCode(packet.ICMPEchoReply, 0)
		packet.Ether(buf).SetHeader(f.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeIPv4)
		t.ipID++
		packet.IPv4(buf[packet.EtherLen:]).SetHeader(packet.IPv4Len+n, t.ipID, 64, packet.ProtoICMP, f.key.dstIP, f.key.nsIP)
		t.env.Send(off+n, 0, 0)
	}
}

// NextTimer returns when Tick should next run, or 0.
func (t *Pings) NextTimer() int64 { return t.sweep.Next(t.env.Now(), len(t.index) > 0) }

// Tick closes ping flows idle for 30 s.
func (t *Pings) Tick() {
	now := t.env.Now()
	if !t.sweep.Due(now) {
		return
	}
	for i := range t.flows {
		f := &t.flows[i]
		if f.fd >= 0 && now-f.lastSeen > pingTimeout {
			t.env.Unwatch(f.fd)
			unix.Close(f.fd)
			delete(t.index, f.key)
			*f = pingFlow{fd: -1, gen: f.gen}
			t.free = append(t.free, int32(i))
		}
	}
}
