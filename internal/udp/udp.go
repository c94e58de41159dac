// Package udp carries the namespace's UDP flows on host sockets: every flow
// (namespace address and port, destination address and port) gets a
// connected host UDP socket, so replies map back by socket, and the host
// kernel picks the source address (NAT by construction). ICMP errors the
// host socket reports (IP_RECVERR) become ICMP errors to the namespace, so
// clients see "port unreachable" rather than a timeout.
//
// Like internal/tcp, the Table is owned by the engine's event loop: no
// locks, no goroutines, no allocation per datagram once a flow exists.
package udp

import (
	"encoding/binary"
	"unsafe"

	"github.com/nsgate/nsgate/internal/loop"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Env is what the engine lends the UDP translator.
type Env = loop.Env

// Config describes the network.
type Config struct {
	GatewayMAC packet.MAC
	NAT        nat.Mapper // which destinations may leave, and where to
	Broadcast  packet.IPv4Addr
	MTU        int
	MaxFlows   int // 0: DefaultMaxFlows
	// Outbound, if not zero, is the source address of every flow
	// (--outbound-addr).
	Outbound [4]byte
}

// Defaults: conntrack's UDP timeouts.
const (
	DefaultMaxFlows  = 16384
	unrepliedTimeout = 30e9
	repliedTimeout   = 120e9
	scanPeriod       = 1e9
	batch            = 64
)

type key struct {
	nsIP, dstIP     packet.IPv4Addr
	nsPort, dstPort uint16
}

type flow struct {
	key      key
	gen      uint32
	fd       int
	nsMAC    packet.MAC
	replied  bool
	lastSeen int64
	// A forwarded flow's fd is its forward's socket, shared with the
	// forward's other clients: replies go to peer with sendto, and the
	// socket is neither watched nor closed here.
	shared bool
	peer   unix.RawSockaddrInet4
}

// pending is a datagram from the namespace waiting for Flush: its payload
// is a slice of the engine's frame buffer, valid until the engine's batch
// ends.
type pending struct {
	idx  int32
	data []byte
}

// mmsghdr is struct mmsghdr for sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// maxPending is how many datagrams one Flush sends at most.
const maxPending = 64

// Table is the UDP flow table.
type Table struct {
	cfg    Config
	env    Env
	flows  []flow
	free   []int32
	index  map[key]int32
	ipID   uint16
	warned bool
	sweep  loop.Sweep
	errBuf [512]byte
	oob    [256]byte
	pend   [maxPending]pending
	npend  int
	msgs   [maxPending]mmsghdr
	iovs   [maxPending]unix.Iovec
	// Stats.
	Opened, Errors uint64
}

// New returns an empty table.
func New(cfg Config, env Env) *Table {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	return &Table{cfg: cfg, env: env, index: make(map[key]int32), sweep: loop.Sweep{Period: scanPeriod}}
}

// Len returns the number of flows.
func (t *Table) Len() int { return len(t.index) }

const hdrLen = packet.EtherLen + packet.IPv4Len + packet.UDPLen

// HandleFrame sends a datagram from the namespace. Broadcast and multicast
// never leave: DHCP is answered by nsgate, everything else has no host to go
// to.
func (t *Table) HandleFrame(p *packet.Parsed) {
	dst := p.Dst
	if p.DstMAC.IsMulticast() || dst[0] >= 224 || dst == t.cfg.Broadcast || dst.IsZero() || p.Src.IsZero() {
		return
	}
	u := p.UDP
	k := key{nsIP: p.Src, dstIP: dst, nsPort: u.SrcPort(), dstPort: u.DstPort()}
	idx, ok := t.index[k]
	if !ok {
		if idx, ok = t.open(p, k); !ok {
			return
		}
	}
	t.flows[idx].lastSeen = t.env.Now()
	// Queued, not sent: Flush sends each flow's run of datagrams with one
	// sendmmsg, after the engine's batch of frames.
	t.pend[t.npend] = pending{idx: idx, data: p.Payload}
	t.npend++
	if t.npend == maxPending {
		t.Flush()
	}
}

// gsoMax is the most payload one UDP_SEGMENT send may carry.
const gsoMax = 65000

// sendGSO sends pend[i:j], datagrams of one flow, with one sendmsg and
// UDP_SEGMENT when they allow it: at least two, all the same size but the
// last (which may be shorter), at most gsoMax bytes in all. The host stack
// is then walked once for all of them, not once each. iovs[0:j-i] are set.
func (t *Table) sendGSO(fd, i, j int) bool {
	n := j - i
	if n < 2 {
		return false
	}
	size := len(t.pend[i].data)
	total := 0
	for k := i; k < j; k++ {
		l := len(t.pend[k].data)
		if l == 0 || l > size || l < size && k != j-1 {
			return false
		}
		total += l
	}
	if total > gsoMax {
		return false
	}
	// cmsg: SOL_UDP, UDP_SEGMENT, u16 segment size.
	var oob [unix.SizeofCmsghdr + 8]byte
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	*(*uint16)(unsafe.Pointer(&oob[unix.SizeofCmsghdr])) = uint16(size)
	msg := unix.Msghdr{Iov: &t.iovs[0], Control: &oob[0], Name: t.msgs[0].hdr.Name, Namelen: t.msgs[0].hdr.Namelen}
	msg.SetIovlen(n)
	msg.SetControllen(unix.CmsgSpace(2))
	_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	// EIO/EINVAL: no GSO for this route; let sendmmsg send them one by one.
	return e == 0 || e == unix.EAGAIN || e == unix.ECONNREFUSED
}

// Flush sends the queued datagrams. Errors (a full buffer, a pending ICMP
// error) drop datagrams, as a network would; the error queue is read on
// EPOLLERR. The engine calls it before reusing its frame buffers.
func (t *Table) Flush() {
	for i := 0; i < t.npend; {
		idx := t.pend[i].idx
		j := i
		for ; j < t.npend && t.pend[j].idx == idx; j++ {
			d := t.pend[j].data
			k := j - i
			t.iovs[k] = unix.Iovec{Len: uint64(len(d))}
			if len(d) > 0 {
				t.iovs[k].Base = &d[0]
			}
			t.msgs[k] = mmsghdr{hdr: unix.Msghdr{Iov: &t.iovs[k], Iovlen: 1}}
			if f := &t.flows[idx]; f.shared {
				t.msgs[k].hdr.Name = (*byte)(unsafe.Pointer(&f.peer))
				t.msgs[k].hdr.Namelen = unix.SizeofSockaddrInet4
			}
		}
		fd := t.flows[idx].fd
		if fd >= 0 && t.sendGSO(fd, i, j) {
			i = j
			continue
		}
		for sent := 0; fd >= 0 && sent < j-i; {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&t.msgs[sent])), uintptr(j-i-sent),
				unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
			if e == unix.EINTR {
				continue
			}
			if e != 0 || r == 0 {
				sent++ // drop the datagram the kernel refused, try the rest
				continue
			}
			sent += int(r)
		}
		i = j
	}
	for i := range t.pend[:t.npend] {
		t.pend[i].data = nil
	}
	t.npend = 0
}

