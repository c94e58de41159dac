package tcp

import (
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Namespace → host: the namespace's segments, their acknowledgments of host
// data, and their payload, written to the host socket in order.

// HandleFrame processes a TCP segment from the namespace.
func (t *Table) HandleFrame(p *packet.Parsed) {
	seg := p.TCP
	k := flow.Key{NS: p.Src, Dst: p.Dst, NSPort: seg.SrcPort(), DstPort: seg.DstPort()}
	idx, ok := t.flows.Lookup(k)
	flags := seg.Flags()
	if !ok {
		switch flags & (packet.TCPSyn | packet.TCPAck | packet.TCPRst) {
		case packet.TCPSyn:
			t.open(p, k, 0)
			return
		case packet.TCPAck:
			if mss, ok := t.checkCookie(p, k); ok {
				t.open(p, k, mss)
				if idx, ok := t.flows.Lookup(k); ok && t.flows.At(idx).state == stEstablished && (len(p.Payload) > 0 || flags.Has(packet.TCPFin)) {
					t.HandleFrame(p) // connected already (loopback): the ACK's data too
				}
				return
			}
		}
		t.resetFor(p)
		return
	}
	f := t.flows.At(idx)
	f.lastSeen = t.env.Now()
	if f.state == stSynSent {
		t.synSent(idx, p)
		return
	}
	if flags.Has(packet.TCPRst) {
		// Accept a reset in the window only (RFC 5961's simple form).
		if d := seg.Seq() - f.rcvNxt; d < 1<<30 || f.state == stSynAckSent {
			t.abort(idx, false)
		}
		return
	}
	if flags.Has(packet.TCPSyn) {
		// A retransmitted SYN: our SYN-ACK was lost, or connect() is still
		// under way (then the SYN-ACK goes out when it completes).
		if f.state == stSynAckSent && seg.Seq()+1 == f.rcvNxt {
			t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
		}
		// A retransmitted SYN-ACK of a forwarded connection: our ACK was
		// lost.
		if f.inbound && flags.Has(packet.TCPAck) && seg.Seq()+1 == f.rcvNxt {
			t.sendCtl(f, packet.TCPAck, f.sndNxt)
		}
		return
	}
	if !flags.Has(packet.TCPAck) || f.state == stConnecting {
		return
	}
	if f.state == stSynAckSent {
		if seg.Ack() != f.iss+1 {
			t.resetFor(p)
			return
		}
		f.state = stEstablished
		t.settled(f)
		f.sndUna = f.iss + 1
		t.stopTimer(f)
		f.rto = rtoMin
	}
	t.ack(idx, f, seg, len(p.Payload) == 0 && !flags.Has(packet.TCPFin))
	if t.data(idx, f, seg.Seq(), p.Payload, flags.Has(packet.TCPFin)) {
		return // flow gone
	}
	if t.done(idx) {
		return
	}
	t.push(idx)
	t.update(idx)
}

// ack processes the acknowledgment and window of a segment.
func (t *Table) ack(idx int32, f *conn, seg packet.TCP, pure bool) {
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
			t.acked(idx, f, n)
			f.toNS += uint64(n)
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
func (t *Table) data(idx int32, f *conn, seq uint32, payload []byte, fin bool) bool {
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
		// A gap (loss or reordering on the namespace side). The segment is
		// kept (keep) until the gap fills, and answered with a duplicate
		// ACK, at once and not coalesced, carrying SACK blocks if agreed:
		// the third makes the namespace retransmit the missing bytes. The
		// window must not grow, or Linux does not count it as a duplicate.
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
		f.toHost += uint64(n)
		f.mem.wrote(n)
		t.moved(len(payload), f.lastSeen)
		if n < len(payload) {
			f.sendBlocked, f.dropped = true, true
			f.mem.stale()
			fin = false // the FIN comes after bytes not taken yet
		} else if len(f.ooo) > 0 {
			if !t.drainOOO(f) {
				t.abort(idx, true)
				return true
			}
			fin = fin && len(f.ooo) == 0 && !f.sendBlocked
		}
		f.rcvMSS = max(f.rcvMSS, len(payload))
		kind := ackNow
		switch {
		case f.sendBlocked || len(f.ooo) > 0:
		case len(payload) <= SmallSegment:
			kind = ackHeld
		case int(f.rcvNxt-f.ackedTo) <= f.rcvMSS:
			kind = ackDelayed
		}
		t.queueAckKind(idx, f, kind)
	}
	if fin {
		unix.Shutdown(f.fd, unix.SHUT_WR)
		f.rcvNxt++
		f.nsFin = true
		t.queueAckKind(idx, f, ackHeld) // the host's FIN may carry it
	}
	return false
}

// keep stores a copy of an out-of-order segment, in sequence order.
func (f *conn) keep(seq uint32, payload []byte) {
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
func (t *Table) drainOOO(f *conn) bool {
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
		f.toHost += uint64(n)
		f.mem.wrote(n)
		if skip+n < len(o.data) {
			f.sendBlocked, f.dropped = true, true
			f.mem.stale()
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

// SmallSegment is the largest segment whose ACK Flush may hold back for
// the answer: a request, not a bulk sender's data, whose ACKs clock it.
// The engine reads the tap one request at a time while it polls.
const SmallSegment = 1024

// ackKind says how long Flush may keep an owed ACK back.
type ackKind uint8

const (
	// ackNow: at the end of the batch. Gaps, probes, bytes refused, and
	// a second segment since the last ACK.
	ackNow ackKind = iota
	// ackDelayed: at most one segment came since the last ACK (RFC 1122
	// 4.2.3.2, RFC 9293 3.8.6.3): up to Config.DelayedAck, for the next
	// segment, or data to the namespace, to carry it. A sender with
	// two segments in flight never waits for it.
	ackDelayed
	// ackHeld: only small segments (SmallSegment) or a FIN: while the
	// engine polls for the answer, up to Config.AckHold.
	ackHeld
)

// queueAck owes the namespace an ACK, sent by Flush at the batch's end.
func (t *Table) queueAck(idx int32, f *conn) { t.queueAckKind(idx, f, ackNow) }

// queueAckKind owes the namespace an ACK that Flush may keep back as kind
// allows, if every segment it acknowledges allows it.
func (t *Table) queueAckKind(idx int32, f *conn, kind ackKind) {
	if !f.ackPending {
		f.ackKind, f.ackSince = kind, t.env.Now()
	} else {
		f.ackKind = min(f.ackKind, kind)
	}
	f.ackPending = true
	if !f.inAckList {
		f.inAckList = true
		t.acks = append(t.acks, idx)
	}
}

// Flush sends the ACKs owed after a batch of frames: one per flow, however
// many segments it received.
//
// Two kinds wait. An ACK owed only for small segments (SmallSegment), or
// for a FIN, waits with hold for up to Config.AckHold: the namespace's
// request is typically answered within tens of microseconds, and the
// answer (or the host's FIN) then carries the ACK, which saves a frame each
// way and the namespace's kernel the work of one. The engine flushes
// without hold before it sleeps, so such an ACK waits only while the loop
// polls for the answer.
//
// An ACK owed for one larger segment waits, hold or not, for up to
// Config.DelayedAck (NextTimer says when): the next segment then shares it,
// as a delayed ACK does (a receiver acknowledges at least every second
// full-sized segment). A bulk sender thus gets half the ACKs, each of which
// costs its kernel an interrupt and a pass through its stack: under TCG,
// a VM's sending rate. Its window stays open all the while.
//
// Gaps, probes, bytes refused and a second segment are acknowledged at
// once.
func (t *Table) Flush(hold bool) {
	now := time.Duration(0)
	kept := t.acks[:0]
	for _, idx := range t.acks {
		f := t.flows.At(idx)
		if !f.ackPending || f.fd < 0 || f.state != stEstablished {
			f.inAckList = false
			continue
		}
		wait := time.Duration(0)
		switch f.ackKind {
		case ackHeld:
			if hold {
				wait = t.cfg.AckHold
			}
		case ackDelayed:
			wait = t.cfg.DelayedAck
		}
		if wait > 0 {
			if now == 0 {
				now = t.env.Now()
			}
			if now-f.ackSince < wait {
				kept = append(kept, idx)
				continue
			}
		}
		f.inAckList = false
		t.sendCtl(f, packet.TCPAck, f.sndNxt)
		if f.wndLow && !f.outArmed {
			t.update(idx) // the window measured low: watch for the socket to drain
		}
	}
	t.acks = kept
}

// nextAck returns when the first delayed ACK is due (0: none waits).
func (t *Table) nextAck() time.Duration {
	next := time.Duration(0)
	for _, idx := range t.acks {
		f := t.flows.At(idx)
		if f.ackPending && f.ackKind == ackDelayed {
			if at := f.ackSince + t.cfg.DelayedAck; next == 0 || at < next {
				next = at
			}
		}
	}
	return next
}

// Held reports whether Flush kept ACKs back.
func (t *Table) Held() bool { return len(t.acks) > 0 }
