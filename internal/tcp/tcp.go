// Package tcp reflects the namespace's TCP connections onto host sockets.
//
// Each connection the namespace opens is carried by one ordinary host
// SOCK_STREAM socket, and nsgate re-implements no TCP stack: the host kernel
// does congestion control and retransmission on the host leg, the
// namespace's kernel on the tap leg, and nsgate keeps their sequence spaces
// in step:
//
//   - namespace → host: a segment's payload is written to the socket, and
//     only what the socket accepted is acknowledged; the window advertised is
//     the socket's free send space, and when the socket was full, the window
//     update goes out as soon as epoll reports it writable.
//   - host → namespace: data is read with MSG_PEEK at SO_PEEK_OFF, so the
//     socket's receive queue is the retransmission buffer; bytes are
//     discarded (MSG_TRUNC) only when the namespace acknowledges them, and a
//     retransmission rewinds the peek offset.
//
// Before Linux 6.9, TCP sockets refuse SO_PEEK_OFF (Config.NoPeekOff, from
// the probe at start; NSGATE_NO_PEEK_OFF=1 forces it). Then nsgate reads the
// socket for real and keeps its own copy of the bytes sent and not yet
// acknowledged, a ring per flow (unacked.go): 16 KiB at first, doubling to
// 4 MiB while the namespace's window has room, 256 MiB for all flows
// together, given back when the flow ends or sits empty at the idle sweep.
// Retransmissions come from the ring; an ACK drops bytes from it. The host
// socket still paces the host sender: nsgate reads only what the
// namespace's window and the ring admit.
//
// The other way, pasta's before 6.9, peeks from the head of the queue with a
// first iovec that swallows the bytes already in flight: every segment then
// copies the whole flight again. Measured in one netbench --quick run at
// MTU 65520 (host → namespace, b): the copy 14.0 Gbit/s at 0.47 CPU s/GB,
// the skip-peek 2.6 Gbit/s at 3.32 CPU s/GB; SO_PEEK_OFF 8.0 at 0.50 in the
// same (noisy) run. The copy costs memory instead: up to 4 MiB per busy
// flow, nothing per idle one.
//
// Like any receiver, nsgate keeps segments that arrive beyond a gap (loss or
// reordering on the tap leg) and tells the namespace about them with SACK,
// so that recovery takes a round trip, not a retransmission timeout. That
// copy happens only on the loss path.
//
// The Table is owned by the engine's event loop: no locks, no goroutines,
// and no allocation per segment once a connection is set up.
package tcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/nsgate/nsgate/internal/loop"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Env is what the engine lends the TCP translator.
type Env = loop.Env

// Config is what the translator needs to know of the network.
type Config struct {
	GatewayMAC  packet.MAC
	NAT         nat.Mapper // which destinations may leave, and where to
	MTU         int
	MaxFlows    int   // 0: DefaultMaxFlows
	IdleTimeout int64 // ns; 0: DefaultIdleTimeout
	// DNS is the relay address; connections to its port 53 go to
	// DNSServers in order, the next one when a connect fails.
	DNS        packet.IPv4Addr
	DNSServers [][4]byte
	// Outbound, if not zero, is the source address of every connection
	// (--outbound-addr).
	Outbound [4]byte
	// NoPeekOff says the kernel's TCP sockets lack SO_PEEK_OFF (before
	// Linux 6.9; kernel.Probe): host data is then read off the socket and
	// a copy of the unacknowledged bytes is kept (unacked.go).
	NoPeekOff bool
}

// Defaults.
const (
	DefaultMaxFlows    = 65536
	DefaultIdleTimeout = 2 * 3600 * 1e9 // established, no traffic either way
	closingTimeout     = 60 * 1e9       // handshakes and closes that stall
	rtoMin             = 200 * 1e6
	rtoMax             = 60 * 1e9
	maxRetries         = 12
	ourWScale          = 7 // windows up to 8 MiB: above tcp_wmem's 4 MiB
)

type state uint8

const (
	stConnecting  state = iota + 1 // SYN received, host connect() under way
	stSynAckSent                   // SYN-ACK sent, waiting for the namespace's ACK
	stEstablished                  // both ways open, or half-closed
	stSynSent                      // forwarded: SYN sent to the namespace, waiting for its SYN-ACK
)

// synRetries bounds the SYNs sent for a forwarded connection (about 25 s,
// as the kernel's tcp_syn_retries) before its client is reset.
const synRetries = 6

// key identifies a connection: namespace address and port, destination
// address and port. It is pointer-free, so map lookups do not allocate.
type key struct {
	nsIP, dstIP     packet.IPv4Addr
	nsPort, dstPort uint16
}

