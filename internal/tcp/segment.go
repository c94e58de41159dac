package tcp

import (
	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
)

// Offsets of a segment to the namespace in its frame. The TCP header
// follows an IPv4 or an IPv6 header, by the flow's family (tcpOff).
const (
	ipOff = packet.EtherLen
	// maxGSOPayload is the most payload one frame can carry: an IPv4
	// packet's total length is 16 bits. IPv6 could carry 20 bytes more;
	// one limit keeps the frames of both families within tapdev.MaxFrame.
	maxGSOPayload = 65535 - packet.IPv4Len - packet.TCPLen
)

// tcpOff returns where c's TCP header starts in its frames.
func (c *conn) tcpOff() int { return ipOff + packet.IPHeaderLen(c.key.NS) }

// hdrLen returns the length of c's headers without options: where the
// payload of a segment to the namespace starts.
func (c *conn) hdrLen() int { return c.tcpOff() + packet.TCPLen }

// frame writes Ethernet, IP and TCP headers for a segment of c to the
// namespace into buf, around a payload of n bytes already at
// buf[c.hdrLen()(+opts):]. It returns the frame length.
func (t *Table) frame(c *conn, buf []byte, flags packet.TCPFlags, seq uint32, opts bool, payload int, wnd uint16) int {
	th := packet.TCPLen
	var blocks []packet.SACKBlock
	if opts {
		th += packet.TCPSynOptLen
	} else if payload == 0 && c.sack && len(c.ooo) > 0 {
		blocks = t.sackBlocks(c)
		th += packet.SACKOptLen(len(blocks))
	}
	l4 := th + payload
	packet.Ether(buf).SetHeader(c.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeOf(c.key.NS))
	t.ipID++
	tcpOff := ipOff + packet.EncodeIP(buf[ipOff:], &packet.IPFields{
		Protocol: packet.ProtoTCP, Src: c.key.Dst, Dst: c.key.NS, L4Len: l4, ID: t.ipID,
	})
	seg := packet.TCP(buf[tcpOff : tcpOff+l4])
	if opts {
		seg.SetSynOptions(packet.SynOptions{
			MSS:       t.ourMSS(c.key.NS),
			HasWScale: c.wscale,
			WScale:    ourWScale,
			SACKPerm:  c.sack,
		})
	} else if blocks != nil {
		seg.SetSACK(blocks)
	}
	seg.Encode(&packet.TCPFields{
		SrcPort: c.key.DstPort, DstPort: c.key.NSPort, Seq: seq, Ack: c.rcvNxt, Flags: flags, Window: wnd, HeaderLen: th,
	})
	c.lastAdv, c.ackedTo = wnd, c.rcvNxt
	return tcpOff + l4
}

// ourMSS returns the MSS nsgate offers the namespace: the MTU's, rounded
// down to whole pages above one page, as passt offers. A sender without
// scatter-gather (a VM's virtio-net on a socket: no offloads) builds each
// segment in one linear buffer, and 65,480 bytes of payload and headers
// need a 128 KiB allocation where 61,440 fit in 64 KiB: bench-vm's
// VM→host went from 0.86× to 0.98× passt's with this alone. A tap's
// super-frames carry one segment either way.
func (t *Table) ourMSS(ns packet.Addr) uint16 {
	mss := min(t.mtuPayload(ns), 65535)
	if mss > pageSize {
		mss &^= pageSize - 1
	}
	return uint16(mss)
}

// mtuPayload returns the most TCP payload one MTU-sized packet to or from
// the namespace address ns carries: its family's IP header and a TCP
// header without options come off the MTU.
func (t *Table) mtuPayload(ns packet.Addr) int {
	return t.cfg.MTU - packet.IPHeaderLen(ns) - packet.TCPLen
}

// pageSize is the page size the rounding in ourMSS assumes: x86's and most
// others' (a larger page makes the rounding merely less useful).
const pageSize = 4096

// sackBlocks describes the out-of-order data kept: contiguous segments
// merged into ranges, the range holding the latest arrival first (RFC 2018),
// then the others in order, at most four.
func (t *Table) sackBlocks(c *conn) []packet.SACKBlock {
	var first packet.SACKBlock
	out := t.sackBuf[:1]
	cur := packet.SACKBlock{Left: c.ooo[0].seq, Right: c.ooo[0].seq + uint32(len(c.ooo[0].data))}
	flush := func(b packet.SACKBlock) {
		if seqLEQ(b.Left, c.oooLast) && seqLT(c.oooLast, b.Right) {
			first = b
		} else if len(out) < cap(out) {
			out = append(out, b)
		}
	}
	for _, o := range c.ooo[1:] {
		end := o.seq + uint32(len(o.data))
		if seqLEQ(o.seq, cur.Right) {
			if seqLT(cur.Right, end) {
				cur.Right = end
			}
			continue
		}
		flush(cur)
		cur = packet.SACKBlock{Left: o.seq, Right: end}
	}
	flush(cur)
	if first.Right == 0 && first.Left == 0 {
		return out[1:]
	}
	out[0] = first
	return out
}

