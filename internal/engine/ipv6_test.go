package engine

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/nsgate/nsgate/internal/ndp"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestLoopIPv6: with -6, the loop advertises the prefix at once, answers
// neighbour solicitations and echo for the gateway, answers DHCPv6, and
// connects TCP to fd00::2 onto the host's ::1.
func TestLoopIPv6(t *testing.T) {
	cfg := testConfig6(t)
	_, p, _ := newLoop(t, cfg)
	if r := p.recv(2 * time.Second); r == nil || r.ICMP == nil || r.ICMP.Type() != packet.ICMPv6RouterAdv || r.Src != packet.AddrFromNetip(cfg.Net6.LinkLocal) || r.Dst != ndp.AllNodes {
		t.Fatalf("first frame: %+v, want the unsolicited advertisement", r)
	}
	p.send(neighborSol(gwIP6))
	if r := p.recv(2 * time.Second); r == nil || r.ICMP == nil || r.ICMP.Type() != packet.ICMPv6NeighborAdv || r.ICMP.NDPTarget() != gwIP6 || r.DstMAC != nsMAC {
		t.Fatalf("neighbour solicitation of fd00::2: %+v", r)
	}
	echo := []byte{packet.ICMPv6EchoRequest, 0, 0, 0, 0, 9, 0, 1, 'x'}
	p.send(ipFrame(cfg.MAC, guestIP6, gwIP6, packet.ProtoICMPv6, echo))
	if r := p.recv(2 * time.Second); r == nil || r.ICMP == nil || r.ICMP.Type() != packet.ICMPv6EchoReply || r.Src != gwIP6 || r.Dst != guestIP6 {
		t.Fatalf("echo to fd00::2: %+v", r)
	}
	// DHCPv6 Information-Request, from the link-local address.
	ir := (&dhcpv6.Message{MessageType: dhcpv6.MessageTypeInformationRequest, TransactionID: dhcpv6.TransactionID{7, 7, 7}}).ToBytes()
	u := make([]byte, packet.UDPLen+len(ir))
	copy(u[packet.UDPLen:], ir)
	agents := packet.AddrFromNetip(netip.MustParseAddr("ff02::1:2"))
	packet.UDP(u).Encode(&packet.UDPFields{SrcPort: 546, DstPort: 547, Length: len(u)})
	packet.UDP(u).SetChecksum(guestLL, agents)
	p.send(ipFrame(packet.MulticastMAC(agents), guestLL, agents, packet.ProtoUDP, u))
	r := p.recv(2 * time.Second)
	if r == nil || r.UDP == nil || r.UDP.SrcPort() != 547 || r.Dst != guestLL {
		t.Fatalf("DHCPv6: %+v", r)
	}
	if m, err := dhcpv6.MessageFromBytes(r.Payload); err != nil || m.Type() != dhcpv6.MessageTypeReply || len(m.Options.DNS()) != 1 || !m.Options.DNS()[0].Equal(net.ParseIP("fd00::3")) {
		t.Fatalf("DHCPv6 reply %v, %v", m, err)
	}
	// TCP to fd00::2 reaches a listener on ::1.
	l, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}); err != nil {
		t.Fatal(err)
	}
	unix.Listen(l, 8)
	sa, _ := unix.Getsockname(l)
	seg := make([]byte, packet.TCPLen)
	packet.TCP(seg).Encode(&packet.TCPFields{SrcPort: 40000, DstPort: uint16(sa.(*unix.SockaddrInet6).Port), Seq: 1, Flags: packet.TCPSyn, Window: 1000, HeaderLen: packet.TCPLen})
	packet.TCP(seg).SetChecksum(guestIP6, gwIP6)
	p.send(ipFrame(cfg.MAC, guestIP6, gwIP6, packet.ProtoTCP, seg))
	if r := p.recv(2 * time.Second); r == nil || r.TCP == nil || r.TCP.Flags() != packet.TCPSyn|packet.TCPAck || r.Src != gwIP6 || r.Dst != guestIP6 || r.IP6 == nil {
		t.Fatalf("SYN to [fd00::2]: %+v, want a SYN-ACK over IPv6", r)
	}
}

// TestLoopIPv6Off: without -6, IPv6 frames are ignored and counted, and
// nothing is advertised.
func TestLoopIPv6Off(t *testing.T) {
	cfg := testConfig(t)
	e, p, done := newLoop(t, cfg)
	p.send(neighborSol(gwIP6))
	if r := p.recv(300 * time.Millisecond); r != nil {
		t.Fatalf("answered IPv6 without -6: %+v", r)
	}
	e.Stop("check stats")
	err := <-done
	done <- err
	if st := e.Stats(); st.Ignored != 1 {
		t.Fatalf("stats %+v: want the solicitation ignored", st)
	}
}
