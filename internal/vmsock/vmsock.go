// Package vmsock carries a virtual machine's Ethernet frames over a unix
// stream socket, as qemu's stream and socket netdev back-ends speak them:
// each frame is preceded by its length, 4 bytes big-endian, and nothing
// else. This is passt's socket mode, and the seeds' merd and tap.c.
//
// A Port is the engine's frame device for a VM (it satisfies engine.Tap,
// engine.Queued and engine.Peer). Two things set it apart from a tap:
//
//   - The socket is a byte stream. One recv reads as many frames as the
//     receive buffer holds, and Read hands them out one by one; a frame may
//     also arrive in pieces. Frames already read are invisible to epoll, so
//     Buffered tells the loop to come back without waiting.
//   - Writes are queued: Write appends a frame to one buffer and Flush sends
//     the whole batch with one sendmsg. The engine builds most frames in
//     that buffer itself (Reserve, Commit), which saves copying every byte
//     to the VM once more (BenchmarkQueue: 16 µs a 64 KiB frame, against
//     23-31 µs through Write). A frame once queued is sent whole,
//     even across a full socket (the stream would be corrupt otherwise);
//     frames that do not fit in the queue are dropped as a full tap drops
//     them. No vnet header exists here, so a partial checksum is completed
//     in Write or Commit.
//
// The peer is untrusted: a length of 0, one over MaxFrame, or a connection
// that ends inside a frame is a *FrameError, and the engine drops that
// connection and waits for the next.
package vmsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nsgate/nsgate/internal/fileref"
	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

// probeWindow is how soon a connection that sends nothing must close to be
// taken for a probe (ErrSilent). A probe closes at once.
const probeWindow = time.Second

// HeaderLen is the length prefix before each frame.
const HeaderLen = 4

// MaxFrame is the longest frame accepted or sent: the largest MTU and an
// Ethernet header (65,549 bytes), as on the tap.
const MaxFrame = tapdev.MaxFrame

// Buffer sizes. The receive buffer holds many MTU-sized frames per recv and
// always at least one whole frame; the send queue is what may be in flight
// towards a VM that reads slowly (qemu stops reading while the guest's
// receive ring is full) before frames are dropped.
const (
	recvBufLen   = 256 << 10
	sendQueueLen = 8 << 20
)

// ErrNotConnected is returned by Read, Write and Flush while no VM is
// connected.
var ErrNotConnected = errors.New("no VM connected")

// ErrQueueFull is returned by Write when the send queue has no room for the
// frame: the frame is dropped.
var ErrQueueFull = errors.New("send queue full")

// ErrSegmented is returned by Write for a super-frame: a VM's stream
// socket has no vnet header to ask the guest to segment it.
var ErrSegmented = errors.New("a super-frame (GSO) on a VM's socket, which carries no vnet header")

// ErrSilent is returned by Read when the peer closed the connection within
// probeWindow of connecting, without sending a byte: not a VM, but a
// liveness probe such as Listen's own (or passt's) on a socket already
// served. Its Silent method says so to the engine, which then keeps waiting
// even with --one-off. (A VM that sent nothing for longer, say one without
// a driver for its NIC, has still been and gone.)
var ErrSilent error = silentError{}

type silentError struct{}

func (silentError) Error() string {
	return "a connection closed without sending a frame (a liveness probe?)"
}

// Silent marks the error for the engine (see ErrSilent).
func (silentError) Silent() bool { return true }

// FrameError is a violation of the framing by the peer.
type FrameError struct {
	Len  uint32 // the length the peer announced
	Have int    // bytes of the frame that came before the end (Truncated)
	// Truncated: the connection ended inside this frame.
	Truncated bool
}

func (e *FrameError) Error() string {
	switch {
	case e.Truncated:
		return fmt.Sprintf("connection ended inside a frame (%d of %d bytes)", e.Have, e.Len)
	case e.Len == 0:
		return "frame length 0"
	default:
		return fmt.Sprintf("frame length %d is over the largest frame, %d bytes", e.Len, MaxFrame)
	}
}

