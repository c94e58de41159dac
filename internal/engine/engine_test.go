package engine

import (
	"encoding/binary"
	"errors"
	"math/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/tapdev"
	"golang.org/x/sys/unix"
)

var (
	nsMAC   = packet.MAC{2, 0, 0, 0, 0, 0x64}
	guestIP = packet.AddrFrom4([4]byte{10, 0, 2, 100})
)

func testConfig(t testing.TB) Config {
	n, err := config.NewNetwork(config.DefaultCIDR)
	if err != nil {
		t.Fatal(err)
	}
	// These tests run in the machine's own network namespace and feed the
	// engine random frames: TCP may connect to the loopback only.
	return Config{Net: n, MTU: 1500, MAC: GatewayMAC(n.Gateway), AllowHost: loopbackOnly, Kernel: kernel.Probe()}
}

// testConfig6 is testConfig with IPv6 (-6): the loop then starts with
// unsolicited router advertisements.
func testConfig6(t testing.TB) Config {
	cfg := testConfig(t)
	n6, err := config.NewNetwork6(config.DefaultCIDR6)
	if err != nil {
		t.Fatal(err)
	}
	cfg.IPv6, cfg.Net6 = true, n6
	return cfg
}

func loopbackOnly(a packet.Addr) bool {
	return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) || a == packet.Addr{15: 1}
}

// addr is a netip.Addr from the configuration in the data path's form.
func addr(a netip.Addr) packet.Addr { return packet.AddrFromNetip(a) }

// TestTCPStaysOnLoopback: a SYN to an outside address is refused, not
// connected, under the tests' AllowHost.
func TestTCPStaysOnLoopback(t *testing.T) {
	cfg := testConfig(t)
	_, p, _ := newLoop(t, cfg)
	seg := make([]byte, packet.TCPLen)
	packet.TCP(seg).Encode(&packet.TCPFields{SrcPort: 40000, DstPort: 443, Seq: 1, Flags: packet.TCPSyn, Window: 1000, HeaderLen: packet.TCPLen})
	p.send(ipFrame(GatewayMAC(cfg.Net.Gateway), guestIP, packet.AddrFrom4([4]byte{192, 0, 2, 80}), packet.ProtoTCP, seg))
	r := p.recv(2 * time.Second)
	if r == nil || r.TCP == nil || !r.TCP.Flags().Has(packet.TCPRst) {
		t.Fatalf("SYN to an outside address in a test: %+v, want RST", r)
	}
}

// peer is the namespace side of a fake tap: a SOCK_SEQPACKET socketpair
// keeps frame boundaries, and the engine's end is a real tapdev.Device with
// the vnet header, so the header handling is exercised too.
type peer struct {
	t  *testing.T
	fd int
}

func newLoop(t *testing.T, cfg Config) (*Engine, *peer, chan error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := tapdev.NewDevice(fds[0], tapdev.VnetHdrLen)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.Run()
		done <- err
	}()
	t.Cleanup(func() {
		e.Stop("test over")
		<-done
		e.Close()
		dev.Close()
		unix.Close(fds[1])
	})
	return e, &peer{t, fds[1]}, done
}

func (p *peer) send(frame []byte) {
	p.t.Helper()
	buf := append(make([]byte, tapdev.VnetHdrLen), frame...)
	if _, err := unix.Write(p.fd, buf); err != nil {
		p.t.Fatal(err)
	}
}

// read returns the next frame from the engine and its vnet header, or
// nil after timeout.
func (p *peer) read(timeout time.Duration) (hdr, frame []byte) {
	p.t.Helper()
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, int(timeout/time.Millisecond)); n == 0 {
		return nil, nil
	}
	buf := make([]byte, tapdev.VnetHdrLen+tapdev.MaxFrame)
	n, err := unix.Read(p.fd, buf)
	if err != nil {
		p.t.Fatal(err)
	}
	return buf[:tapdev.VnetHdrLen], buf[tapdev.VnetHdrLen:n]
}

