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

// fill reads the next bytes for the namespace into dst, inflight bytes
// past sndUna. resent says they came from the flow's own copy (a
// retransmission without SO_PEEK_OFF), not from the socket.
func (t *Table) fill(f *conn, dst []byte, inflight int) (n int, e unix.Errno, resent bool) {
	if !t.cfg.NoPeekOff {
		n, e = recvFlags(f.fd, dst, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return n, e, false
	}
	u := &f.sent
	if n = u.read(inflight, dst); n > 0 {
		return n, 0, true
	}
	space := t.rings.reserve(u, len(dst))
	if space == 0 {
		return 0, unix.EAGAIN, false // the namespace's ACKs make room
	}
	n, e = recvFlags(f.fd, dst[:min(len(dst), space)], unix.MSG_DONTWAIT)
	if e == 0 && n > 0 {
		u.write(dst[:n])
	}
	return n, e, false
}

// acked forgets n bytes the namespace acknowledged.
func (t *Table) acked(f *conn, n int) {
	if t.cfg.NoPeekOff {
		f.sent.drop(n)
		return
	}
	if _, e := discard(f.fd, n); e != 0 {
		t.env.Logf("tcp %v: discard %d acknowledged bytes: %v", f.key, n, e)
	}
}

// canRead reports whether push could take new bytes from the socket now:
// with SO_PEEK_OFF always, without it while the flow's ring has or can get
// room. epoll is level-triggered, so asking for EPOLLIN when push cannot
// read would spin.
func (t *Table) canRead(f *conn) bool {
	if !t.cfg.NoPeekOff {
		return true
	}
	u := &f.sent
	return u.space() > 0 || t.rings.growTo(u, 1) > 0
}

// push sends host data to the namespace while its window allows.
func (t *Table) push(idx int32) {
	f := t.flows.At(idx)
	if f.state != stEstablished || f.finSent {
		return
	}
	wnd := t.window(f, false) // once per burst: a syscall per segment would cost more than it tells
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
		flags := packet.TCPAck
		drained := n < room && !resent
		if drained {
			flags |= packet.TCPPsh // the socket is drained for now
		}
		fl := t.frame(f, buf, flags, f.sndNxt, false, n, wnd)
		// Only the pseudo-header sum: the payload is never summed by
		// anyone on the way into the namespace.
		packet.TCP(buf[tcpOff:fl]).SetPartialChecksum(f.key.Dst, f.key.NS)
		o := packet.Offload{CsumStart: tcpOff, CsumOffset: packet.TCPChecksumOffset}
		if n > f.mss {
			o.GSO, o.GSOSize, o.HdrLen = packet.GSOTCPv4, uint16(f.mss), hdrLen
		}
		t.env.Send(fl, o)
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
func (t *Table) rewind(f *conn) {
	if !t.cfg.NoPeekOff && setInt(f.fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0) != 0 {
		return
	}
	f.sndNxt = f.sndUna
	f.finSent = false
}
