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
	"time"
	"unsafe"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/icmp"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Config describes the network.
type Config struct {
	GatewayMAC packet.MAC
	NAT        nat.Mapper // which destinations may leave, and where to
	Broadcast  packet.Addr
	MTU        int
	MaxFlows   int // 0: DefaultMaxFlows
	// Budget, if set, is the flow budget shared with the other tables.
	Budget *flow.Budget
	// Outbound holds the source addresses of every flow's socket, by
	// family (--outbound-addr, --outbound-addr6).
	Outbound flow.Outbound
}

// Defaults: conntrack's UDP timeouts.
const (
	DefaultMaxFlows  = 16384
	unrepliedTimeout = 30 * time.Second
	repliedTimeout   = 120 * time.Second
	scanPeriod       = time.Second
	batch            = 64
	// pressureIdle is how long a flow must have been quiet to be evicted
	// when the table is full, at most once per pressureScan.
	pressureIdle = 5 * time.Second
	pressureScan = time.Second
)

// udpFlow is one flow: the namespace's address and port (key.NS) and the
// connected host socket fd that carries its datagrams.
type udpFlow struct {
	key      flow.Key
	fd       int
	nsMAC    packet.MAC
	replied  bool
	lastSeen time.Duration
	opened   time.Duration
	toHost   uint64 // payload bytes from the namespace
	toNS     uint64 // payload bytes to the namespace
	// A forwarded flow's fd is its forward's socket, shared with the
	// forward's other clients: replies go to peer with sendto, and the
	// socket is neither watched nor closed here.
	shared  bool
	peer    unix.RawSockaddrInet6 // room for either family's address
	peerLen uint32
}

// pending is a datagram from the namespace waiting for Flush: its payload
// is a slice of the engine's frame buffer, valid until the engine's batch
// ends. seg > 0 makes it a USO super-datagram: datagrams of seg bytes.
type pending struct {
	idx  int32
	data []byte
	seg  int
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
	cfg   Config
	env   flow.Env
	flows *flow.Table[udpFlow]
	ipID  uint16
	sweep flow.Sweep
	// lastEvict is when a full table last looked for idle flows to evict.
	lastEvict time.Duration
	errBuf    [512]byte
	oob       [256]byte
	pend      [maxPending]pending
	npend     int
	msgs      [maxPending]mmsghdr
	iovs      [maxPending]unix.Iovec
	// Stats: flows opened, datagrams from the host dropped (too big for
	// the namespace's MTU, or for a forward over the flow limit), ICMP
	// errors passed on; new flows refused at the flow limit, idle flows
	// evicted to make room, flows the egress policy refused.
	Opened, Dropped, ICMPErrors uint64
	FlowLimit, Evicted, Denied  uint64
}

// New returns an empty table.
func New(cfg Config, env flow.Env) *Table {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	t := &Table{cfg: cfg, env: env, flows: flow.NewTable(cfg.MaxFlows, udpFlow{fd: -1}), sweep: flow.Sweep{Period: scanPeriod}}
	t.flows.SetBudget(cfg.Budget)
	return t
}

// Len returns the number of flows.
func (t *Table) Len() int { return t.flows.Len() }

// Offsets of a datagram to the namespace in its frame. The UDP header
// follows an IPv4 or IPv6 header, by the family (payloadOff).
const ipOff = packet.EtherLen

// payloadOff returns where the payload of a datagram to the namespace
// address ns starts in its frame.
func payloadOff(ns packet.Addr) int { return ipOff + packet.IPHeaderLen(ns) + packet.UDPLen }

// room returns the most payload one datagram to ns may carry within the MTU.
func (t *Table) room(ns packet.Addr) int {
	return t.cfg.MTU - packet.IPHeaderLen(ns) - packet.UDPLen
}