// decode parses a frame the engine sent.
func (p *peer) decode(frame []byte) *packet.Parsed {
	p.t.Helper()
	var parsed packet.Parsed
	if err := parsed.Decode(frame); err != nil {
		p.t.Fatalf("engine sent an undecodable frame: %v", err)
	}
	return &parsed
}

// recv returns the next frame from the engine, which must come with a
// zeroed vnet header, or nil after timeout.
func (p *peer) recv(timeout time.Duration) *packet.Parsed {
	p.t.Helper()
	hdr, frame := p.read(timeout)
	if hdr == nil {
		return nil
	}
	for _, b := range hdr {
		if b != 0 {
			p.t.Fatalf("vnet header not zeroed: %x", hdr)
		}
	}
	return p.decode(frame)
}

func arpRequest(target packet.Addr) []byte {
	f := make([]byte, packet.EtherLen+packet.ARPLen)
	packet.Ether(f).SetHeader(packet.BroadcastMAC, nsMAC, packet.EtherTypeARP)
	packet.ARP(f[packet.EtherLen:]).Encode(&packet.ARPFields{Op: packet.ARPRequest, SenderMAC: nsMAC, SenderIP: guestIP, TargetIP: target})
	return f
}

// ipFrame builds a frame from the namespace: IPv4 or IPv6 by the family of
// src. An ICMPv6 message gets its checksum (the decoder checks it).
func ipFrame(dstMAC packet.MAC, src, dst packet.Addr, proto uint8, l4 []byte) []byte {
	ipLen := packet.IPHeaderLen(src)
	f := make([]byte, packet.EtherLen+ipLen+len(l4))
	packet.Ether(f).SetHeader(dstMAC, nsMAC, packet.EtherTypeOf(src))
	copy(f[packet.EtherLen+ipLen:], l4)
	packet.EncodeIP(f[packet.EtherLen:], &packet.IPFields{Protocol: proto, Src: src, Dst: dst, L4Len: len(l4), ID: 1})
	if proto == packet.ProtoICMPv6 {
		packet.ICMP(f[packet.EtherLen+ipLen:]).SetICMPv6Checksum(src, dst)
	}
	return f
}

// IPv6 addresses of the namespace in the tests.
var (
	guestLL  = packet.AddrFromNetip(netip.MustParseAddr("fe80::ff:fe00:64"))
	guestIP6 = packet.AddrFromNetip(netip.MustParseAddr("fd00::ff:fe00:64"))
	gwIP6    = packet.AddrFromNetip(netip.MustParseAddr("fd00::2"))
)

// neighborSol is the namespace's solicitation of target's MAC.
func neighborSol(target packet.Addr) []byte {
	m := make([]byte, packet.NDPNeighborLen+8)
	m[0] = packet.ICMPv6NeighborSol
	copy(m[8:24], target[:])
	m[24], m[25] = packet.NDPOptSourceLL, 1
	copy(m[26:32], nsMAC[:])
	sn := packet.SolicitedNode(target)
	f := ipFrame(packet.MulticastMAC(sn), guestLL, sn, packet.ProtoICMPv6, m)
	f[packet.EtherLen+7] = packet.NDPHopLimit
	packet.ICMP(f[packet.EtherLen+packet.IPv6Len:]).SetICMPv6Checksum(guestLL, sn)
	return f
}

func echoRequest(dst packet.Addr, seq uint16) []byte {
	m := make([]byte, 64)
	binary.BigEndian.PutUint16(m[4:], 77)
	binary.BigEndian.PutUint16(m[6:], seq)
	packet.ICMP(m).SetTypeCode(packet.ICMPEchoRequest, 0)
	return ipFrame(GatewayMAC(netip.AddrFrom4([4]byte{10, 0, 2, 2})), guestIP, dst, packet.ProtoICMP, m)
}