// String is the connection as logs show it: namespace side first.
func (k key) String() string {
	return fmt.Sprintf("%v:%d -> %v:%d", k.nsIP, k.nsPort, k.dstIP, k.dstPort)
}

// oooSeg is a segment that arrived beyond a gap, kept until the gap fills:
// without it, everything the namespace sent after a lost segment would be
// lost too, and a sender without SACK waits for its retransmission timer.
type oooSeg struct {
	seq  uint32
	data []byte
}

// maxOOOBytes bounds the out-of-order data kept per flow.
const maxOOOBytes = 4 << 20

type flow struct {
	key     key
	gen     uint32
	fd      int
	state   state
	nsMAC   packet.MAC
	events  uint32 // epoll interest now
	watched bool   // registered with epoll

	// Namespace → host.
	rcvNxt      uint32 // next sequence number expected from the namespace
	nsFin       bool   // the namespace's FIN was passed on (shutdown(SHUT_WR))
	sendBlocked bool   // the socket refused bytes: waiting for EPOLLOUT
	wndLow      bool   // a small window was advertised: update on EPOLLOUT
	wndRecheck  bool   // EPOLLOUT came but the window stayed shut: the timer rechecks
	maxAdv      int    // largest window advertised, in bytes
	lastAdv     uint16 // the window field of the last segment sent
	ooo         []oooSeg
	oooBytes    int
	oooLast     uint32 // sequence number of the latest segment kept
	sack        bool   // the namespace offered SACK: blocks describe ooo
	dropped     bool   // bytes were refused and must be retransmitted by the namespace
	ackPending  bool
	inAckList   bool
	inbound     bool // a forwarded connection: nsgate sent the SYN

	// Host → namespace.
	iss      uint32
	sndUna   uint32 // oldest byte the namespace has not acknowledged
	sndNxt   uint32 // next byte to send
	sndWnd   uint32 // the namespace's window, in bytes
	nsWScale uint8
	wscale   bool // window scaling agreed
	mss      int  // largest payload to send to the namespace
	hostEOF  bool // the host closed its side: FIN follows the data
	rdhup    bool // epoll reported the host's FIN (stop asking: it is level-triggered)
	hup      bool // epoll reported both sides shut: the socket only drains now
	finSent  bool // FIN sent (sndNxt counts it)
	dupAcks  int
	retries  int
	dnsNext  uint8   // the next nameserver to try if this connect fails
	sent     unacked // NoPeekOff: the bytes sent and not acknowledged
	rto      int64
	rtoAt    int64 // 0: no retransmission timer
	lastSeen int64
}

// Table is the TCP flow table.
type Table struct {
	cfg      Config
	env      Env
	flows    []flow
	free     []int32
	index    map[key]int32
	acks     []int32 // flows owing an ACK, sent by Flush
	rtos     int     // flows with a retransmission timer
	rechecks int     // flows whose window the timer rechecks
	lastTick int64
	ipID     uint16
	warned   bool
	sackBuf  [4]packet.SACKBlock
	sweep    loop.Sweep
	rings    ringPool // NoPeekOff: the flows' unacked rings
	// Stats. Opened counts both directions; Inbound the forwarded ones.
	Opened, Refused, Resets, Inbound uint64
}

// New returns an empty table.
func New(cfg Config, env Env) *Table {
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	return &Table{cfg: cfg, env: env, index: make(map[key]int32), sweep: loop.Sweep{Period: scanPeriod}}
}

// Len returns the number of open flows.
func (t *Table) Len() int { return len(t.index) }

func seqLT(a, b uint32) bool  { return int32(a-b) < 0 }
func seqLEQ(a, b uint32) bool { return int32(a-b) <= 0 }

const hdrLen = packet.EtherLen + packet.IPv4Len + packet.TCPLen

// frame writes Ethernet, IPv4 and TCP headers for a segment of f to the
// namespace into buf, around a payload of n bytes already at buf[hdrLen(+opts):].
// It returns the frame length.
func (t *Table) frame(f *flow, buf []byte, flags uint8, seq uint32, opts bool, payload int, wnd uint16) int {
	th := packet.TCPLen
	var blocks []packet.SACKBlock
	if opts {
		th += packet.TCPSynOptLen
	} else if payload == 0 && f.sack && len(f.ooo) > 0 {
		blocks = t.sackBlocks(f)
		th += packet.SACKOptLen(len(blocks))
	}
	l4 := th + payload
	packet.Ether(buf).SetHeader(f.nsMAC, t.cfg.GatewayMAC, packet.EtherTypeIPv4)
	t.ipID++
	packet.IPv4(buf[packet.EtherLen:]).SetHeader(packet.IPv4Len+l4, t.ipID, 64, packet.ProtoTCP, f.key.dstIP, f.key.nsIP)
	seg := packet.TCP(buf[packet.EtherLen+packet.IPv4Len : packet.EtherLen+packet.IPv4Len+l4])
	if opts {
		ws := -1
		if f.wscale {
			ws = ourWScale
		}
		mss := t.cfg.MTU - packet.IPv4Len - packet.TCPLen
		if mss > 65535 {
			mss = 65535
		}
		seg.SetSynOptions(uint16(mss), ws, f.sack)
	} else if blocks != nil {
		seg.SetSACK(blocks)
	}
	seg.SetHeader(f.key.dstPort, f.key.nsPort, seq, f.rcvNxt, flags, wnd, th)
	f.lastAdv = wnd
	return packet.EtherLen + packet.IPv4Len + l4
}