// HandleFrame sends a datagram from the namespace. Broadcast and multicast
// never leave: DHCP is answered by nsgate, everything else has no host to go
// to.
func (t *Table) HandleFrame(p *packet.Parsed) {
	dst := p.Dst
	// 224.0.0.0 and up: multicast, class E and the limited broadcast.
	if p.DstMAC.IsMulticast() || dst.Is4() && dst.As4()[0] >= 224 || dst.Is6Multicast() || dst == t.cfg.Broadcast ||
		dst.IsUnspecified() || p.Src.IsUnspecified() {
		return
	}
	u := p.UDP
	k := flow.Key{NS: p.Src, Dst: dst, NSPort: u.SrcPort(), DstPort: u.DstPort()}
	idx, ok := t.flows.Lookup(k)
	if !ok {
		if idx, ok = t.open(p, k); !ok {
			return
		}
	}
	f := t.flows.At(idx)
	f.lastSeen = t.env.Now()
	f.toHost += uint64(len(p.Payload))
	seg := 0
	if p.Offload.GSO == packet.GSOUDPL4 && len(p.Payload) > int(p.Offload.GSOSize) {
		seg = int(p.Offload.GSOSize) // USO: the engine checked the count
	}
	// Queued, not sent: Flush sends each flow's run of datagrams with one
	// sendmmsg, after the engine's batch of frames.
	t.pend[t.npend] = pending{idx: idx, data: p.Payload, seg: seg}
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
	return t.segmented(fd, n, size)
}

// segmented sends iovs[:n] as datagrams of size bytes with one sendmsg and
// UDP_SEGMENT, to msgs[0]'s address if it has one. It reports false when
// the kernel would not segment them (no GSO on the route: EIO; a segment
// over its MTU: EMSGSIZE; ...), so that the caller sends them one by one. A
// full buffer or a pending ICMP error drops them, as a network would.
func (t *Table) segmented(fd, n, size int) bool {
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
	return e == 0 || e == unix.EAGAIN || e == unix.ECONNREFUSED
}

// message sets msgs[k] to send iovs[k], to the flow's peer if its socket
// is shared.
func (t *Table) message(k int, f *udpFlow) {
	t.msgs[k] = mmsghdr{hdr: unix.Msghdr{Iov: &t.iovs[k], Iovlen: 1}}
	if f.shared {
		t.msgs[k].hdr.Name = (*byte)(unsafe.Pointer(&f.peer))
		t.msgs[k].hdr.Namelen = f.peerLen
	}
}

// each sends msgs[:n] with sendmmsg, dropping any datagram the kernel
// refuses and trying the rest.
func (t *Table) each(fd, n int) {
	for sent := 0; sent < n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&t.msgs[sent])), uintptr(n-sent),
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || r == 0 {
			sent++
			continue
		}
		sent += int(r)
	}
}

// super sends a USO super-datagram from the namespace as the datagrams it
// stands for: with UDP_SEGMENT at its own segment size, or cut here when
// the route has no GSO.
func (t *Table) super(p *pending) {
	f := t.flows.At(p.idx)
	if f.fd < 0 {
		return
	}
	t.iovs[0] = unix.Iovec{Base: &p.data[0], Len: uint64(len(p.data))}
	t.message(0, f)
	if t.segmented(f.fd, 1, p.seg) {
		return
	}
	for rest := p.data; len(rest) > 0; {
		k := 0
		for ; k < maxPending && len(rest) > 0; k++ {
			d := rest[:min(p.seg, len(rest))]
			rest = rest[len(d):]
			t.iovs[k] = unix.Iovec{Base: &d[0], Len: uint64(len(d))}
			t.message(k, f)
		}
		t.each(f.fd, k)
	}
}