func dhcpFrame(m *dhcpv4.DHCPv4) []byte {
	payload := m.ToBytes()
	u := make([]byte, packet.UDPLen+len(payload))
	copy(u[packet.UDPLen:], payload)
	bc, zero := packet.IPv4Broadcast, packet.AddrFrom4([4]byte{})
	packet.UDP(u).Encode(&packet.UDPFields{SrcPort: 68, DstPort: 67, Length: len(u)})
	packet.UDP(u).SetChecksum(zero, bc)
	return ipFrame(packet.BroadcastMAC, zero, bc, packet.ProtoUDP, u)
}

func TestLoopAnswers(t *testing.T) {
	cfg := testConfig(t)
	_, p, _ := newLoop(t, cfg)

	p.send(arpRequest(addr(cfg.Net.Gateway)))
	r := p.recv(2 * time.Second)
	if r == nil || r.ARP == nil || r.ARP.Op() != packet.ARPReply || r.ARP.SenderMAC() != cfg.MAC || r.ARP.SenderIP() != addr(cfg.Net.Gateway) {
		t.Fatalf("ARP for the gateway: %+v", r)
	}
	p.send(arpRequest(addr(cfg.Net.DNS)))
	if r := p.recv(2 * time.Second); r == nil || r.ARP.SenderIP() != addr(cfg.Net.DNS) {
		t.Fatalf("ARP for DNS: %+v", r)
	}

	for _, dst := range []packet.Addr{addr(cfg.Net.Gateway), addr(cfg.Net.DNS)} {
		p.send(echoRequest(dst, 5))
		r := p.recv(2 * time.Second)
		if r == nil || r.ICMP.Type() != packet.ICMPEchoReply || r.Src != dst || r.Dst != guestIP || r.ICMP.EchoSeq() != 5 || r.DstMAC != nsMAC {
			t.Fatalf("echo to %v: %+v", dst, r)
		}
	}

	d, err := dhcpv4.NewDiscovery(net.HardwareAddr(nsMAC[:]))
	if err != nil {
		t.Fatal(err)
	}
	p.send(dhcpFrame(d))
	r = p.recv(2 * time.Second)
	if r == nil {
		t.Fatal("no DHCP OFFER")
	}
	offer, err := dhcpv4.FromBytes(r.Payload)
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "10.0.2.15" {
		t.Fatalf("OFFER %v %v", offer, err)
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	p.send(dhcpFrame(req))
	r = p.recv(2 * time.Second)
	if ack, err := dhcpv4.FromBytes(r.Payload); err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("ACK %v %v", ack, err)
	}
}

func TestLoopIgnores(t *testing.T) {
	cfg := testConfig(t)
	e, p, done := newLoop(t, cfg)
	other := packet.AddrFrom4([4]byte{10, 0, 2, 50})
	p.send(arpRequest(other))                          // not ours
	p.send(echoRequest(other, 1))                      // not ours (no ping sockets yet)
	p.send(echoRequest(addr(cfg.Net.Gateway), 1)[:30]) // truncated
	p.send([]byte{1, 2, 3})                            // runt
	toOther := echoRequest(addr(cfg.Net.Gateway), 1)
	packet.Ether(toOther).SetHeader(packet.MAC{2, 9, 9, 9, 9, 9}, nsMAC, packet.EtherTypeIPv4)
	p.send(toOther) // another MAC
	if r := p.recv(200 * time.Millisecond); r != nil {
		t.Fatalf("answered something it should ignore: %+v", r)
	}
	// The loop still works.
	p.send(arpRequest(addr(cfg.Net.Gateway)))
	if r := p.recv(2 * time.Second); r == nil {
		t.Fatal("loop stopped answering after bad frames")
	}
	e.Stop("check stats")
	err := <-done
	done <- err // for the cleanup
	// Two malformed (truncated, runt), two ignored (ARP for another
	// address, a frame to another MAC); the echo to 10.0.2.50 went to the
	// ping translator, which refused it (inside the virtual network).
	if st := e.Stats(); st.RxFrames != 6 || st.Malformed != 2 || st.Ignored != 2 || st.TxFrames != 1 || st.TxErrors != 0 {
		t.Fatalf("stats %+v: want 6 in, 2 malformed, 2 ignored, 1 out", st)
	}
}