// Split returns the first frame in b and the bytes it takes with its
// header, or used 0 when b does not hold a whole frame yet. A length the
// peer may not send is a *FrameError.
func Split(b []byte) (frame []byte, used int, err error) {
	if len(b) < HeaderLen {
		return nil, 0, nil
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > MaxFrame {
		return nil, 0, &FrameError{Len: n}
	}
	end := HeaderLen + int(n)
	if len(b) < end {
		return nil, 0, nil
	}
	return b[HeaderLen:end], end, nil
}

// Port is a VM's connection, and the socket it connects to (see Listen and
// FromConn). Only the engine's loop uses it, except Close.
type Port struct {
	ln   int         // listening socket; -1 with FromConn
	conn int         // the VM's connection; -1 while none
	file fileref.Ref // the socket file, which Close removes (none with FromConn)

	rbuf       []byte
	rstart     int
	rend       int
	wbuf       []byte
	wstart     int
	wend       int
	readClosed bool
	// drained: the last read came back short, so the socket was empty
	// then. The next Read that finds no whole frame says EAGAIN without
	// a read that would find it empty again; epoll (level-triggered)
	// reports what arrived since.
	drained bool
	spoke   bool      // the peer sent a byte on this connection
	since   time.Time // when the connection was accepted
}

func newPort(ln, conn int) *Port {
	return &Port{ln: ln, conn: conn, file: fileref.Ref{Dir: -1},
		rbuf: make([]byte, recvBufLen), wbuf: make([]byte, sendQueueLen)}
}

// FromConn wraps fd, a connected stream socket (--fd: from libvirt, or one
// end of a socketpair). The Port serves that one peer: it has no listener.
func FromConn(fd int) (*Port, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("--fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("--fd %d: not a socket", fd)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("--fd %d: not a stream socket (type %d, %v)", fd, typ, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("--fd %d: set non-blocking: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	growBuffers(fd)
	p := newPort(-1, fd)
	p.since = time.Now()
	return p, nil
}

// growBuffers asks for socket buffers as large as the send queue, which
// the kernel caps at net.core.wmem_max and rmem_max (passt asks the same).
// A stream socket's send buffer is what may be in flight to qemu: at the
// default 208 KiB, a window's worth of frames to the VM (up to a dozen of
// 64 KiB) meets EAGAIN and waits for EPOLLOUT halfway, while qemu could
// already be filling the guest's ring with the rest. Best effort: the
// defaults work, only slower.
func growBuffers(fd int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sendQueueLen)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sendQueueLen)
}

// Fd returns the connection's descriptor, or -1 while no VM is connected.
func (p *Port) Fd() int { return p.conn }

// Headroom is the length prefix, which Write fills in before each frame.
func (p *Port) Headroom() int { return HeaderLen }

// Read copies the next frame into buf after the headroom and returns its
// length; buf holds HeaderLen+MaxFrame bytes, as the engine's buffers do.
// It returns unix.EAGAIN when no whole frame is in (without reading again
// if the last read found the socket drained: one read per batch, not two),
// io.EOF when the VM
// closed the connection between frames, ErrSilent when a probe did, and a
// *FrameError when the VM broke the framing.
func (p *Port) Read(buf []byte) (int, error) {
	for {
		frame, used, err := Split(p.rbuf[p.rstart:p.rend])
		if err != nil {
			return 0, err
		}
		if used > 0 {
			p.rstart += used
			if p.rstart == p.rend {
				p.rstart, p.rend = 0, 0
			}
			return copy(buf[HeaderLen:], frame), nil
		}
		if p.conn < 0 {
			return 0, ErrNotConnected
		}
		if p.readClosed {
			return 0, p.eof()
		}
		if p.drained {
			p.drained = false
			return 0, unix.EAGAIN
		}
		if p.rstart > 0 { // make room after a partial frame
			p.rend = copy(p.rbuf, p.rbuf[p.rstart:p.rend])
			p.rstart = 0
		}
		n, err := unix.Read(p.conn, p.rbuf[p.rend:])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			p.readClosed = true
			return 0, p.eof()
		}
		p.drained = p.rend+n < len(p.rbuf)
		p.rend += n
		p.spoke = true
	}
}

// eof is what the end of the stream means with the bytes still buffered.
func (p *Port) eof() error {
	if !p.spoke && time.Since(p.since) < probeWindow {
		return ErrSilent
	}
	if have := p.rend - p.rstart; have > 0 {
		e := &FrameError{Truncated: true, Have: have - HeaderLen}
		if have >= HeaderLen {
			e.Len = binary.BigEndian.Uint32(p.rbuf[p.rstart:])
		} else {
			e.Have = 0 // not even the length came
		}
		return e
	}
	return io.EOF
}

