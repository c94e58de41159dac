package tcp

import (
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// forwarded returns a host client socket and the accepted end of its
// connection, as a forward's listener would hand it over.
func forwarded(t *testing.T) (client, accepted int) {
	t.Helper()
	l, port := loopbackServer(t)
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c) })
	if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	return c, a
}

func lastSegment(t *testing.T, env *flowtest.Env) *packet.Parsed {
	t.Helper()
	var p packet.Parsed
	if err := p.DecodeTrusted(env.Last()); err != nil || p.TCP == nil {
		t.Fatalf("last frame is not TCP: %v", err)
	}
	return &p
}

// TestAcceptHandshakeAndData: nsgate opens a forwarded connection into the
// namespace with its own SYN, completes the handshake on the namespace's
// SYN-ACK, and then carries bytes both ways. The namespace's server is
// port 40000 at nsIP; the client appears as gwIP:5555.
func TestAcceptHandshakeAndData(t *testing.T) { sendPaths(t, testAcceptHandshakeAndData) }

func testAcceptHandshakeAndData(t *testing.T, noPeekOff bool) {
	client, fd := forwarded(t)
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff}, env)
	if !tbl.Accept(fd, gwIP, 5555, nsIP, 40000, nsMAC) {
		t.Fatal("Accept refused")
	}
	assertTuned(t, fd, noPeekOff)
	syn := lastSegment(t, env)
	if syn.TCP.Flags() != packet.TCPSyn || syn.Src != gwIP || syn.Dst != nsIP || syn.TCP.SrcPort() != 5555 || syn.TCP.DstPort() != 40000 || syn.DstMAC != nsMAC {
		t.Fatalf("SYN: flags %v %v:%d -> %v:%d to %v", syn.TCP.Flags(), syn.Src, syn.TCP.SrcPort(), syn.Dst, syn.TCP.DstPort(), syn.DstMAC)
	}
	if o := syn.TCP.SynOptions(); o != (packet.SynOptions{MSS: 1460, HasMSS: true, WScale: ourWScale, HasWScale: true, SACKPerm: true}) {
		t.Fatalf("SYN options: %+v", o)
	}
	iss := syn.TCP.Seq()
	// Data the client sends before the namespace answers waits in the socket.
	if _, err := unix.Write(client, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	var p packet.Parsed
	buf := make([]byte, 2000)
	nsSeq := uint32(7000)
	segment(&p, buf, 5555, nsSeq, iss+1, packet.TCPSyn|packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	nsSeq++
	// The ACK of the handshake, then the client's bytes (pushed at once).
	got := lastSegment(t, env)
	if string(got.Payload) != "hello" || got.TCP.Seq() != iss+1 || got.TCP.Ack() != nsSeq {
		t.Fatalf("after SYN-ACK: seq %d ack %d payload %q; want seq %d ack %d \"hello\"", got.TCP.Seq(), got.TCP.Ack(), got.Payload, iss+1, nsSeq)
	}
	segment(&p, buf, 5555, nsSeq, iss+6, packet.TCPAck|packet.TCPPsh, []byte("world"))
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	in := make([]byte, 16)
	unix.SetsockoptTimeval(client, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	if n, err := unix.Read(client, in); err != nil || string(in[:n]) != "world" {
		t.Fatalf("client read %q, %v", in[:max(n, 0)], err)
	}
	if tbl.Len() != 1 || tbl.Inbound != 1 {
		t.Fatalf("flows %d, inbound %d", tbl.Len(), tbl.Inbound)
	}
}

// TestAcceptRefused: the namespace answers the SYN with RST (nothing
// listens): the client's connection is reset too, and the flow is gone.
func TestAcceptRefused(t *testing.T) {
	client, fd := forwarded(t)
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: kernelNoPeekOff()}, env)
	tbl.Accept(fd, gwIP, 5555, nsIP, 40000, nsMAC)
	iss := lastSegment(t, env).TCP.Seq()
	var p packet.Parsed
	buf := make([]byte, 2000)
	// A RST that does not acknowledge our SYN is ignored.
	segment(&p, buf, 5555, 0, iss+5, packet.TCPRst|packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if tbl.Len() != 1 {
		t.Fatal("a RST with a wrong ACK closed the flow")
	}
	segment(&p, buf, 5555, 0, iss+1, packet.TCPRst|packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if tbl.Len() != 0 || tbl.Refused != 1 {
		t.Fatalf("after RST: %d flows, %d refused", tbl.Len(), tbl.Refused)
	}
	unix.SetsockoptTimeval(client, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	if _, err := unix.Read(client, make([]byte, 1)); err != unix.ECONNRESET {
		t.Fatalf("client read: %v, want ECONNRESET", err)
	}
}

// TestAcceptSynRetransmit: an unanswered SYN is sent again on the timer,
// not before it is due, backing off from rtoMin; after synRetries the client
// is reset.
func TestAcceptSynRetransmit(t *testing.T) {
	client, fd := forwarded(t)
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: kernelNoPeekOff()}, env)
	tbl.Accept(fd, gwIP, 5555, nsIP, 40000, nsMAC)
	for i := 0; i < synRetries; i++ {
		rto := rtoMin << i
		sent := env.Sent
		env.Advance(rto - time.Millisecond)
		tbl.Tick()
		if env.Sent != sent {
			t.Fatalf("retry %d: sent %v before the timer (%v) was due", i+1, rto-time.Millisecond, rto)
		}
		env.Advance(rtoPeriod) // timers are looked at every rtoPeriod
		tbl.Tick()
		if env.Sent != sent+1 || lastSegment(t, env).TCP.Flags() != packet.TCPSyn {
			t.Fatalf("retry %d: no SYN after %v", i+1, rto)
		}
	}
	env.Advance(rtoMin<<synRetries + rtoPeriod)
	tbl.Tick()
	if tbl.Len() != 0 {
		t.Fatal("flow still open after the last SYN")
	}
	unix.SetsockoptTimeval(client, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	if _, err := unix.Read(client, make([]byte, 1)); err != unix.ECONNRESET {
		t.Fatalf("client read: %v, want ECONNRESET", err)
	}
}