func TestDisableDNS(t *testing.T) {
	cfg := testConfig(t)
	cfg.DisableDNS = true
	_, p, _ := newLoop(t, cfg)
	p.send(arpRequest(addr(cfg.Net.DNS)))
	p.send(echoRequest(addr(cfg.Net.DNS), 1))
	if r := p.recv(200 * time.Millisecond); r != nil {
		t.Fatalf("answered for the DNS address with --disable-dns: %+v", r)
	}
}

// TestNameServer: --dns ADDR is the nameserver DHCP offers, in place of the
// DNS address, and with or without --disable-dns.
func TestNameServer(t *testing.T) {
	for _, disable := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.DisableDNS = disable
		cfg.NameServer = netip.MustParseAddr("192.0.2.53")
		_, p, _ := newLoop(t, cfg)
		d, err := dhcpv4.NewDiscovery(net.HardwareAddr(nsMAC[:]))
		if err != nil {
			t.Fatal(err)
		}
		p.send(dhcpFrame(d))
		r := p.recv(2 * time.Second)
		if r == nil {
			t.Fatal("no DHCP OFFER")
		}
		offer, err := dhcpv4.FromBytes(r.Payload)
		if ns := offer.DNS(); err != nil || len(ns) != 1 || ns[0].String() != "192.0.2.53" {
			t.Fatalf("--dns 192.0.2.53 (--disable-dns %v): OFFER names %v, %v", disable, ns, err)
		}
	}
}

func TestStopFD(t *testing.T) {
	cfg := testConfig(t)
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	defer unix.Close(fds[1])
	dev, _ := tapdev.NewDevice(fds[0], 0)
	defer dev.Close()
	e, err := New(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	if err := e.AddStopFD(pipe[0], "exit fd closed"); err != nil {
		t.Fatal(err)
	}
	if err := e.AddStopFD(9999, "bad"); err == nil {
		t.Fatal("AddStopFD accepted a closed descriptor")
	}
	done := make(chan string, 1)
	go func() { r, _ := e.Run(); done <- r }()
	unix.Close(pipe[1]) // the writer goes away: POLLHUP
	select {
	case r := <-done:
		if r != "exit fd closed" {
			t.Fatalf("stopped for %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop when the exit fd's writer closed")
	}
}

func TestTapGone(t *testing.T) {
	cfg := testConfig(t)
	fds, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	dev, _ := tapdev.NewDevice(fds[0], 0)
	defer dev.Close()
	e, _ := New(dev, cfg)
	defer e.Close()
	unix.Shutdown(fds[0], unix.SHUT_RD)
	unix.Close(fds[1])
	done := make(chan error, 1)
	go func() { _, err := e.Run(); done <- err }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, ErrTapGone) {
			t.Fatalf("Run error %v, want ErrTapGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run spins or hangs when the tap is gone")
	}
}

// discardTap accepts every frame; its fd is an eventfd so that epoll takes it.
type discardTap struct {
	fd      int
	written int
	last    []byte // the last frame written, without headroom
}

func newDiscardTap(t testing.TB) *discardTap {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	return &discardTap{fd: fd}
}

func (d *discardTap) Fd() int                      { return d.fd }
func (d *discardTap) Headroom() int                { return tapdev.VnetHdrLen }
func (d *discardTap) Read(buf []byte) (int, error) { return 0, unix.EAGAIN }
func (d *discardTap) Write(buf []byte, _ packet.Offload) error {
	d.written++
	d.last = buf[tapdev.VnetHdrLen:]
	return nil
}

func TestHandleFrameAllocs(t *testing.T) {
	cfg := testConfig(t)
	tap := newDiscardTap(t)
	e, err := New(tap, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	frames := map[string][]byte{
		"arp":       arpRequest(addr(cfg.Net.Gateway)),
		"icmp echo": echoRequest(addr(cfg.Net.Gateway), 1),
		"malformed": echoRequest(addr(cfg.Net.Gateway), 1)[:25],
		"ignored":   echoRequest(packet.AddrFrom4([4]byte{10, 0, 2, 50}), 1),
	}
	for name, f := range frames {
		if n := testing.AllocsPerRun(200, func() { e.HandleFrame(f) }); n != 0 {
			t.Errorf("%s: HandleFrame allocates %v times per frame", name, n)
		}
	}
	if tap.written == 0 {
		t.Fatal("no frame was answered: the test measured nothing")
	}
}

func BenchmarkHandleFrame(b *testing.B) {
	cfg := testConfig(b)
	e, err := New(newDiscardTap(b), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, bc := range []struct {
		name string
		f    []byte
	}{{"arp", arpRequest(addr(cfg.Net.Gateway))}, {"icmp-echo", echoRequest(addr(cfg.Net.Gateway), 1)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.f)))
			for i := 0; i < b.N; i++ {
				e.HandleFrame(bc.f)
			}
		})
	}
}