// sackBlocks describes the out-of-order data kept: contiguous segments
// merged into ranges, the range holding the latest arrival first (RFC 2018),
// then the others in order, at most four.
func (t *Table) sackBlocks(f *flow) []packet.SACKBlock {
	var first packet.SACKBlock
	out := t.sackBuf[:1]
	cur := packet.SACKBlock{Left: f.ooo[0].seq, Right: f.ooo[0].seq + uint32(len(f.ooo[0].data))}
	flush := func(b packet.SACKBlock) {
		if seqLEQ(b.Left, f.oooLast) && seqLT(f.oooLast, b.Right) {
			first = b
		} else if len(out) < cap(out) {
			out = append(out, b)
		}
	}
	for _, o := range f.ooo[1:] {
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
func (t *Table) window(f *flow, syn bool) uint16 {
	free := 65535
	if f.fd >= 0 && f.state != stConnecting {
		// The kernel accepts a write while sk_wmem_queued < sk_sndbuf,
		// checked before each skb it fills, so this much always fits.
		if sndbuf, queued, e := sendSpace(f.fd); e == 0 {
			free = max(sndbuf-queued, 0)
			// The namespace will not send into a window smaller than a
			// segment or half the largest it has seen (sender-side silly
			// window avoidance) until its persist timer fires: watch for
			// the socket to drain below that too.
			usable := min(f.mss, f.maxAdv/2)
			f.wndLow = f.state == stEstablished && free < max(sndbuf/4, usable)
		}
	}
	if f.sendBlocked {
		free = 0
	}
	if !syn {
		f.maxAdv = max(f.maxAdv, min(free, 65535<<ourWScale))
	}
	if f.wscale && !syn { // the window of a SYN is never scaled
		free >>= ourWScale
	}
	if free > 65535 {
		free = 65535
	}
	return uint16(free)
}

// reset sends RST to the namespace for a segment that has no flow.
func (t *Table) resetFor(p *packet.Parsed) {
	seg := p.TCP
	if seg.Flags()&packet.TCPRst != 0 {
		return
	}
	f := flow{key: key{nsIP: p.Src, dstIP: p.Dst, nsPort: seg.SrcPort(), dstPort: seg.DstPort()}, nsMAC: p.SrcMAC, fd: -1}
	var seq uint32
	flags := uint8(packet.TCPRst)
	if seg.Flags()&packet.TCPAck != 0 {
		seq = seg.Ack()
	} else {
		flags |= packet.TCPAck
		f.rcvNxt = seg.Seq() + uint32(len(p.Payload))
		if seg.Flags()&packet.TCPSyn != 0 {
			f.rcvNxt++
		}
		if seg.Flags()&packet.TCPFin != 0 {
			f.rcvNxt++
		}
	}
	buf := t.env.Frame()
	n := t.frame(&f, buf, flags, seq, false, 0, 0)
	t.checksum(buf, n)
	t.env.Send(n, 0, 0)
}

// checksum fills in the TCP checksum of the frame buf[:n]: RSTs and
// handshake segments are rare and worth being exact.
func (t *Table) checksum(buf []byte, n int) {
	ip := packet.IPv4(buf[packet.EtherLen:n])
	packet.TCP(ip[packet.IPv4Len:]).SetChecksum(ip.Src(), ip.Dst())
}

// sendCtl sends a segment without payload (SYN-ACK, ACK, FIN, RST) with
// the current window.
func (t *Table) sendCtl(f *flow, flags uint8, seq uint32) {
	t.sendCtlWnd(f, flags, seq, t.window(f, flags&packet.TCPSyn != 0))
}

// sendCtlWnd sends a segment without payload with window wnd.
func (t *Table) sendCtlWnd(f *flow, flags uint8, seq uint32, wnd uint16) {
	buf := t.env.Frame()
	n := t.frame(f, buf, flags, seq, flags&packet.TCPSyn != 0, 0, wnd)
	t.checksum(buf, n)
	t.env.Send(n, 0, 0)
	if flags&packet.TCPAck != 0 {
		f.ackPending = false
	}
}

// HandleFrame processes a TCP segment from the namespace.
func (t *Table) HandleFrame(p *packet.Parsed) {
	seg := p.TCP
	k := key{nsIP: p.Src, dstIP: p.Dst, nsPort: seg.SrcPort(), dstPort: seg.DstPort()}
	idx, ok := t.index[k]
	flags := seg.Flags()
	if !ok {
		if flags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn {
			t.open(p, k)
			return
		}
		t.resetFor(p)
		return
	}
	f := &t.flows[idx]
	f.lastSeen = t.env.Now()
	if f.state == stSynSent {
		t.synSent(idx, p)
		return
	}
	if flags&packet.TCPRst != 0 {
		// Accept a reset in the window only (RFC 5961's simple form).
		if d := seg.Seq() - f.rcvNxt; d < 1<<30 || f.state == stSynAckSent {
			t.abort(idx, false)
		}
		return
	}
	if flags&packet.TCPSyn != 0 {
		// A retransmitted SYN: our SYN-ACK was lost, or connect() is still
		// under way (then the SYN-ACK goes out when it completes).
		if f.state == stSynAckSent && seg.Seq()+1 == f.rcvNxt {
			t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
		}
		// A retransmitted SYN-ACK of a forwarded connection: our ACK was
		// lost.
		if f.inbound && flags&packet.TCPAck != 0 && seg.Seq()+1 == f.rcvNxt {
			t.sendCtl(f, packet.TCPAck, f.sndNxt)
		}
		return
	}
	if flags&packet.TCPAck == 0 || f.state == stConnecting {
		return
	}
	if f.state == stSynAckSent {
		if seg.Ack() != f.iss+1 {
			t.resetFor(p)
			return
		}
		f.state = stEstablished
		f.sndUna = f.iss + 1
		t.stopTimer(f)
		f.rto = rtoMin
	}
	t.ack(f, seg, len(p.Payload) == 0 && flags&packet.TCPFin == 0)
	if t.data(idx, f, seg.Seq(), p.Payload, flags&packet.TCPFin != 0) {
		return // flow gone
	}
	if t.done(idx) {
		return
	}
	t.push(idx)
	t.update(idx)
}

// ack processes the acknowledgment and window of a segment.
func (t *Table) ack(f *flow, seg packet.TCP, pure bool) {
	a := seg.Ack()
	wnd := uint32(seg.Window())
	if f.wscale {
		wnd <<= f.nsWScale
	}
	windowChanged := wnd != f.sndWnd
	f.sndWnd = wnd
	switch {
	case seqLT(f.sndUna, a) && seqLEQ(a, f.sndNxt):
		n := int(a - f.sndUna)
		if f.finSent && a == f.sndNxt {
			n-- // the FIN's sequence number is not a byte in the socket
		}
		if n > 0 {
			t.acked(f, n)
		}
		f.sndUna = a
		f.dupAcks = 0
		f.retries = 0
		f.rto = rtoMin
		if f.sndUna == f.sndNxt {
			t.stopTimer(f)
		} else {
			t.startTimer(f)
		}
	case a == f.sndUna && pure && !windowChanged && f.sndNxt != f.sndUna:
		f.dupAcks++
		if f.dupAcks == 3 {
			t.rewind(f) // fast retransmit
		}
	}
}

// data passes the namespace's payload (and FIN) to the host socket. It
// returns true if the flow was torn down.
func (t *Table) data(idx int32, f *flow, seq uint32, payload []byte, fin bool) bool {
	if len(payload) == 0 && !fin {
		if seq != f.rcvNxt {
			t.queueAck(idx, f) // a zero-window or keep-alive probe
		}
		return false
	}
	if f.nsFin {
		f.ackPending = true // a retransmitted FIN: ACK it again
		t.queueAck(idx, f)
		return false
	}
	off := seq - f.rcvNxt
	if int32(off) > 0 {
		// A gap (loss or reordering on the namespace side). nsgate keeps no
		// out-of-order data: one duplicate ACK per such segment, at once and
		// not coalesced, so that the third triggers the namespace's fast
		// retransmit. The window must not grow, or Linux does not count it
		// as a duplicate.
		if len(payload) > 0 && off < 1<<30 {
			f.keep(seq, payload)
		}
		if f.state == stEstablished {
			t.sendCtlWnd(f, packet.TCPAck, f.sndNxt, min(f.lastAdv, t.window(f, false)))
		}
		return false
	}
	skip := int(f.rcvNxt - seq)
	if skip > len(payload) || skip == len(payload) && !fin {
		// Wholly old: a keep-alive probe, or a retransmission because our
		// ACK was lost. Acknowledge again, or the namespace retries forever.
		t.queueAck(idx, f)
		return false
	}
	payload = payload[skip:]
	if len(payload) > 0 {
		if f.sendBlocked {
			f.dropped = true
			t.queueAck(idx, f)
			return false
		}
		n, e := send(f.fd, payload)
		switch e {
		case 0:
		case unix.EAGAIN:
			n = 0
		default:
			t.abort(idx, true) // EPIPE, ECONNRESET: the host side is gone
			return true
		}
		f.rcvNxt += uint32(n)
		if n < len(payload) {
			f.sendBlocked, f.dropped = true, true
			fin = false // the FIN comes after bytes not taken yet
		} else if len(f.ooo) > 0 {
			if !t.drainOOO(f) {
				t.abort(idx, true)
				return true
			}
			fin = fin && len(f.ooo) == 0 && !f.sendBlocked
		}
		t.queueAck(idx, f)
	}
	if fin {
		unix.Shutdown(f.fd, unix.SHUT_WR)
		f.rcvNxt++
		f.nsFin = true
		t.queueAck(idx, f)
	}
	return false
}

// keep stores a copy of an out-of-order segment, in sequence order.
func (f *flow) keep(seq uint32, payload []byte) {
	if f.oooBytes+len(payload) > maxOOOBytes {
		return
	}
	i := len(f.ooo)
	for i > 0 && seqLT(seq, f.ooo[i-1].seq) {
		i--
	}
	if i > 0 && f.ooo[i-1].seq == seq || i < len(f.ooo) && f.ooo[i].seq == seq {
		return // a duplicate
	}
	f.ooo = append(f.ooo, oooSeg{})
	copy(f.ooo[i+1:], f.ooo[i:])
	f.ooo[i] = oooSeg{seq: seq, data: append([]byte(nil), payload...)}
	f.oooBytes += len(payload)
	f.oooLast = seq
}

// drainOOO writes the kept segments that the gap's filling made
// contiguous. It returns false if the socket failed.
func (t *Table) drainOOO(f *flow) bool {
	i := 0
	for ; i < len(f.ooo); i++ {
		o := f.ooo[i]
		if seqLT(f.rcvNxt, o.seq) {
			break // another gap
		}
		skip := int(f.rcvNxt - o.seq)
		if skip >= len(o.data) {
			f.oooBytes -= len(o.data)
			continue
		}
		n, e := send(f.fd, o.data[skip:])
		switch e {
		case 0:
		case unix.EAGAIN:
			n = 0
		default:
			return false
		}
		f.rcvNxt += uint32(n)
		if skip+n < len(o.data) {
			f.sendBlocked, f.dropped = true, true
			break
		}
		f.oooBytes -= len(o.data)
	}
	f.ooo = append(f.ooo[:0], f.ooo[i:]...)
	if len(f.ooo) == 0 {
		f.ooo, f.oooBytes = nil, 0
	}
	return true
}

func (t *Table) queueAck(idx int32, f *flow) {
	f.ackPending = true
	if !f.inAckList {
		f.inAckList = true
		t.acks = append(t.acks, idx)
	}
}

// Flush sends the ACKs owed after a batch of frames: one per flow, however
// many segments it received.
func (t *Table) Flush() {
	for _, idx := range t.acks {
		f := &t.flows[idx]
		f.inAckList = false
		if f.ackPending && f.fd >= 0 && f.state == stEstablished {
			t.sendCtl(f, packet.TCPAck, f.sndNxt)
		}
	}
	t.acks = t.acks[:0]
}

// push sends host data to the namespace while its window allows.
func (t *Table) push(idx int32) {
	f := &t.flows[idx]
	if f.state != stEstablished || f.finSent {
		return
	}
	wnd := t.window(f, false) // once per burst: a syscall per segment would cost more than it tells
	for {
		inflight := f.sndNxt - f.sndUna
		if inflight >= f.sndWnd {
			return // window full: the namespace's ACK resumes us
		}
		room := int(f.sndWnd - inflight)
		if room > f.mss {
			room = f.mss
		}
		buf := t.env.Frame()
		n, e, resent := t.fill(f, buf[hdrLen:hdrLen+room], int(inflight))
		switch {
		case e == unix.EAGAIN:
			return
		case e != 0:
			t.abort(idx, true)
			return
		case n == 0: // EOF after everything queued: FIN
			f.hostEOF = true
			t.sendCtl(f, packet.TCPFin|packet.TCPAck, f.sndNxt)
			f.sndNxt++
			f.finSent = true
			t.startTimer(f)
			return
		}
		flags := uint8(packet.TCPAck)
		drained := n < room && !resent
		if drained {
			flags |= packet.TCPPsh // the socket is drained for now
		}
		fl := t.frame(f, buf, flags, f.sndNxt, false, n, wnd)
		// Only the pseudo-header sum: the payload is never summed by
		// anyone on the way into the namespace.
		seg := buf[packet.EtherLen+packet.IPv4Len : fl]
		binary.BigEndian.PutUint16(seg[16:18], packet.Fold(packet.PseudoHeaderSum(f.key.dstIP, f.key.nsIP, packet.ProtoTCP, len(seg))))
		t.env.Send(fl, packet.EtherLen+packet.IPv4Len, 16)
		f.ackPending = false
		f.sndNxt += uint32(n)
		if f.rtoAt == 0 {
			t.startTimer(f)
		}
		if drained {
			return
		}
	}
}

// rewind retransmits from the oldest unacknowledged byte: the bytes are
// still in the socket's receive queue, at peek offset 0, or (NoPeekOff) at
// the head of the flow's ring.
func (t *Table) rewind(f *flow) {
	if !t.cfg.NoPeekOff && setInt(f.fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0) != 0 {
		return
	}
	f.sndNxt = f.sndUna
	f.finSent = false
}

// setRecheck marks a flow whose window the timer re-examines.
func (t *Table) setRecheck(f *flow, on bool) {
	if on != f.wndRecheck {
		f.wndRecheck = on
		if on {
			t.rechecks++
		} else {
			t.rechecks--
		}
	}
}

func (t *Table) startTimer(f *flow) {
	if f.rtoAt == 0 {
		t.rtos++
	}
	f.rtoAt = t.env.Now() + f.rto
}

func (t *Table) stopTimer(f *flow) {
	if f.rtoAt != 0 {
		t.rtos--
		f.rtoAt = 0
	}
}

// done removes a flow closed both ways and acknowledged; it reports whether
// it did.
func (t *Table) done(idx int32) bool {
	f := &t.flows[idx]
	if f.nsFin && f.finSent && f.sndUna == f.sndNxt {
		t.Flush() // the ACK of the namespace's FIN
		t.remove(idx, false)
		return true
	}
	return false
}

// update sets the flow's epoll interest to what it waits for. Once the
// host's FIN (RDHUP) or a full shutdown (HUP) has been seen, they are not
// asked for again: epoll is level-triggered, and while the namespace's window
// is closed they would fire without end. After HUP the socket is removed
// from epoll altogether; the namespace's ACKs and the timers drive the rest.
func (t *Table) update(idx int32) {
	f := &t.flows[idx]
	if f.state == stSynSent {
		return // the host socket waits until the namespace answers
	}
	var ev uint32
	switch {
	case f.state == stConnecting:
		ev = unix.EPOLLOUT
	case f.hup:
		ev = 0
	default:
		if !f.rdhup {
			ev |= unix.EPOLLRDHUP
		}
		if f.state == stEstablished && !f.hostEOF && !f.finSent && f.sndNxt-f.sndUna < f.sndWnd && t.canRead(f) {
			ev |= unix.EPOLLIN
		}
		if f.sendBlocked || f.wndLow {
			ev |= unix.EPOLLOUT
		}
	}
	if f.hup {
		if f.watched {
			t.env.Unwatch(f.fd)
			f.watched = false
		}
		return
	}
	if ev != f.events || !f.watched {
		if err := t.env.Watch(f.fd, ev, idx, f.gen, !f.watched); err != nil {
			t.env.Logf("tcp %v: epoll: %v", f.key, err)
			return
		}
		f.events, f.watched = ev, true
	}
}

// HandleEvent processes readiness of flow idx's host socket.
func (t *Table) HandleEvent(idx int32, gen uint32, events uint32) {
	if int(idx) >= len(t.flows) || t.flows[idx].gen != gen || t.flows[idx].fd < 0 {
		return // the flow went away earlier in this batch
	}
	f := &t.flows[idx]
	f.lastSeen = t.env.Now()
	if f.state == stConnecting {
		t.connected(idx)
		return
	}
	if events&unix.EPOLLERR != 0 {
		if soErr, _ := getInt(f.fd, unix.SOL_SOCKET, unix.SO_ERROR); soErr != 0 {
			t.abort(idx, true)
			return
		}
	}
	if events&unix.EPOLLOUT != 0 && (f.sendBlocked || f.wndLow) {
		// The socket drained: tell the namespace at once, and if bytes were
		// refused, make it resend them now rather than after its RTO.
		f.sendBlocked = false
		t.sendCtl(f, packet.TCPAck, f.sndNxt)
		if f.wndLow {
			// Writable, yet the window is still shut (skb overhead): stop
			// asking epoll, which would report it again at once, and let
			// the timer look again.
			f.wndLow = false
			t.setRecheck(f, true)
		}
		if f.dropped {
			f.dropped = false
			for i := 0; i < 3; i++ {
				t.sendCtl(f, packet.TCPAck, f.sndNxt)
			}
		}
	}
	if events&unix.EPOLLRDHUP != 0 {
		f.rdhup = true
	}
	if events&unix.EPOLLHUP != 0 {
		f.hup = true
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		t.push(idx)
		if t.flows[idx].fd < 0 {
			return
		}
	}
	if t.done(idx) {
		return
	}
	t.update(idx)
}

// connected completes the handshake once the host's connect() finishes.
func (t *Table) connected(idx int32) {
	f := &t.flows[idx]
	soErr, e := getInt(f.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if e != 0 || soErr != 0 {
		if t.isDNS(f.key) && int(f.dnsNext) < len(t.cfg.DNSServers) && t.redial(idx) {
			return // the next nameserver
		}
		t.Refused++
		t.abort(idx, true)
		return
	}
	f.state = stSynAckSent
	f.sndUna = f.iss
	f.sndNxt = f.iss + 1
	t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
	t.startTimer(f)
	t.update(idx) // host data waits until the namespace completes the handshake
}

// open handles a SYN for a new connection.
func (t *Table) open(p *packet.Parsed, k key) {
	if len(t.index) >= t.cfg.MaxFlows {
		if !t.warned {
			t.warned = true
			t.env.Logf("tcp: flow table full (%d flows): refusing new connections", t.cfg.MaxFlows)
		}
		t.resetFor(p)
		return
	}
	dst, ok := t.hostAddr(k)
	if !ok {
		t.resetFor(p)
		return
	}
	dnsNext := uint8(1)
	fd, err := t.dial(dst, k.dstPort)
	for err != nil && t.isDNS(k) && int(dnsNext) < len(t.cfg.DNSServers) {
		fd, err = t.dial(t.cfg.DNSServers[dnsNext], 53)
		dnsNext++
	}
	if err != nil {
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.env.Logf("tcp: connect to %v:%d: %v", packet.IPv4Addr(dst), k.dstPort, err)
		}
		t.Refused++
		t.resetFor(p)
		return
	}
	idx := t.alloc()
	f := &t.flows[idx]
	gen := f.gen + 1
	seg := p.TCP
	mss, hasMSS, ws, hasWS, sackPerm := seg.SynOptions()
	if !hasMSS {
		mss = 536
	}
	maxMSS := t.cfg.MTU - packet.IPv4Len - packet.TCPLen
	*f = flow{
		key:      k,
		gen:      gen,
		fd:       fd,
		state:    stConnecting,
		nsMAC:    p.SrcMAC,
		rcvNxt:   seg.Seq() + 1,
		iss:      rand.Uint32(),
		sndWnd:   uint32(seg.Window()),
		nsWScale: ws,
		wscale:   hasWS,
		sack:     sackPerm,
		dnsNext:  dnsNext,
		mss:      min(int(mss), maxMSS),
		rto:      rtoMin,
		lastSeen: t.env.Now(),
	}
	if f.mss < 64 {
		f.mss = 64
	}
	t.index[k] = idx
	t.Opened++
	if writable(fd) {
		// Loopback connects complete inside connect(): answer now rather
		// than after another trip through epoll.
		t.connected(idx)
		return
	}
	t.update(idx) // EPOLLOUT: connect() completes
	if !f.watched {
		t.remove(idx, true)
		t.resetFor(p)
	}
}

// alloc returns a free flow slot.
func (t *Table) alloc() int32 { return loop.Alloc(&t.flows, &t.free, flow{fd: -1}) }

// redial replaces a DNS flow's failed socket with one connecting to the
// next nameserver.
func (t *Table) redial(idx int32) bool {
	f := &t.flows[idx]
	if f.watched {
		t.env.Unwatch(f.fd)
		f.watched = false
	}
	unix.Close(f.fd)
	f.fd = -1
	for int(f.dnsNext) < len(t.cfg.DNSServers) {
		addr := t.cfg.DNSServers[f.dnsNext]
		f.dnsNext++
		fd, err := t.dial(addr, 53)
		if err != nil {
			continue
		}
		f.fd, f.events = fd, 0
		t.update(idx)
		if f.watched {
			return true
		}
		unix.Close(fd)
		f.fd = -1
	}
	return false
}

// dial starts a non-blocking connect to addr:port.
func (t *Table) dial(addr [4]byte, port uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // the namespace's kernel already did its Nagle
	setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	if err := t.peekOff(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if t.cfg.Outbound != [4]byte{} {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: t.cfg.Outbound}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind to --outbound-addr %v: %w", packet.IPv4Addr(t.cfg.Outbound), err)
		}
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(port), Addr: addr})
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// writable polls fd for POLLOUT without waiting.
func writable(fd int) bool {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd[:], 0)
	return err == nil && n == 1
}