func (t *Table) open(p *packet.Parsed, k key) (int32, bool) {
	if len(t.index) >= t.cfg.MaxFlows {
		if !t.warned {
			t.warned = true
			t.env.Logf("udp: flow table full (%d flows): dropping datagrams of new flows", t.cfg.MaxFlows)
		}
		return 0, false
	}
	addr, ok := t.cfg.NAT.Host(k.dstIP)
	if !ok {
		// Prohibited (--disable-host-loopback) or nothing there: say so at
		// once, as a router would.
		t.unreachable(p, 13)
		return 0, false
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.env.Logf("udp: socket: %v", err)
		return 0, false
	}
	unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVERR, 1)
	if t.cfg.Outbound != [4]byte{} {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: t.cfg.Outbound}); err != nil {
			t.env.Logf("udp: bind to --outbound-addr %v: %v", packet.IPv4Addr(t.cfg.Outbound), err)
			unix.Close(fd)
			t.unreachable(p, 1)
			return 0, false
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr, Port: int(k.dstPort)}); err != nil {
		unix.Close(fd)
		t.unreachable(p, 1)
		return 0, false
	}
	idx := t.alloc()
	f := &t.flows[idx]
	*f = flow{key: k, gen: f.gen + 1, fd: fd, nsMAC: p.SrcMAC, lastSeen: t.env.Now()}
	if err := t.env.Watch(fd, unix.EPOLLIN, idx, f.gen, true); err != nil {
		t.env.Logf("udp: epoll: %v", err)
		unix.Close(fd)
		f.fd = -1
		t.free = append(t.free, idx)
		return 0, false
	}
	t.index[k] = idx
	t.Opened++
	return idx, true
}