func FuzzHandleFrame(f *testing.F) {
	cfg := testConfig6(f)
	d, _ := dhcpv4.NewDiscovery(net.HardwareAddr(nsMAC[:]))
	for _, fr := range [][]byte{arpRequest(addr(cfg.Net.Gateway)), echoRequest(addr(cfg.Net.Gateway), 1), dhcpFrame(d), neighborSol(gwIP6)} {
		f.Add(fr)
	}
	tap := newDiscardTap(f)
	e, err := New(tap, cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		tap.last = nil
		e.HandleFrame(frame)
		// Whatever nsgate answers must itself be a well-formed frame.
		if tap.last != nil {
			var p packet.Parsed
			if err := p.Decode(tap.last); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
		}
	})
}

// TestRandomFrames throws a deterministic stream of mutated frames at the
// dispatcher: a quick version of the fuzz target that always runs.
func TestRandomFrames(t *testing.T) {
	cfg := testConfig6(t)
	tap := newDiscardTap(t)
	e, err := New(tap, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, _ := dhcpv4.NewDiscovery(net.HardwareAddr(nsMAC[:]))
	seeds := [][]byte{arpRequest(addr(cfg.Net.Gateway)), echoRequest(addr(cfg.Net.Gateway), 1), dhcpFrame(d), neighborSol(gwIP6)}
	r := rand.New(rand.NewSource(2))
	const frames = 50000
	var p packet.Parsed
	for i := 0; i < frames; i++ {
		f := append([]byte{}, seeds[r.Intn(len(seeds))]...)
		for j := r.Intn(8); j > 0; j-- {
			f[r.Intn(len(f))] = byte(r.Intn(256))
		}
		f = f[:r.Intn(len(f)+1)]
		before := tap.written
		e.HandleFrame(f)
		// Whatever the engine answers must itself be a valid frame.
		if tap.written != before {
			if err := p.Decode(tap.last); err != nil {
				t.Fatalf("frame %d (% x): the answer does not decode: %v", i, f, err)
			}
		}
	}
	// Every frame is accounted for: malformed, ignored, or answered; and
	// the mutations must have produced some of each.
	st := e.Stats()
	if st.Malformed == 0 || st.Ignored == 0 || tap.written == 0 || st.Malformed+st.Ignored+uint64(tap.written) > frames {
		t.Fatalf("after %d random frames: %+v, %d answers", frames, st, tap.written)
	}
	// And the engine still answers a well-formed request correctly.
	e.HandleFrame(arpRequest(addr(cfg.Net.Gateway)))
	if err := p.Decode(tap.last); err != nil || p.ARP == nil || p.ARP.SenderIP() != addr(cfg.Net.Gateway) {
		t.Fatalf("ARP after the random frames: %v %+v", err, p.ARP)
	}
}