// hostAddr maps a destination in the namespace's view to a host address:
// DNS to the first nameserver, the rest through the NAT rules.
func (t *Table) hostAddr(k key) ([4]byte, bool) {
	if t.isDNS(k) {
		return t.cfg.DNSServers[0], true
	}
	return t.cfg.NAT.Host(k.dstIP)
}

// isDNS reports whether k is a connection to the DNS relay address.
func (t *Table) isDNS(k key) bool {
	return len(t.cfg.DNSServers) > 0 && k.dstIP == t.cfg.DNS && k.dstPort == 53
}

// abort resets the connection both ways. toNS sends a RST to the namespace;
// the host side always gets one (SO_LINGER 0).
func (t *Table) abort(idx int32, toNS bool) {
	f := &t.flows[idx]
	if toNS {
		seq := f.sndNxt
		if f.state == stConnecting {
			seq = 0 // refusing the SYN: the RST acknowledges it
		}
		if f.state == stSynSent {
			seq = f.iss + 1 // withdrawing our SYN
		}
		t.sendCtl(f, packet.TCPRst|packet.TCPAck, seq)
	}
	t.Resets++
	t.remove(idx, true)
}

// remove closes the flow's socket and frees its slot. rst makes the close
// abortive, so that the host peer sees a reset, not an orderly end.
func (t *Table) remove(idx int32, rst bool) {
	f := &t.flows[idx]
	if f.fd < 0 {
		return
	}
	if f.watched {
		t.env.Unwatch(f.fd)
	}
	if rst {
		unix.SetsockoptLinger(f.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	unix.Close(f.fd)
	t.stopTimer(f)
	t.setRecheck(f, false)
	t.rings.release(&f.sent)
	delete(t.index, f.key)
	gen := f.gen
	*f = flow{fd: -1, gen: gen}
	t.free = append(t.free, idx)
}

// Timer periods: window rechecks are cheap and a namespace sender may be
// waiting on them; retransmission timers have 200 ms granularity anyway.
const (
	recheckPeriod = 1e6
	rtoPeriod     = 20e6
	scanPeriod    = 5e9
)

// NextTimer returns the monotonic time at which Tick should run next, or 0
// if nothing is timed.
func (t *Table) NextTimer() int64 {
	var next int64
	at := func(when int64) {
		if next == 0 || when < next {
			next = when
		}
	}
	if t.rechecks > 0 {
		at(t.lastTick + recheckPeriod)
	}
	if t.rtos > 0 {
		at(t.lastTick + rtoPeriod)
	}
	if when := t.sweep.Next(t.env.Now(), len(t.index) > 0); when != 0 {
		at(when)
	}
	return next
}

// Tick runs window rechecks, expired retransmission timers and, every few
// seconds, the idle scan.
func (t *Table) Tick() {
	now := t.env.Now()
	t.lastTick = now
	scan := t.sweep.Due(now)
	if t.rtos == 0 && t.rechecks == 0 && !scan {
		return
	}
	for i := range t.flows {
		idx := int32(i)
		f := &t.flows[idx]
		if f.fd < 0 {
			continue
		}
		if scan {
			limit := t.cfg.IdleTimeout
			if f.state != stEstablished || f.nsFin || f.finSent {
				limit = closingTimeout
			}
			if now-f.lastSeen > limit {
				t.abort(idx, true)
				continue
			}
			if f.sent.n == 0 && f.sent.buf != nil {
				t.rings.release(&f.sent) // an idle flow holds no ring
			}
		}
		if f.wndRecheck {
			wnd := t.window(f, false)
			if !f.wndLow {
				t.setRecheck(f, false)
				t.sendCtlWnd(f, packet.TCPAck, f.sndNxt, wnd)
			}
			f.wndLow = false // the timer, not EPOLLOUT, keeps watching
		}
		if f.rtoAt == 0 || now < f.rtoAt {
			continue
		}
		f.retries++
		if f.retries > maxRetries {
			t.abort(idx, true)
			continue
		}
		f.rto = min(f.rto*2, rtoMax)
		t.stopTimer(f)
		if f.state == stSynSent {
			if f.retries > synRetries {
				t.abort(idx, false)
				continue
			}
			t.sendCtl(f, packet.TCPSyn, f.iss)
			t.startTimer(f)
			continue
		}
		if f.state == stSynAckSent {
			t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
			t.startTimer(f)
			continue
		}
		t.rewind(f)
		if f.sndWnd == 0 {
			f.sndWnd = 1 // probe a zero window with one byte
		}
		t.push(idx)
		if t.flows[idx].fd >= 0 {
			if f.rtoAt == 0 && f.sndNxt != f.sndUna {
				t.startTimer(f)
			}
			t.update(idx)
		}
	}
}