// alloc returns a free flow slot.
func (t *Table) alloc() int32 { return loop.Alloc(&t.flows, &t.free, flow{fd: -1}) }

// HandleEvent reads replies (and errors) from flow idx's socket.
func (t *Table) HandleEvent(idx int32, gen uint32, events uint32) {
	if int(idx) >= len(t.flows) || t.flows[idx].gen != gen || t.flows[idx].fd < 0 {
		return
	}
	f := &t.flows[idx]
	if events&unix.EPOLLERR != 0 {
		t.readErrors(f)
	}
	if events&unix.EPOLLIN == 0 {
		return
	}
	room := t.cfg.MTU - packet.IPv4Len - packet.UDPLen
	for i := 0; i < batch; i++ {
		buf := t.env.Frame()
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(f.fd), uintptr(unsafe.Pointer(&buf[hdrLen])), uintptr(room),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			if e != unix.EAGAIN {
				t.readErrors(f) // ECONNREFUSED and friends: the error queue says more
			}
			return
		}
		n := int(r)
		if n > room {
			t.Errors++ // larger than the namespace's MTU: it could not take it whole
			continue
		}
		f.replied = true
		f.lastSeen = t.env.Now()
		t.sendUDP(f, buf, n)
	}
}

// sendUDP frames n payload bytes already at buf[hdrLen:] as a datagram from
// the flow's destination to the namespace, with a partial checksum.
func (t *Table) sendUDP(f *flow, buf []byte, n int) {
	l4 := packet.UDPLen + n
	packet.Ether(buf).SetHeader(f.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeIPv4)
	t.ipID++
	packet.IPv4(buf[packet.EtherLen:]).SetHeader(packet.IPv4Len+l4, t.ipID, 64, packet.ProtoUDP, f.key.dstIP, f.key.nsIP)
	u := buf[packet.EtherLen+packet.IPv4Len:]
	binary.BigEndian.PutUint16(u[0:2], f.key.dstPort)
	binary.BigEndian.PutUint16(u[2:4], f.key.nsPort)
	binary.BigEndian.PutUint16(u[4:6], uint16(l4))
	binary.BigEndian.PutUint16(u[6:8], packet.Fold(packet.PseudoHeaderSum(f.key.dstIP, f.key.nsIP, packet.ProtoUDP, l4)))
	t.env.Send(packet.EtherLen+packet.IPv4Len+l4, packet.EtherLen+packet.IPv4Len, 6)
}