// Flush sends the queued datagrams. Errors (a full buffer, a pending ICMP
// error) drop datagrams, as a network would; the error queue is read on
// EPOLLERR. The engine calls it before reusing its frame buffers.
func (t *Table) Flush() {
	for i := 0; i < t.npend; {
		if t.pend[i].seg > 0 {
			t.super(&t.pend[i])
			i++
			continue
		}
		idx := t.pend[i].idx
		f := t.flows.At(idx)
		j := i
		for ; j < t.npend && t.pend[j].idx == idx && t.pend[j].seg == 0; j++ {
			d := t.pend[j].data
			k := j - i
			t.iovs[k] = unix.Iovec{Len: uint64(len(d))}
			if len(d) > 0 {
				t.iovs[k].Base = &d[0]
			}
			t.message(k, f)
		}
		if f.fd >= 0 && !t.sendGSO(f.fd, i, j) {
			t.each(f.fd, j-i)
		}
		i = j
	}
	for i := range t.pend[:t.npend] {
		t.pend[i].data = nil
	}
	t.npend = 0
}

func (t *Table) open(p *packet.Parsed, k flow.Key) (int32, bool) {
	addr, ok := t.cfg.NAT.Host(k.Dst)
	if !ok {
		// Say so at once, as a router would: the host's loopback with
		// --disable-host-loopback as slirp4netns does ("Network is
		// unreachable"), anything else as administratively prohibited.
		code := uint8(packet.ICMPAdminProhibited)
		if t.cfg.NAT.HostLoopbackDisabled(k.Dst) {
			code = packet.ICMPNetUnreachable
		}
		t.unreachable(p, code)
		return 0, false
	}
	if !t.cfg.NAT.Allowed(addr, k.DstPort) {
		t.Denied++
		t.env.Logf("udp: flow to %v:%d denied by the egress policy", addr, k.DstPort)
		t.unreachable(p, packet.ICMPAdminProhibited)
		return 0, false
	}
	if t.flows.Full() && !t.evictIdle() {
		// Say so at once: the client's connected socket gets
		// ECONNREFUSED rather than waiting for a reply that cannot come.
		t.FlowLimit++
		t.env.Logf("udp: flow limit reached (%d UDP flows, or --max-flows of all protocols): refusing new flows with ICMP port unreachable",
			t.flows.Max())
		t.unreachable(p, packet.ICMPPortUnreachable)
		return 0, false
	}
	fd, err := unix.Socket(flow.Family(addr), unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.env.Logf("udp: socket: %v", err)
		return 0, false
	}
	if addr.Is4() {
		unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_RECVERR, 1)
	} else {
		unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
	}
	if src := t.cfg.Outbound.For(addr); !src.IsZero() {
		if err := unix.Bind(fd, flow.Sockaddr(src, 0)); err != nil {
			t.env.Logf("udp: bind to %s %v: %v", t.cfg.Outbound.Option(addr), src, err)
			unix.Close(fd)
			t.unreachable(p, packet.ICMPHostUnreachable)
			return 0, false
		}
	}
	if err := unix.Connect(fd, flow.Sockaddr(addr, k.DstPort)); err != nil {
		unix.Close(fd)
		t.unreachable(p, packet.ICMPHostUnreachable)
		return 0, false
	}
	idx, f := t.flows.Add(k)
	*f = udpFlow{key: k, fd: fd, nsMAC: p.SrcMAC, lastSeen: t.env.Now(), opened: t.env.Now()}
	if err := t.env.Watch(fd, unix.EPOLLIN, idx, t.flows.Gen(idx), true); err != nil {
		t.env.Logf("udp: epoll: %v", err)
		unix.Close(fd)
		t.flows.Remove(idx)
		return 0, false
	}
	t.Opened++
	return idx, true
}

// HandleEvent reads replies (and errors) from flow idx's socket.
func (t *Table) HandleEvent(idx int32, gen uint32, events uint32) {
	f := t.flows.Event(idx, gen)
	if f == nil {
		return
	}
	if events&unix.EPOLLERR != 0 {
		t.readErrors(f)
	}
	if events&unix.EPOLLIN == 0 {
		return
	}
	room, off := t.room(f.key.NS), payloadOff(f.key.NS)
	for i := 0; i < batch; i++ {
		buf := t.env.Frame()
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(f.fd), uintptr(unsafe.Pointer(&buf[off])), uintptr(room),
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
			t.Dropped++ // larger than the namespace's MTU: it could not take it whole
			continue
		}
		f.replied = true
		f.lastSeen = t.env.Now()
		f.toNS += uint64(n)
		t.sendUDP(f, buf, n)
	}
}