// Buffered reports whether Read has something without reading the socket:
// a whole frame, or a length it will refuse.
func (p *Port) Buffered() bool {
	_, used, err := Split(p.rbuf[p.rstart:p.rend])
	return used > 0 || err != nil
}

// Write queues the frame in buf after the headroom, for Flush to send.
// o.CsumStart > 0 marks a partial L4 checksum at CsumStart+CsumOffset,
// which Write completes: the VM's virtio-net gets no vnet header from
// qemu's stream back-end, so the frame must carry a final checksum. For the
// same reason a super-frame (o.GSO) is refused: the engine sends none here.
func (p *Port) Write(buf []byte, o packet.Offload) error {
	if p.conn < 0 {
		return ErrNotConnected
	}
	frame := buf[HeaderLen:]
	if len(frame) == 0 || len(frame) > MaxFrame {
		return fmt.Errorf("frame of %d bytes: frames are 1 to %d bytes", len(frame), MaxFrame)
	}
	if err := finish(frame, o); err != nil {
		return err
	}
	if !p.room(len(buf)) {
		return ErrQueueFull
	}
	binary.BigEndian.PutUint32(buf, uint32(len(frame)))
	p.wend += copy(p.wbuf[p.wend:], buf)
	return nil
}

// finish readies a frame for a VM's socket: a super-frame is refused, and
// a partial checksum completed (see Write).
func finish(frame []byte, o packet.Offload) error {
	if o.GSO != packet.GSONone {
		return ErrSegmented
	}
	if o.CsumStart > 0 {
		return o.Complete(frame)
	}
	return nil
}

// room reports whether need bytes fit at the send queue's tail, moving
// what is queued to the front first if they would not.
func (p *Port) room(need int) bool {
	if need > len(p.wbuf)-p.wend && p.wstart > 0 {
		p.wend = copy(p.wbuf, p.wbuf[p.wstart:p.wend])
		p.wstart = 0
	}
	return need <= len(p.wbuf)-p.wend
}

// Reserve returns room at the send queue's tail for one frame, headroom
// included (HeaderLen+MaxFrame bytes), so that the frame is built where
// Flush sends it from: Commit then queues it without the copy Write
// makes, a copy of every byte to the VM. It returns nil while no VM is
// connected, or when the queue has no such room (Write then drops the
// frame, as a full queue does). Nothing may be queued between Reserve and
// Commit.
func (p *Port) Reserve() []byte {
	const need = HeaderLen + MaxFrame
	if p.conn < 0 || !p.room(need) {
		return nil
	}
	return p.wbuf[p.wend : p.wend+need]
}

// Commit queues the n-byte frame built after the headroom of the room
// Reserve returned, completing a partial checksum as Write does.
func (p *Port) Commit(n int, o packet.Offload) error {
	if p.conn < 0 {
		return ErrNotConnected
	}
	if n <= 0 || n > MaxFrame || p.wend+HeaderLen+n > len(p.wbuf) {
		return fmt.Errorf("frame of %d bytes: frames are 1 to %d bytes, in the room Reserve gave", n, MaxFrame)
	}
	buf := p.wbuf[p.wend : p.wend+HeaderLen+n]
	if err := finish(buf[HeaderLen:], o); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(buf, uint32(n))
	p.wend += len(buf)
	return nil
}

// Flush sends the queued frames, as many as the socket takes, in one
// sendmsg per socket buffer's worth. It reports whether bytes stay queued
// (the loop then waits for EPOLLOUT). An error means the connection is
// broken.
func (p *Port) Flush() (pending bool, err error) {
	for p.wstart < p.wend {
		if p.conn < 0 {
			p.wstart, p.wend = 0, 0
			return false, ErrNotConnected
		}
		// MSG_NOSIGNAL: a VM gone away is an error here, not a SIGPIPE.
		n, err := unix.SendmsgN(p.conn, p.wbuf[p.wstart:p.wend], nil, nil, unix.MSG_NOSIGNAL)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true, nil
		case err != nil:
			p.wstart, p.wend = 0, 0 // the connection is broken: Read will say so
			return false, err
		}
		p.wstart += n
	}
	p.wstart, p.wend = 0, 0
	return false, nil
}

// Queued returns the bytes waiting in the send queue.
func (p *Port) Queued() int { return p.wend - p.wstart }
