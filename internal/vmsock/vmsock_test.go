package vmsock

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// pair returns a Port on one end of a stream socketpair and the fake VM's
// end (blocking).
func pair(t testing.TB) (*Port, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromConn(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(); unix.Close(fds[1]) })
	return p, fds[1]
}

// framed returns frames as the VM sends them: each with its length.
func framed(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// fdReader reads a descriptor the test owns (an *os.File would close it
// from its finalizer, after the number is reused).
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(r), b)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	return max(n, 0), err
}

func frameOf(n int, fill byte) []byte { return bytes.Repeat([]byte{fill}, n) }

func write(t testing.TB, fd int, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
}

// readFrame reads the next frame from p, waiting up to a second for bytes.
func readFrame(t testing.TB, p *Port) ([]byte, error) {
	t.Helper()
	buf := make([]byte, HeaderLen+MaxFrame)
	deadline := time.Now().Add(time.Second)
	for {
		n, err := p.Read(buf)
		if err == unix.EAGAIN && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[HeaderLen : HeaderLen+n], nil
	}
}

func TestSplit(t *testing.T) {
	big := framed(frameOf(MaxFrame, 7))
	cases := []struct {
		name   string
		in     []byte
		frame  int // length of the frame returned; -1: none
		used   int
		errLen int64 // FrameError.Len; -1: no error
	}{
		{"empty", nil, -1, 0, -1},
		{"three bytes", []byte{0, 0, 0}, -1, 0, -1},
		{"header only", []byte{0, 0, 0, 60}, -1, 0, -1},
		{"length 0", []byte{0, 0, 0, 0, 1, 2}, -1, 0, 0},
		{"length over the largest", []byte{0, 1, 0, 14, 0}, -1, 0, MaxFrame + 1},
		{"length 2^32-1", []byte{0xff, 0xff, 0xff, 0xff}, -1, 0, 0xffffffff},
		{"largest frame", big, MaxFrame, len(big), -1},
		{"largest frame, one byte short", big[:len(big)-1], -1, 0, -1},
		{"one byte frame", []byte{0, 0, 0, 1, 9, 0, 0}, 1, 5, -1},
		{"two frames", framed(frameOf(60, 1), frameOf(70, 2)), 60, 64, -1},
	}
	for _, c := range cases {
		f, used, err := Split(c.in)
		var fe *FrameError
		switch {
		case c.errLen >= 0:
			if !errors.As(err, &fe) || int64(fe.Len) != c.errLen || fe.Truncated {
				t.Errorf("%s: error %v, want a FrameError for length %d", c.name, err, c.errLen)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.frame < 0 && (f != nil || used != 0):
			t.Errorf("%s: frame of %d, used %d; want none", c.name, len(f), used)
		case c.frame >= 0 && (len(f) != c.frame || used != c.used):
			t.Errorf("%s: frame of %d, used %d; want %d, %d", c.name, len(f), used, c.frame, c.used)
		}
	}
}

// TestReadFrames: many frames from one recv, and a frame that arrives a
// byte at a time, all handed out whole and in order.
func TestReadFrames(t *testing.T) {
	p, vm := pair(t)
	frames := [][]byte{frameOf(60, 1), frameOf(1514, 2), frameOf(MaxFrame, 3), frameOf(14, 4)}
	write(t, vm, framed(frames...))
	for i, want := range frames {
		got, err := readFrame(t, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
		}
	}
	if p.Buffered() {
		t.Fatal("Buffered after every frame was read")
	}
	if _, err := p.Read(make([]byte, HeaderLen+MaxFrame)); err != unix.EAGAIN {
		t.Fatalf("Read with nothing queued: %v, want EAGAIN", err)
	}
	// A frame in pieces: nothing until its last byte.
	last := framed(frameOf(300, 5))
	for i, b := range last {
		write(t, vm, []byte{b})
		time.Sleep(100 * time.Microsecond)
		n, err := p.Read(make([]byte, HeaderLen+MaxFrame))
		if i < len(last)-1 && err != unix.EAGAIN {
			t.Fatalf("after %d of %d bytes: %d, %v; want EAGAIN", i+1, len(last), n, err)
		}
		if i == len(last)-1 && (err != nil || n != 300) {
			// the byte may not be there yet
			if got, err := readFrame(t, p); err != nil || len(got) != 300 {
				t.Fatalf("whole frame: %d bytes, %v", len(got), err)
			}
		}
	}
}

// TestReadOncePerBatch: a read that came back short found the socket
// drained, so the Read after the frames it brought says EAGAIN without
// reading again (epoll, level-triggered, reports what came since); the
// Read after that reads. A read that filled the buffer says nothing of
// the kind.
func TestReadOncePerBatch(t *testing.T) {
	p, vm := pair(t)
	buf := make([]byte, HeaderLen+MaxFrame)
	write(t, vm, framed(frameOf(60, 1)))
	if got, err := readFrame(t, p); err != nil || !bytes.Equal(got, frameOf(60, 1)) {
		t.Fatalf("first frame: %d bytes, %v", len(got), err)
	}
	write(t, vm, framed(frameOf(60, 2)))
	if n, err := p.Read(buf); err != unix.EAGAIN {
		t.Fatalf("Read after a short read: %d, %v; want EAGAIN without a read", n, err)
	}
	if n, err := p.Read(buf); err != nil || !bytes.Equal(buf[HeaderLen:HeaderLen+n], frameOf(60, 2)) {
		t.Fatalf("the next Read: %d bytes, %v; want the second frame", n, err)
	}
	if n, err := p.Read(buf); err != unix.EAGAIN {
		t.Fatalf("Read after the second frame: %d, %v; want EAGAIN", n, err)
	}

	// A read that fills the buffer: the rest is read at once, with no
	// EAGAIN (and no wait for epoll) in between.
	p.rbuf = p.rbuf[:8192]
	frames := [][]byte{frameOf(3000, 3), frameOf(3000, 4), frameOf(3000, 5)}
	write(t, vm, framed(frames...)) // 9012 bytes, all in the socket now
	for i, want := range frames {
		n, err := p.Read(buf)
		if err != nil || !bytes.Equal(buf[HeaderLen:HeaderLen+n], want) {
			t.Fatalf("frame %d after a full read: %d bytes, %v", i, n, err)
		}
	}
	if n, err := p.Read(buf); err != unix.EAGAIN {
		t.Fatalf("Read after the last frame: %d, %v; want EAGAIN", n, err)
	}
}

// TestBuffered: frames left behind in the buffer are reported, since epoll
// cannot see them.
func TestBuffered(t *testing.T) {
	p, vm := pair(t)
	write(t, vm, framed(frameOf(60, 1), frameOf(60, 2)))
	if _, err := readFrame(t, p); err != nil {
		t.Fatal(err)
	}
	if !p.Buffered() {
		t.Fatal("a second whole frame was read with the first, but Buffered says no")
	}
	write(t, vm, []byte{0, 0, 0, 0})
	if _, err := readFrame(t, p); err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(t, p); err == nil {
		t.Fatal("length 0 accepted")
	}
}

// TestReadEnd: the ways a connection ends, clean or inside a frame.
func TestReadEnd(t *testing.T) {
	cases := []struct {
		name      string
		in        []byte
		want      error // io.EOF, or nil for a *FrameError
		have, len int
	}{
		{"between frames", framed(frameOf(60, 1)), io.EOF, 0, 0},
		{"before a byte", nil, ErrSilent, 0, 0},
		{"inside the length", append(framed(frameOf(60, 1)), 0, 0), nil, 0, 0},
		{"inside a frame", append(framed(frameOf(60, 1)), 0, 0, 0, 100, 1, 2, 3), nil, 3, 100},
		{"length 0", []byte{0, 0, 0, 0}, nil, 0, 0},
		{"length 65550", []byte{0, 1, 0, 14}, nil, 0, MaxFrame + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, vm := pair(t)
			write(t, vm, c.in)
			unix.Shutdown(vm, unix.SHUT_WR)
			var err error
			for err == nil {
				_, err = readFrame(t, p)
			}
			var fe *FrameError
			switch {
			case c.want != nil && err != c.want:
				t.Fatalf("got %v, want %v", err, c.want)
			case c.want == nil && !errors.As(err, &fe):
				t.Fatalf("got %v, want a FrameError", err)
			case c.want == nil && (fe.Have != c.have || int(fe.Len) != c.len):
				t.Fatalf("got %v (have %d, length %d), want have %d, length %d", err, fe.Have, fe.Len, c.have, c.len)
			}
		})
	}
}