// sendUDP frames n payload bytes already at buf[payloadOff(f.key.NS):] as
// a datagram from the flow's destination to the namespace, with a partial
// checksum.
func (t *Table) sendUDP(f *udpFlow, buf []byte, n int) {
	l4 := packet.UDPLen + n
	udpOff := t.ipHeader(buf, f.nsMAC, f.key.Dst, f.key.NS, packet.ProtoUDP, l4)
	u := packet.UDP(buf[udpOff:])
	u.Encode(&packet.UDPFields{SrcPort: f.key.DstPort, DstPort: f.key.NSPort, Length: l4})
	u.SetPartialChecksum(f.key.Dst, f.key.NS)
	t.env.Send(udpOff+l4, packet.Offload{CsumStart: uint16(udpOff), CsumOffset: packet.UDPChecksumOffset})
}

// ipHeader writes the Ethernet and IP headers of a frame to the namespace
// at dstMAC, from src to dst, around l4 bytes of protocol proto, and
// returns where the l4 bytes start.
func (t *Table) ipHeader(buf []byte, dstMAC packet.MAC, src, dst packet.Addr, proto uint8, l4 int) int {
	packet.Ether(buf).SetHeader(dstMAC, t.cfg.GatewayMAC, packet.EtherTypeOf(dst))
	t.ipID++
	return ipOff + packet.EncodeIP(buf[ipOff:], &packet.IPFields{Protocol: proto, Src: src, Dst: dst, L4Len: l4, ID: t.ipID})
}

// readErrors drains the socket's error queue and reports ICMP errors to the
// namespace, quoting the flow's datagram as the original would have been.
func (t *Table) readErrors(f *udpFlow) {
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
		switch {
		case !ok:
			continue
		case ee.Origin == unix.SO_EE_ORIGIN_ICMP && f.key.NS.Is4():
			t.ICMPErrors++
			t.icmpError(f, ee.Type, ee.Code, ee.Info, int(r))
		case ee.Origin == unix.SO_EE_ORIGIN_ICMP6 && !f.key.NS.Is4():
			t.ICMPErrors++
			t.icmpError6(f, ee.Type, ee.Code, ee.Info, int(r))
		}
	}
}

