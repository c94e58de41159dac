package tcp

import (
	"fmt"

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
func (t *Table) fill(f *flow, dst []byte, inflight int) (n int, e unix.Errno, resent bool) {
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
func (t *Table) acked(f *flow, n int) {
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
func (t *Table) canRead(f *flow) bool {
	if !t.cfg.NoPeekOff {
		return true
	}
	u := &f.sent
	return u.space() > 0 || t.rings.growTo(u, 1) > 0
}