// TestWriteFlush: frames queued by Write reach the VM whole and in order,
// through a socket buffer far smaller than the batch: Flush reports what
// stays queued, and sends it once the VM reads.
func TestWriteFlush(t *testing.T) {
	p, vm := pair(t)
	if err := unix.SetsockoptInt(p.Fd(), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	sent := 0
	buf := make([]byte, HeaderLen+MaxFrame)
	for i := range 200 {
		n := 60 + (i*977)%9000
		for j := range n {
			buf[HeaderLen+j] = byte(i + j)
		}
		if err := p.Write(buf[:HeaderLen+n], packet.Offload{}); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		want.Write(framed(buf[HeaderLen : HeaderLen+n]))
		sent += HeaderLen + n
	}
	pending, err := p.Flush()
	if err != nil || !pending {
		t.Fatalf("Flush of %d bytes through a 4 KiB buffer: pending %v, %v", sent, pending, err)
	}
	got := sha256.New()
	done := make(chan error)
	go func() {
		_, err := io.CopyN(got, fdReader(vm), int64(sent))
		done <- err
	}()
	for pending {
		time.Sleep(time.Millisecond)
		if pending, err = p.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the VM read other bytes than were written")
	}
}

// TestReserveCommit: frames built in the queue (Reserve, Commit) and
// copied into it (Write), interleaved, reach the VM in order and intact,
// partial checksums completed; a full queue has no room to reserve.
func TestReserveCommit(t *testing.T) {
	p, vm := pair(t)
	src, dst := packet.AddrFrom4([4]byte{10, 0, 2, 2}), packet.AddrFrom4([4]byte{10, 0, 2, 15})
	want := sha256.New()
	sent := 0
	buf := make([]byte, HeaderLen+MaxFrame)
	for i := range 100 {
		l4len := packet.TCPLen + (i*4099)%60000
		n := packet.EtherLen + packet.IPv4Len + l4len
		b := buf
		if i%3 != 0 {
			if b = p.Reserve(); len(b) != HeaderLen+MaxFrame {
				t.Fatalf("frame %d: Reserve gave %d bytes, want %d", i, len(b), HeaderLen+MaxFrame)
			}
		}
		f := b[HeaderLen : HeaderLen+n]
		packet.Ether(f).SetHeader(packet.MAC{2}, packet.MAC{4}, packet.EtherTypeIPv4)
		packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + l4len, Protocol: packet.ProtoTCP, Src: src, Dst: dst})
		l4 := f[packet.EtherLen+packet.IPv4Len:]
		for j := packet.TCPLen; j < len(l4); j++ {
			l4[j] = byte(i + j)
		}
		packet.TCP(l4).Encode(&packet.TCPFields{SrcPort: 80, DstPort: 40000, Seq: uint32(i), Flags: packet.TCPAck, Window: 100, HeaderLen: packet.TCPLen})
		packet.TCP(l4).SetPartialChecksum(src, dst)
		o := packet.Offload{CsumStart: packet.EtherLen + packet.IPv4Len, CsumOffset: packet.TCPChecksumOffset}
		// What the VM must read: the frame with its checksum complete.
		full := append([]byte(nil), f...)
		if err := o.Complete(full); err != nil {
			t.Fatal(err)
		}
		var err error
		if i%3 != 0 {
			err = p.Commit(n, o)
		} else {
			err = p.Write(b[:HeaderLen+n], o)
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		want.Write(framed(full))
		sent += HeaderLen + n
		if i%10 == 9 {
			if _, err := p.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := sha256.New()
	done := make(chan error)
	go func() {
		_, err := io.CopyN(got, fdReader(vm), int64(sent))
		done <- err
	}()
	for pending := true; pending; {
		var err error
		if pending, err = p.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the VM read other bytes than were queued")
	}
	if err := p.Commit(0, packet.Offload{}); err == nil {
		t.Error("Commit of an empty frame was accepted")
	}
	if err := p.Commit(MaxFrame+1, packet.Offload{}); err == nil {
		t.Error("Commit of a frame over MaxFrame was accepted")
	}
	if p.Reserve() == nil {
		t.Fatal("no room in an empty queue")
	}
	if err := p.Commit(1500, packet.Offload{GSO: packet.GSOTCPv4, GSOSize: 1000, HdrLen: 54}); !errors.Is(err, ErrSegmented) {
		t.Fatalf("a super-frame: %v, want ErrSegmented", err)
	}
	// A VM that never reads: the queue fills, and then has no room.
	for i := 0; p.Reserve() != nil; i++ {
		if i > 2*sendQueueLen/MaxFrame {
			t.Fatalf("room for %d frames in a queue of %d bytes", i, sendQueueLen)
		}
		if err := p.Commit(MaxFrame, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if q := p.Queued(); q < sendQueueLen-2*(HeaderLen+MaxFrame) {
		t.Fatalf("no room with %d bytes queued of %d", q, sendQueueLen)
	}
}

// TestQueueFull: a VM that never reads fills the queue; further frames are
// refused, not blocked on, and the queue drains once it reads.
func TestQueueFull(t *testing.T) {
	p, _ := pair(t)
	buf := make([]byte, HeaderLen+MaxFrame)
	var err error
	n := 0
	for ; n < 2*sendQueueLen/MaxFrame; n++ {
		if err = p.Write(buf, packet.Offload{}); err != nil {
			break
		}
		if _, ferr := p.Flush(); ferr != nil {
			t.Fatal(ferr)
		}
	}
	if err != ErrQueueFull {
		t.Fatalf("after %d frames: %v, want ErrQueueFull", n, err)
	}
	if q := p.Queued(); q > sendQueueLen || q < sendQueueLen-2*len(buf) {
		t.Fatalf("queued %d bytes, want about %d", q, sendQueueLen)
	}
}

// TestWriteChecksum: a frame with a partial checksum reaches the VM with
// the full one, TCP and UDP (whose zero sum goes out as 0xffff).
func TestWriteChecksum(t *testing.T) {
	p, vm := pair(t)
	src, dst := packet.AddrFrom4([4]byte{10, 0, 2, 2}), packet.AddrFrom4([4]byte{10, 0, 2, 15})
	for _, proto := range []uint8{packet.ProtoTCP, packet.ProtoUDP} {
		l4len := packet.TCPLen + 1000
		if proto == packet.ProtoUDP {
			l4len = packet.UDPLen + 999
		}
		buf := make([]byte, HeaderLen+packet.EtherLen+packet.IPv4Len+l4len)
		f := buf[HeaderLen:]
		packet.Ether(f).SetHeader(packet.MAC{2}, packet.MAC{4}, packet.EtherTypeIPv4)
		packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + l4len, Protocol: proto, Src: src, Dst: dst})
		l4 := f[packet.EtherLen+packet.IPv4Len:]
		for i := range l4 {
			l4[i] = byte(i * 7)
		}
		var off int
		if proto == packet.ProtoTCP {
			packet.TCP(l4).Encode(&packet.TCPFields{SrcPort: 80, DstPort: 40000, Seq: 1, Flags: packet.TCPAck, Window: 100, HeaderLen: packet.TCPLen})
			packet.TCP(l4).SetPartialChecksum(src, dst)
			off = packet.TCPChecksumOffset
		} else {
			packet.UDP(l4).Encode(&packet.UDPFields{SrcPort: 53, DstPort: 40000, Length: l4len})
			packet.UDP(l4).SetPartialChecksum(src, dst)
			off = packet.UDPChecksumOffset
		}
		if err := p.Write(buf, packet.Offload{CsumStart: uint16(packet.EtherLen + packet.IPv4Len), CsumOffset: uint16(off)}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(buf))
		if _, err := io.ReadFull(fdReader(vm), got); err != nil {
			t.Fatal(err)
		}
		gl4 := got[HeaderLen+packet.EtherLen+packet.IPv4Len:]
		if s := packet.Checksum(gl4, packet.PseudoHeaderSum(src, dst, proto, l4len)); s != 0 {
			t.Errorf("proto %d: checksum does not verify (residue %#x)", proto, s)
		}
	}
	// A partial checksum past the frame is refused, not written out of bounds.
	if err := p.Write(make([]byte, HeaderLen+20), packet.Offload{CsumStart: 18, CsumOffset: 6}); err == nil {
		t.Fatal("a checksum field past the frame's end was accepted")
	}
	// A super-frame cannot be said on this socket: refused, not sent whole.
	if err := p.Write(make([]byte, HeaderLen+1500), packet.Offload{GSO: packet.GSOTCPv4, GSOSize: 1000, HdrLen: 54}); !errors.Is(err, ErrSegmented) {
		t.Fatalf("a super-frame: %v, want ErrSegmented", err)
	}
}

// TestListen: a live socket is refused, a stale one replaced, another file
// kept; Close removes the socket file; a second VM is turned away.
func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vm.sock")
	p, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil {
		t.Fatal("a second Listen on a live socket succeeded")
	}
	// Its probe is a connection that says nothing.
	if err := p.Accept(); err != nil {
		t.Fatalf("Accept of the probe: %v", err)
	}
	if _, err := readFrame(t, p); err != ErrSilent {
		t.Fatalf("the probe's connection: %v, want ErrSilent", err)
	}
	p.Hangup()
	connect := func() int {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	a := connect()
	defer unix.Close(a)
	if err := p.Accept(); err != nil || !p.Connected() {
		t.Fatalf("Accept: %v", err)
	}
	b := connect()
	defer unix.Close(b)
	if err := p.Accept(); err != ErrBusy {
		t.Fatalf("Accept of a second VM: %v, want ErrBusy", err)
	}
	if n, err := unix.Read(b, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("the second VM's connection is open: read %d, %v", n, err)
	}
	if err := p.Accept(); err != unix.EAGAIN {
		t.Fatalf("Accept with nobody waiting: %v", err)
	}
	p.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}

	// A stale socket: bound, never listened on.
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	p, err = Listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	p.Close()

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if _, err := Listen(file); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Fatal("the regular file was touched")
	}
}