// window returns the window to advertise: the host socket's free send
// space, so that everything the namespace sends is accepted whole.
//
// It also decides whether the flow waits for EPOLLOUT (wndLow): when less
// than a quarter of the send buffer is free. epoll reports a TCP socket
// writable once the free space is half the queued memory (a third of the
// buffer), so the update goes out as soon as the socket drains, without the
// namespace having to probe, and epoll never reports writable a socket whose
// window nsgate still considers shut. Asking
// for EPOLLOUT on a full socket is also what lets the kernel grow the send
// buffer (SOCK_NOSPACE): nsgate never overfills it, so nothing else would.
//
// The free space is measured (SO_MEMINFO) only when the estimate in c.mem
// runs low: most ACKs then cost no system call.
func (t *Table) window(c *conn, syn bool) uint16 {
	free := 65535
	if c.fd >= 0 && c.state != stConnecting {
		// The namespace will not send into a window smaller than a
		// segment or half the largest it has seen (sender-side silly
		// window avoidance) until its persist timer fires: watch for the
		// socket to drain below that too.
		usable := min(c.mss, c.maxAdv/2)
		m := &c.mem
		if m.sndbuf == 0 || m.free < max(m.sndbuf/2, 2*usable) {
			m.measure(c.fd)
			c.wndLow = m.sndbuf > 0 && c.state == stEstablished && m.free < max(m.sndbuf/4, usable)
		}
		if m.sndbuf > 0 {
			free = max(m.free, 0)
		}
	}
	if c.sendBlocked {
		free = 0
	}
	if !syn {
		c.maxAdv = max(c.maxAdv, min(free, 65535<<ourWScale))
	}
	if c.wscale && !syn { // the window of a SYN is never scaled
		free >>= ourWScale
	}
	return uint16(min(free, 65535))
}

// sendMem is what the window is made of: a socket's send buffer and its
// free space, as SO_MEMINFO last gave them (sk_sndbuf and sk_sndbuf −
// sk_wmem_queued, the two numbers the kernel compares before it accepts a
// write), less what nsgate has written since. The estimate errs low only:
// the host's ACKs free space nsgate does not see until it measures again,
// which window does once half the buffer seems spent, and EPOLLOUT and
// the window recheck force. So most ACKs to the namespace cost no system
// call. Between measurements the window's right edge moves back by the
// overhead of each write, as it does when measured: the kernel charges it.
type sendMem struct {
	sndbuf int // 0: unknown; measure before use
	free   int
}

// sendOverhead is what a write is counted as on top of its bytes: about
// one skb's truesize, the kernel's charge for it in sk_wmem_queued.
const sendOverhead = 2048

func (m *sendMem) measure(fd int) {
	sndbuf, queued, e := sendSpace(fd)
	if e != 0 {
		m.sndbuf = 0
		return
	}
	m.sndbuf, m.free = sndbuf, max(sndbuf-queued, 0)
}

// wrote counts n bytes written to the socket.
func (m *sendMem) wrote(n int) { m.free -= n + sendOverhead }

// stale makes the next window measure the socket again.
func (m *sendMem) stale() { m.sndbuf = 0 }

// resetFor sends RST to the namespace for a segment that has no flow.
func (t *Table) resetFor(p *packet.Parsed) {
	seg := p.TCP
	flags := seg.Flags()
	if flags.Has(packet.TCPRst) {
		return
	}
	c := conn{key: flow.Key{NS: p.Src, Dst: p.Dst, NSPort: seg.SrcPort(), DstPort: seg.DstPort()}, nsMAC: p.SrcMAC, fd: -1}
	var seq uint32
	rst := packet.TCPRst
	if flags.Has(packet.TCPAck) {
		seq = seg.Ack()
	} else {
		rst |= packet.TCPAck
		c.rcvNxt = seg.Seq() + uint32(len(p.Payload))
		if flags.Has(packet.TCPSyn) {
			c.rcvNxt++
		}
		if flags.Has(packet.TCPFin) {
			c.rcvNxt++
		}
	}
	t.sendCtlWnd(&c, rst, seq, 0)
}

// sendCtl sends a segment without payload (SYN-ACK, ACK, FIN, RST) with
// the current window.
func (t *Table) sendCtl(c *conn, flags packet.TCPFlags, seq uint32) {
	t.sendCtlWnd(c, flags, seq, t.window(c, flags.Has(packet.TCPSyn)))
}

// sendCtlWnd sends a segment without payload with window wnd. Its checksum
// is complete: RSTs and handshake segments are rare and worth being exact.
func (t *Table) sendCtlWnd(c *conn, flags packet.TCPFlags, seq uint32, wnd uint16) {
	buf := t.env.Frame()
	n := t.frame(c, buf, flags, seq, flags.Has(packet.TCPSyn), 0, wnd)
	packet.TCP(buf[c.tcpOff():n]).SetChecksum(c.key.Dst, c.key.NS)
	t.env.Send(n, packet.Offload{})
	if flags.Has(packet.TCPAck) {
		c.ackPending = false
	}
}
