package engine

import (
	"runtime"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

// tcpSeg builds a TCP segment from the namespace to the gateway's port.
func tcpSeg(cfg Config, port uint16, seq, ack uint32, flags packet.TCPFlags, payload []byte) []byte {
	seg := make([]byte, packet.TCPLen+len(payload))
	copy(seg[packet.TCPLen:], payload)
	packet.TCP(seg).Encode(&packet.TCPFields{SrcPort: 40000, DstPort: port, Seq: seq, Ack: ack, Flags: flags, Window: 65535, HeaderLen: packet.TCPLen})
	gw := addr(cfg.Net.Gateway)
	packet.TCP(seg).SetChecksum(guestIP, gw)
	return ipFrame(GatewayMAC(cfg.Net.Gateway), guestIP, gw, packet.ProtoTCP, seg)
}

// rrServer accepts one connection on a loopback listener and runs serve
// on it, on a thread of its own with blocking system calls, so that it
// answers as fast as the kernel wakes it.
func rrServer(t *testing.T, serve func(fd int)) uint16 {
	t.Helper()
	l, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(l) })
	if err := unix.Bind(l, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(l, 1); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(l)
	go func() {
		runtime.LockOSThread()
		fd, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		serve(fd)
	}()
	return uint16(sa.(*unix.SockaddrInet4).Port)
}

// recvSeg returns the next frame from the engine, whatever its vnet header
// asks (data segments come with a partial checksum, completed here as the
// namespace's kernel would), or nil after timeout.
func (p *peer) recvSeg(timeout time.Duration) *packet.Parsed {
	p.t.Helper()
	hdr, frame := p.read(timeout)
	if hdr == nil {
		return nil
	}
	var vh tapdev.VirtioNetHdr
	if err := vh.Decode(hdr); err != nil {
		p.t.Fatal(err)
	}
	o, err := vh.Offload(len(frame))
	if err == nil {
		err = o.Complete(frame)
	}
	if err != nil {
		p.t.Fatalf("engine sent a bad vnet header: %v", err)
	}
	return p.decode(frame)
}

// handshake opens a connection from the namespace to the gateway's port
// and returns the next sequence numbers each way.
func handshake(t *testing.T, p *peer, cfg Config, port uint16) (nsSeq, ourSeq uint32) {
	t.Helper()
	p.send(tcpSeg(cfg, port, 1000, 0, packet.TCPSyn, nil))
	r := p.recvSeg(2 * time.Second)
	if r == nil || r.TCP == nil || r.TCP.Flags() != packet.TCPSyn|packet.TCPAck {
		t.Fatalf("no SYN-ACK: %+v", r)
	}
	p.send(tcpSeg(cfg, port, 1001, r.TCP.Seq()+1, packet.TCPAck, nil))
	return 1001, r.TCP.Seq() + 1
}

// TestAnswerCarriesAck: through the loop, with a server that answers at
// once, the answer carries the ACK of the request (one frame per exchange,
// mostly); with one that does not answer, the held ACK still goes before
// the loop sleeps, and the answer follows when it comes.
func TestAnswerCarriesAck(t *testing.T) {
	cfg := testConfig(t)
	cfg.BusyPoll = time.Millisecond // the longest: robust under -race
	const exchanges = 50
	port := rrServer(t, func(fd int) {
		b := make([]byte, 64)
		for i := 0; i < exchanges; i++ {
			if n, err := unix.Read(fd, b); n <= 0 || err != nil {
				return
			}
			unix.Write(fd, b[:1])
		}
		// The last request gets its answer late.
		if n, err := unix.Read(fd, b); n <= 0 || err != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
		unix.Write(fd, []byte("late"))
	})
	_, p, _ := newLoop(t, cfg)
	nsSeq, ourSeq := handshake(t, p, cfg, port)

	carried := 0
	for i := 0; i < exchanges; i++ {
		p.send(tcpSeg(cfg, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("q")))
		nsSeq++
		r := p.recvSeg(2 * time.Second)
		if r == nil || r.TCP == nil || r.TCP.Ack() != nsSeq {
			t.Fatalf("exchange %d: %+v, want a segment acknowledging %d", i, r, nsSeq)
		}
		if len(r.Payload) == 0 { // the ACK alone; the answer follows
			r = p.recvSeg(2 * time.Second)
			if r == nil || r.TCP == nil {
				t.Fatalf("exchange %d: no answer after the ACK", i)
			}
		} else {
			carried++
		}
		if string(r.Payload) != "q" || r.TCP.Seq() != ourSeq {
			t.Fatalf("exchange %d: answer %q at %d, want \"q\" at %d", i, r.Payload, r.TCP.Seq(), ourSeq)
		}
		ourSeq++
	}
	t.Logf("the answer carried the ACK in %d of %d exchanges", carried, exchanges)
	if carried < exchanges/2 {
		t.Errorf("the answer carried the ACK in %d of %d exchanges: want most", carried, exchanges)
	}

	p.send(tcpSeg(cfg, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("q")))
	nsSeq++
	start := time.Now()
	r := p.recvSeg(2 * time.Second)
	if r == nil || r.TCP == nil || len(r.Payload) != 0 || r.TCP.Ack() != nsSeq {
		t.Fatalf("no answer for 200 ms: got %+v, want the ACK alone", r)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("the held ACK took %v: it must go when the loop stops polling", d)
	}
	if r = p.recvSeg(2 * time.Second); r == nil || string(r.Payload) != "late" {
		t.Fatalf("the late answer: %+v", r)
	}
}
