package tcp

// Host → namespace: data read from the host socket (with SO_PEEK_OFF, or
// into the flow's unacked ring without it) and sent as segments within the
// namespace's window, and retransmitted from sndUna when it asks.

import (
	"fmt"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// peekOff prepares a new host socket for host → namespace data: with
// SO_PEEK_OFF, reads peek at an offset past the bytes in flight.
func (t *Table) peekOff(fd int) error {
	if t.cfg.NoPeekOff {
		return nil
	}
	if e := setInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); e != 0 {
		return fmt.Errorf("SO_PEEK_OFF: %w (TCP needs Linux 6.9 or later)", e)
	}
	return nil
}

// errRingFull is fill's answer when the flow's ring (NoPeekOff) has no
// room: the namespace's ACKs make some, and push is called again then.
const errRingFull = unix.ENOBUFS

// fill reads the next bytes for the namespace into dst, inflight bytes
// past sndUna: from the socket, or for a retransmission without
// SO_PEEK_OFF from the flow's own copy. drained says the socket gave fewer
// than were asked of it: it holds no more for now.
func (t *Table) fill(f *conn, dst []byte, inflight int) (n int, e unix.Errno, drained bool) {
	if !t.cfg.NoPeekOff {
		n, e = recvFlags(f.fd, dst, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return n, e, n < len(dst)
	}
	u := &f.sent
	if n = u.read(inflight, dst); n > 0 {
		return n, 0, false
	}
	space := t.rings.reserve(u, len(dst))
	if space == 0 {
		return 0, errRingFull, false
	}
	ask := min(len(dst), space)
	n, e = recvFlags(f.fd, dst[:ask], unix.MSG_DONTWAIT)
	if e == 0 && n > 0 {
		u.write(dst[:n])
	}
	return n, e, n < ask
}

// acked forgets n bytes the namespace acknowledged.
//
// With SO_PEEK_OFF the bytes are discarded from the socket, but a few are
// left for Idle: a request's answer is acknowledged by the next request,
// and the discard is a system call the request would otherwise wait for.
// They are bytes at the head of the queue, before the peek offset, so
// nothing reads them again (rewind starts after them).
func (t *Table) acked(idx int32, f *conn, n int) {
	if t.cfg.NoPeekOff {
		f.sent.drop(n)
		return
	}
	f.acked += n
	if f.acked < deferDiscard {
		if !f.inDiscards {
			f.inDiscards = true
			t.discards = append(t.discards, idx)
		}
		return
	}
	t.discardAcked(f)
}

// deferDiscard is the most acknowledged bytes left in a socket for Idle to
// discard: a bulk flow discards at once, as its ACKs come.
const deferDiscard = 16 << 10

// discardAcked drops the acknowledged bytes still at the head of f's
// socket.
func (t *Table) discardAcked(f *conn) {
	if f.acked == 0 || f.fd < 0 {
		return
	}
	if _, e := discard(f.fd, f.acked); e != 0 {
		t.env.Logf("tcp %v: discard %d acknowledged bytes: %v", f.key, f.acked, e)
	}
	f.acked = 0
}

// Idle does what the last round left for when the loop has nothing else
// to do: the engine calls it before it polls or sleeps. That is the discard
// of acknowledged bytes (acked), and one spare socket for the pool
// (refill).
func (t *Table) Idle() {
	for _, idx := range t.discards {
		f := t.flows.At(idx)
		f.inDiscards = false
		t.discardAcked(f)
	}
	t.discards = t.discards[:0]
	t.refill()
}

// push sends host data to the namespace while its window allows. It reads
// only when the socket may hold bytes it has not sent (f.avail): the
// namespace's ACKs call it whether or not any came.
func (t *Table) push(idx int32) {
	f := t.flows.At(idx)
	if f.state != stEstablished || f.finSent || !f.avail {
		return
	}
	var wnd uint16
	measured := false
	most := f.mss
	if t.cfg.GSO {
		// A super-frame of whole segments: the namespace's kernel cuts
		// it at the MSS only if it must (it forwards the data on).
		most = maxGSOPayload / f.mss * f.mss
	}
	for {
		inflight := f.sndNxt - f.sndUna
		if inflight >= f.sndWnd {
			return // window full: the namespace's ACK resumes us
		}
		room := min(int(f.sndWnd-inflight), most)
		buf := t.env.Frame()
		hl := f.hdrLen()
		n, e, drained := t.fill(f, buf[hl:hl+room], int(inflight))
		switch {
		case e == unix.EAGAIN:
			f.avail = false
			return
		case e == errRingFull:
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
		if !measured {
			// Once per burst, and only if there is one: the window
			// may cost a system call (segment.go).
			wnd, measured = t.window(f, false), true
		}
		flags := packet.TCPAck
		if drained {
			flags |= packet.TCPPsh // the socket is drained for now
		}
		fl := t.frame(f, buf, flags, f.sndNxt, false, n, wnd)
		// Only the pseudo-header sum: the payload is never summed by
		// anyone on the way into the namespace.
		tcpOff := hl - packet.TCPLen
		packet.TCP(buf[tcpOff:fl]).SetPartialChecksum(f.key.Dst, f.key.NS)
		o := packet.Offload{CsumStart: uint16(tcpOff), CsumOffset: packet.TCPChecksumOffset}
		if n > f.mss {
			o.GSO, o.GSOSize, o.HdrLen = packet.GSOTCPv4, uint16(f.mss), uint16(hl)
			if !f.key.NS.Is4() {
				o.GSO = packet.GSOTCPv6
			}
		}
		t.env.Send(fl, o)
		f.ackPending = false
		f.sndNxt += uint32(n)
		t.moved(n, f.lastSeen)
		if f.rtoAt == 0 {
			t.startTimer(f)
		}
		if drained && !f.rdhup {
			f.avail = false
			return
		}
		// After the host's FIN, a short read may be the last bytes:
		// read on, for the EOF that no edge will announce.
	}
}

// rewind retransmits from the oldest unacknowledged byte: the bytes are
// still in the socket's receive queue, after the acknowledged ones not yet
// discarded, or (NoPeekOff) at the head of the flow's ring.
func (t *Table) rewind(f *conn) {
	if !t.cfg.NoPeekOff && setInt(f.fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, f.acked) != 0 {
		return
	}
	f.sndNxt = f.sndUna
	f.finSent = false
	f.avail = true
}