// TestHandoff: a Port rebuilt from Handoff (the sandbox) accepts on the same
// socket and removes its file through the directory's descriptor.
func TestHandoff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vm.sock")
	p, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := p.Handoff()
	if err != nil || h.File.Dir < 0 || h.File.Name != "vm.sock" {
		t.Fatalf("Handoff: %+v, %v", h, err)
	}
	q := FromHandoff(h)
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := q.Accept(); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left: %v", err)
	}
}

// TestFromConnRefuses: --fd must be a connected stream socket.
func TestFromConnRefuses(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := FromConn(int(f.Fd())); err == nil {
		t.Fatal("a regular file accepted as --fd")
	}
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := FromConn(fds[0]); err == nil {
		t.Fatal("a datagram socket accepted as --fd")
	}
}

// TestReadAllocs: reading frames out of the buffer allocates nothing.
func TestReadAllocs(t *testing.T) {
	p, vm := pair(t)
	buf := make([]byte, HeaderLen+MaxFrame)
	in := framed(frameOf(1514, 1))
	out := make([]byte, HeaderLen+1514)
	allocs := testing.AllocsPerRun(100, func() {
		write(t, vm, in)
		for {
			if _, err := p.Read(buf); err == nil {
				break
			}
		}
		if err := p.Write(out, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		if p.Reserve() == nil {
			t.Fatal("no room")
		}
		if err := p.Commit(1514, packet.Offload{}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		readAll(t, vm, buf, 2*(HeaderLen+1514))
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per frame each way", allocs)
	}
}

// readAll reads n bytes from fd into b, which it reuses.
func readAll(t testing.TB, fd int, b []byte, n int) {
	for n > 0 {
		m, err := unix.Read(fd, b[:min(n, len(b))])
		if err != nil {
			t.Fatal(err)
		}
		n -= m
	}
}

// FuzzStream feeds a hostile VM's bytes through a real socket: Read hands
// out exactly the frames the stream holds, and ends with io.EOF or a
// FrameError, never a panic or a frame past MaxFrame.
func FuzzStream(f *testing.F) {
	f.Add(framed(frameOf(60, 1), frameOf(14, 2)))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 14, 1})
	f.Add([]byte{0, 0, 5})
	f.Add(append(framed(frameOf(100, 3)), 0, 0, 0, 80, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 200000 { // the socket buffer must take it in one go
			return
		}
		p, vm := pair(t)
		unix.SetsockoptInt(vm, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		write(t, vm, data)
		unix.Shutdown(vm, unix.SHUT_WR)
		var got []byte
		var err error
		for {
			var fr []byte
			if fr, err = readFrame(t, p); err != nil {
				break
			}
			if len(fr) == 0 || len(fr) > MaxFrame {
				t.Fatalf("frame of %d bytes", len(fr))
			}
			got = append(got, framed(fr)...)
		}
		if !bytes.HasPrefix(data, got) {
			t.Fatal("frames handed out differ from the stream")
		}
		var fe *FrameError
		switch {
		case err == ErrSilent:
			if len(data) != 0 {
				t.Fatalf("ErrSilent after %d bytes", len(data))
			}
		case err == io.EOF:
			if len(got) != len(data) {
				t.Fatalf("EOF after %d of %d bytes", len(got), len(data))
			}
		case errors.As(err, &fe):
		default:
			t.Fatalf("Read ended with %v", err)
		}
	})
}

// BenchmarkQueue: a 64 KiB frame queued by Write (a copy of the frame
// built elsewhere) and built in place (Reserve, Commit), each with a
// partial TCP checksum to complete, and the queue sent to a reader.
func BenchmarkQueue(b *testing.B) {
	const n = packet.EtherLen + packet.IPv4Len + packet.TCPLen + 61440
	o := packet.Offload{CsumStart: packet.EtherLen + packet.IPv4Len, CsumOffset: packet.TCPChecksumOffset}
	for _, inPlace := range []bool{false, true} {
		b.Run(map[bool]string{false: "write", true: "in-place"}[inPlace], func(b *testing.B) {
			p, vm := pair(b)
			go func() {
				buf := make([]byte, 1<<20)
				for {
					if _, err := unix.Read(vm, buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, HeaderLen+MaxFrame)
			b.SetBytes(n)
			for range b.N {
				dst := buf
				if inPlace {
					dst = p.Reserve()
				}
				clear(dst[HeaderLen : HeaderLen+64]) // headers would be written here
				var err error
				if inPlace {
					err = p.Commit(n, o)
				} else {
					err = p.Write(dst[:HeaderLen+n], o)
				}
				if err != nil {
					b.Fatal(err)
				}
				for pending := true; pending; {
					if pending, err = p.Flush(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