// readErrors drains the socket's error queue and reports ICMP errors to the
// namespace, quoting the flow's datagram as the original would have been.
func (t *Table) readErrors(f *flow) {
	for i := 0; i < batch; i++ {
		var iov unix.Iovec
		iov.Base = &t.errBuf[0]
		iov.SetLen(len(t.errBuf))
		var msg unix.Msghdr
		msg.Iov = &iov
		msg.Iovlen = 1
		msg.Control = &t.oob[0]
		msg.SetControllen(len(t.oob))
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(f.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if e != 0 {
			return
		}
		ee, ok := extendedErr(t.oob[:msg.Controllen])
		if !ok || ee.Origin != unix.SO_EE_ORIGIN_ICMP {
			continue
		}
		t.Errors++
		t.icmpError(f, ee.Type, ee.Code, ee.Info, int(r))
	}
}

// extendedErr finds the IP_RECVERR control message.
func extendedErr(oob []byte) (unix.SockExtendedErr, bool) {
	var ee unix.SockExtendedErr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return ee, false
		}
		data := oob[unix.SizeofCmsghdr:l]
		if h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR && len(data) >= int(unsafe.Sizeof(ee)) {
			ee = *(*unix.SockExtendedErr)(unsafe.Pointer(&data[0]))
			return ee, true
		}
		next := (l + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return ee, false
}

// icmpError sends an ICMP error (type, code) about the flow to the
// namespace: from the flow's destination, quoting an IPv4 and UDP header of
// the namespace's datagram (payloadLen bytes long).
func (t *Table) icmpError(f *flow, typ, code uint8, info uint32, payloadLen int) {
	buf := t.env.Frame()
	const quote = packet.IPv4Len + packet.UDPLen
	l4 := packet.ICMPEchoLen + quote
	packet.Ether(buf).SetHeader(f.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeIPv4)
	t.ipID++
	packet.IPv4(buf[packet.EtherLen:]).SetHeader(packet.IPv4Len+l4, t.ipID, 64, packet.ProtoICMP, f.key.dstIP, f.key.nsIP)
	m := buf[packet.EtherLen+packet.IPv4Len : packet.EtherLen+packet.IPv4Len+l4]
	clear(m[:packet.ICMPEchoLen])
	if typ == packet.ICMPUnreachable && code == 4 { // fragmentation needed: next-hop MTU
		binary.BigEndian.PutUint16(m[6:8], uint16(info))
	}
	q := m[packet.ICMPEchoLen:]
	packet.IPv4(q).SetHeader(quote+payloadLen, 0, 64, packet.ProtoUDP, f.key.nsIP, f.key.dstIP)
	binary.BigEndian.PutUint16(q[20:22], f.key.nsPort)
	binary.BigEndian.PutUint16(q[22:24], f.key.dstPort)
	binary.BigEndian.PutUint16(q[24:26], uint16(packet.UDPLen+payloadLen))
	binary.BigEndian.PutUint16(q[26:28], 0)
	packet.ICMP(m).SetTypeCode(typ, code)
	t.env.Send(packet.EtherLen+packet.IPv4Len+l4, 0, 0)
}

// unreachable answers a datagram that cannot leave with ICMP destination
// unreachable (code), quoting its header and first 8 bytes.
func (t *Table) unreachable(p *packet.Parsed, code uint8) {
	buf := t.env.Frame()
	quote := min(len(p.IP), packet.IPv4Len+8)
	if p.IP.IHL() != packet.IPv4Len {
		return // not worth quoting options
	}
	l4 := packet.ICMPEchoLen + quote
	packet.Ether(buf).SetHeader(p.SrcMAC, t.cfg.GatewayMAC, packet.EtherTypeIPv4)
	t.ipID++
	packet.IPv4(buf[packet.EtherLen:]).SetHeader(packet.IPv4Len+l4, t.ipID, 64, packet.ProtoICMP, t.cfg.NAT.Gateway, p.Src)
	m := buf[packet.EtherLen+packet.IPv4Len : packet.EtherLen+packet.IPv4Len+l4]
	clear(m[:packet.ICMPEchoLen])
	copy(m[packet.ICMPEchoLen:], p.IP[:quote])
	packet.ICMP(m).SetTypeCode(packet.ICMPUnreachable, code)
	t.env.Send(packet.EtherLen+packet.IPv4Len+l4, 0, 0)
}

// remove closes a flow.
func (t *Table) remove(idx int32) {
	f := &t.flows[idx]
	if !f.shared {
		t.env.Unwatch(f.fd)
		unix.Close(f.fd)
	}
	delete(t.index, f.key)
	*f = flow{fd: -1, gen: f.gen}
	t.free = append(t.free, idx)
}

// NextTimer returns when Tick should next run, or 0.
func (t *Table) NextTimer() int64 { return t.sweep.Next(t.env.Now(), len(t.index) > 0) }

// Tick expires idle flows: 30 s if only the namespace spoke, 120 s once
// both did, as the kernel's conntrack does.
func (t *Table) Tick() {
	now := t.env.Now()
	if !t.sweep.Due(now) {
		return
	}
	for i := range t.flows {
		f := &t.flows[i]
		if f.fd < 0 {
			continue
		}
		limit := int64(unrepliedTimeout)
		if f.replied {
			limit = repliedTimeout
		}
		if now-f.lastSeen > limit {
			t.remove(int32(i))
		}
	}
}