// extendedErr finds the IP_RECVERR (or IPV6_RECVERR) control message.
func extendedErr(oob []byte) (unix.SockExtendedErr, bool) {
	var ee unix.SockExtendedErr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return ee, false
		}
		data := oob[unix.SizeofCmsghdr:l]
		if (h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR || h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR) &&
			len(data) >= int(unsafe.Sizeof(ee)) {
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
func (t *Table) icmpError(f *udpFlow, typ, code uint8, info uint32, payloadLen int) {
	buf := t.env.Frame()
	const quote = packet.IPv4Len + packet.UDPLen
	l4 := packet.ICMPEchoLen + quote
	icmpOff := t.ipHeader(buf, f.nsMAC, f.key.Dst, f.key.NS, packet.ProtoICMP, l4)
	m := packet.ICMP(buf[icmpOff : icmpOff+l4])
	var mtu uint16
	if typ == packet.ICMPUnreachable && code == packet.ICMPFragNeeded {
		mtu = uint16(info)
	}
	m.SetError(mtu)
	q := m[packet.ICMPEchoLen:]
	packet.IPv4(q).Encode(&packet.IPv4Fields{TotalLen: quote + payloadLen, Protocol: packet.ProtoUDP, Src: f.key.NS, Dst: f.key.Dst})
	packet.UDP(q[packet.IPv4Len:]).Encode(&packet.UDPFields{SrcPort: f.key.NSPort, DstPort: f.key.DstPort, Length: packet.UDPLen + payloadLen})
	m.SetTypeCode(typ, code)
	t.env.Send(icmpOff+l4, packet.Offload{})
}

// icmpError6 is icmpError for an IPv6 flow: the ICMPv6 error (type, code)
// the host's socket received, Packet Too Big with its MTU (info), so that
// the namespace's path MTU discovery works through nsgate.
func (t *Table) icmpError6(f *udpFlow, typ, code uint8, info uint32, payloadLen int) {
	buf := t.env.Frame()
	const quote = packet.IPv6Len + packet.UDPLen
	l4 := packet.ICMPEchoLen + quote
	icmpOff := t.ipHeader(buf, f.nsMAC, f.key.Dst, f.key.NS, packet.ProtoICMPv6, l4)
	m := packet.ICMP(buf[icmpOff : icmpOff+l4])
	clear(m[:packet.ICMPEchoLen])
	m[0], m[1] = typ, code
	if typ == packet.ICMPv6TooBig {
		binary.BigEndian.PutUint32(m[4:], info)
	}
	q := m[packet.ICMPEchoLen:]
	packet.IPv6(q).Encode(&packet.IPv6Fields{PayloadLen: packet.UDPLen + payloadLen, NextHeader: packet.ProtoUDP, Src: f.key.NS, Dst: f.key.Dst})
	packet.UDP(q[packet.IPv6Len:]).Encode(&packet.UDPFields{SrcPort: f.key.NSPort, DstPort: f.key.DstPort, Length: packet.UDPLen + payloadLen})
	m.SetICMPv6Checksum(f.key.Dst, f.key.NS)
	t.env.Send(icmpOff+l4, packet.Offload{})
}

// unreachable answers a datagram that cannot leave with ICMP destination
// unreachable (code), from the gateway.
func (t *Table) unreachable(p *packet.Parsed, code uint8) {
	icmp.SendUnreachable(t.env, p, code, t.cfg.NAT.Router(p.Src), t.cfg.GatewayMAC)
}

// Reset closes every flow: the VM behind them has gone (see engine.Peer).
func (t *Table) Reset() {
	for idx := range t.flows.All {
		t.remove(idx)
	}
}

// remove closes a flow.
func (t *Table) remove(idx int32) {
	f := t.flows.At(idx)
	if !f.shared {
		t.env.Unwatch(f.fd)
		unix.Close(f.fd)
	}
	t.flows.Remove(idx)
}

// evictIdle makes room in a full table: flows quiet for pressureIdle go,
// found by one pass over the table at most once per pressureScan. It
// reports whether the table has room now.
func (t *Table) evictIdle() bool {
	now := t.env.Now()
	if t.lastEvict != 0 && now-t.lastEvict < pressureScan {
		return false
	}
	t.lastEvict = now
	for idx, f := range t.flows.All {
		if !f.shared && now-f.lastSeen >= pressureIdle {
			t.Evicted++
			t.remove(idx)
		}
	}
	return !t.flows.Full()
}

// AppendFlows appends a description of each open flow to dst.
func (t *Table) AppendFlows(dst []flow.Info) []flow.Info {
	now := t.env.Now()
	for _, f := range t.flows.All {
		dst = append(dst, flow.Info{Proto: "udp", Key: f.key, Inbound: f.shared, Age: now - f.opened, ToHost: f.toHost, ToNS: f.toNS})
	}
	return dst
}

// NextTimer returns when Tick should next run, or 0.
func (t *Table) NextTimer() time.Duration { return t.sweep.Next(t.env.Now(), t.flows.Len() > 0) }

// Tick expires idle flows: 30 s if only the namespace spoke, 120 s once
// both did, as the kernel's conntrack does.
func (t *Table) Tick() {
	now := t.env.Now()
	if !t.sweep.Due(now) {
		return
	}
	for idx, f := range t.flows.All {
		limit := unrepliedTimeout
		if f.replied {
			limit = repliedTimeout
		}
		if now-f.lastSeen > limit {
			t.remove(idx)
		}
	}
}
