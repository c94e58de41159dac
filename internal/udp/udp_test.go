package udp

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"encoding/binary"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/policy"
	"golang.org/x/sys/unix"
)

var (
	nsMAC = packet.MAC{2, 0, 0, 0, 0, 0x64}
	gwMAC = packet.MAC{0x52, 0x55, 10, 0, 2, 2}
	nsIP  = packet.AddrFrom4([4]byte{10, 0, 2, 100})
	gwIP  = packet.AddrFrom4([4]byte{10, 0, 2, 2})
)

func newTable(env *flowtest.Env) *Table {
	return New(Config{GatewayMAC: gwMAC, Broadcast: packet.AddrFrom4([4]byte{10, 0, 2, 255}), MTU: 1500,
		NAT: nat.Mapper{Gateway: packet.AddrFrom4([4]byte{10, 0, 2, 2}), Network: netip.MustParsePrefix("10.0.2.0/24"),
			Gateway6: gwIP6, Network6: netip.MustParsePrefix("fd00::/64"),
			// These tests run in the machine's own namespace: loopback only.
			AllowHost: func(a packet.Addr) bool {
				return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) || a == packet.Addr{15: 1}
			}}}, env)
}

// The IPv6 addresses of ipv6.
var (
	nsIP6 = packet.AddrFromNetip(netip.MustParseAddr("fd00::5054:ff:fe12:3456"))
	gwIP6 = packet.AddrFromNetip(netip.MustParseAddr("fd00::2"))
)

// ipv6 makes the rest of the test speak IPv6: datagrams from nsIP6 to
// gwIP6, and the host's socket on ::1.
func ipv6(t *testing.T) {
	ns4, gw4 := nsIP, gwIP
	nsIP, gwIP = nsIP6, gwIP6
	t.Cleanup(func() { nsIP, gwIP = ns4, gw4 })
}

func datagram(p *packet.Parsed, buf []byte, dstMAC packet.MAC, dst packet.Addr, dstPort uint16, payload []byte) {
	ipLen := packet.IPHeaderLen(nsIP)
	n := packet.EtherLen + ipLen + packet.UDPLen + len(payload)
	f := buf[:n]
	packet.Ether(f).SetHeader(dstMAC, nsMAC, packet.EtherTypeOf(nsIP))
	copy(f[packet.EtherLen+ipLen+packet.UDPLen:], payload)
	packet.EncodeIP(f[packet.EtherLen:], &packet.IPFields{Protocol: packet.ProtoUDP, Src: nsIP, Dst: dst, L4Len: packet.UDPLen + len(payload), ID: 1})
	u := packet.UDP(f[packet.EtherLen+ipLen:])
	u.Encode(&packet.UDPFields{SrcPort: 40000, DstPort: dstPort, Length: packet.UDPLen + len(payload)})
	u.SetChecksum(nsIP, dst)
	if err := p.Decode(f); err != nil {
		panic(err)
	}
}

// loopbackUDP returns a bound loopback UDP socket, on ::1 after ipv6, and
// its port.
func loopbackUDP(t *testing.T) (int, uint16) {
	lo := packet.AddrFrom4([4]byte{127, 0, 0, 1})
	if !gwIP.Is4() {
		lo = packet.Addr{15: 1}
	}
	fd, err := unix.Socket(flow.Family(lo), unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, flow.Sockaddr(lo, 0)); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	if sa6, ok := sa.(*unix.SockaddrInet6); ok {
		return fd, uint16(sa6.Port)
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port)
}

func TestRoundTripAndAllocs(t *testing.T) {
	srv, port := loopbackUDP(t)
	env := flowtest.New()
	tbl := newTable(env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	payload := []byte("question")
	datagram(&p, buf, gwMAC, gwIP, port, payload)
	tbl.HandleFrame(&p)
	tbl.Flush()
	got := make([]byte, 100)
	n, from, err := unix.Recvfrom(srv, got, 0)
	if err != nil || string(got[:n]) != "question" {
		t.Fatalf("host got %q, %v", got[:n], err)
	}
	unix.Sendto(srv, []byte("answer"), 0, from)
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	var r packet.Parsed
	if err := r.Decode(env.Last()); err != nil || string(r.Payload) != "answer" ||
		r.Src != gwIP || r.Dst != nsIP || r.UDP.SrcPort() != port || r.UDP.DstPort() != 40000 || r.DstMAC != nsMAC {
		t.Fatalf("reply to the namespace: %v %+v", err, r)
	}
	if env.Offload.CsumOffset != packet.UDPChecksumOffset {
		t.Errorf("reply sent without a partial UDP checksum")
	}

	// Steady state, both ways: no allocation per datagram.
	nsToHost := testing.AllocsPerRun(300, func() {
		datagram(&p, buf, gwMAC, gwIP, port, payload)
		tbl.HandleFrame(&p)
		tbl.Flush()
	})
	for { // drain what the measurement sent
		if _, _, err := unix.Recvfrom(srv, got, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	hostToNS := testing.AllocsPerRun(300, func() {
		unix.Sendto(srv, []byte("answer"), 0, from)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	})
	if nsToHost != 0 || hostToNS != 0 {
		t.Fatalf("allocations per datagram: namespace→host %v, host→namespace %v", nsToHost, hostToNS)
	}
}

func TestBroadcastNeverLeaves(t *testing.T) {
	env := flowtest.New()
	tbl := newTable(env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	for _, dst := range [][4]byte{{255, 255, 255, 255}, {10, 0, 2, 255}, {224, 0, 0, 251}, {239, 255, 255, 250}} {
		datagram(&p, buf, packet.BroadcastMAC, packet.AddrFrom4(dst), 5353, []byte("hello?"))
		tbl.HandleFrame(&p)
	}
	if tbl.Len() != 0 || env.Sent != 0 {
		t.Fatalf("broadcast/multicast made %d flows, %d frames", tbl.Len(), env.Sent)
	}
}

func TestPortUnreachableBecomesICMP(t *testing.T) {
	srv, port := loopbackUDP(t)
	unix.Close(srv) // nobody listens: the kernel answers port unreachable
	env := flowtest.New()
	tbl := newTable(env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	datagram(&p, buf, gwMAC, gwIP, port, []byte("knock"))
	tbl.HandleFrame(&p)
	tbl.Flush()
	time.Sleep(20 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLERR)
	var r packet.Parsed
	typ, code := uint8(packet.ICMPUnreachable), uint8(packet.ICMPPortUnreachable)
	if !nsIP.Is4() {
		typ, code = packet.ICMPv6Unreachable, packet.ICMPv6PortUnreachable
	}
	if err := r.Decode(env.Last()); err != nil || r.ICMP == nil || r.ICMP.Type() != typ || r.ICMP.Code() != code || r.Src != gwIP || r.Dst != nsIP {
		t.Fatalf("want ICMP port unreachable, got %v %+v", err, r.ICMP)
	}
	// The quoted header names the namespace's datagram.
	var src, dst packet.Addr
	var qport []byte
	if q := r.ICMP[8:]; nsIP.Is4() {
		src, dst, qport = packet.IPv4(q).Src(), packet.IPv4(q).Dst(), q[packet.IPv4Len:packet.IPv4Len+2]
	} else {
		src, dst, qport = packet.IPv6(q).Src(), packet.IPv6(q).Dst(), q[packet.IPv6Len:packet.IPv6Len+2]
	}
	if src != nsIP || dst != gwIP || !bytes.Equal(qport, []byte{0x9c, 0x40}) {
		t.Fatalf("quoted datagram %v -> %v port % x", src, dst, qport)
	}
}

func TestDisabledAndInternal(t *testing.T) {
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, MTU: 1500,
		NAT: nat.Mapper{Gateway: gwIP, Network: netip.MustParsePrefix("10.0.2.0/24"), DisableHostLoopback: true}}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	// The gateway with --disable-host-loopback: network unreachable, as
	// slirp4netns; another address of the virtual network: prohibited.
	for dst, code := range map[packet.Addr]uint8{gwIP: packet.ICMPNetUnreachable, packet.AddrFrom4([4]byte{10, 0, 2, 50}): packet.ICMPAdminProhibited} {
		datagram(&p, buf, gwMAC, dst, 53, []byte("x"))
		tbl.HandleFrame(&p)
		var r packet.Parsed
		if err := r.Decode(env.Last()); err != nil || r.ICMP == nil || r.ICMP.Type() != packet.ICMPUnreachable || r.ICMP.Code() != code ||
			r.Src != gwIP || r.Dst != nsIP || !bytes.Equal(r.ICMP[packet.ICMPEchoLen:], p.IP[:packet.IPv4Len+8]) {
			t.Fatalf("%v: want ICMP unreachable code %d quoting the datagram, got %v %+v", dst, code, err, r.ICMP)
		}
	}
	if tbl.Len() != 0 {
		t.Fatal("a flow was opened for a refused destination")
	}
}

// TestFlushBatches: datagrams queued for several flows are all sent, in
// order per flow.
func TestFlushBatches(t *testing.T) {
	srvA, portA := loopbackUDP(t)
	srvB, portB := loopbackUDP(t)
	env := flowtest.New()
	tbl := newTable(env)
	bufs := make([][]byte, 10)
	for i := range bufs {
		var p packet.Parsed
		bufs[i] = make([]byte, 200)
		port := portA
		if i%3 == 0 {
			port = portB
		}
		datagram(&p, bufs[i], gwMAC, gwIP, port, []byte{byte('0' + i)})
		tbl.HandleFrame(&p)
	}
	tbl.Flush()
	var gotA, gotB []byte
	b := make([]byte, 10)
	for {
		n, _, err := unix.Recvfrom(srvA, b, unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
		gotA = append(gotA, b[:n]...)
	}
	for {
		n, _, err := unix.Recvfrom(srvB, b, unix.MSG_DONTWAIT)
		if err != nil {
			break
		}
		gotB = append(gotB, b[:n]...)
	}
	if string(gotA) != "124578" || string(gotB) != "0369" {
		t.Fatalf("flow A got %q, flow B got %q", gotA, gotB)
	}
}

// TestUSO: a USO super-datagram from the namespace reaches the host as the
// datagrams it stands for, each of the segment size but the last, both
// with UDP_SEGMENT and cut by nsgate when the socket refuses it. Sending
// one allocates nothing.
func TestUSO(t *testing.T) {
	srv, port := loopbackUDP(t)
	env := flowtest.New()
	tbl := newTable(env)
	var p packet.Parsed
	buf := make([]byte, 70000)
	const seg, count = 1000, 40
	payload := make([]byte, seg*count-300) // the last datagram is short
	for i := range payload {
		payload[i] = byte(i / seg)
	}
	uso := func() {
		datagram(&p, buf, gwMAC, gwIP, port, payload)
		p.Offload = packet.Offload{CsumStart: 34, CsumOffset: packet.UDPChecksumOffset, GSO: packet.GSOUDPL4, GSOSize: seg, HdrLen: 42}
		tbl.HandleFrame(&p)
		tbl.Flush()
	}
	expect := func(how string) {
		t.Helper()
		got := make([]byte, 65536)
		for i := 0; i < count; i++ {
			n, _, err := unix.Recvfrom(srv, got, 0)
			want := min(seg, len(payload)-i*seg)
			if err != nil || n != want || !bytes.Equal(got[:n], payload[i*seg:i*seg+want]) {
				t.Fatalf("%s: datagram %d: %d bytes, %v; want %d bytes of %d", how, i, n, err, want, i)
			}
		}
		if n, _, err := unix.Recvfrom(srv, got, unix.MSG_DONTWAIT); err == nil {
			t.Fatalf("%s: a datagram too many (%d bytes)", how, n)
		}
	}
	uso()
	expect("UDP_SEGMENT")
	if a := testing.AllocsPerRun(50, func() {
		uso()
		for i := 0; i < count; i++ {
			unix.Read(srv, buf) // Recvfrom would allocate its address
		}
	}); a != 0 {
		t.Fatalf("a USO send allocates %v times", a)
	}
	// A socket that may not segment (SO_NO_CHECK: UDP_SEGMENT is EINVAL
	// then): nsgate cuts the datagrams itself.
	if err := unix.SetsockoptInt(tbl.flows.At(env.Idx).fd, unix.SOL_SOCKET, unix.SO_NO_CHECK, 1); err != nil {
		t.Fatal(err)
	}
	uso()
	expect("cut by nsgate")
}

// TestFlowLimit: a full table evicts flows idle for pressureIdle, at most
// once per pressureScan, and otherwise refuses a new flow with ICMP port
// unreachable (ECONNREFUSED for the client), and the egress policy refuses
// with administratively prohibited.
func TestFlowLimit(t *testing.T) {
	_, port := loopbackUDP(t)
	env := flowtest.New()
	env.Advance(time.Minute)
	budget := &flow.Budget{Max: 3}
	deny, _ := policy.Parse("--deny", true, "127.0.0.1:7")
	tbl := New(Config{GatewayMAC: gwMAC, MTU: 1500, MaxFlows: 100, Budget: budget,
		NAT: nat.Mapper{Gateway: gwIP, Network: netip.MustParsePrefix("10.0.2.0/24"), Policy: &policy.Policy{Rules: []policy.Rule{deny}},
			AllowHost: func(a packet.Addr) bool { return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) }}}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	send := func(src uint16) {
		datagram(&p, buf, gwMAC, gwIP, port, []byte("x"))
		binary.BigEndian.PutUint16(p.UDP[0:2], src)
		tbl.HandleFrame(&p)
		tbl.Flush()
	}
	refused := func(code uint8) bool {
		r, err := env.Decode()
		return err == nil && r.ICMP != nil && r.ICMP.Type() == packet.ICMPUnreachable && r.ICMP.Code() == code
	}
	for src := uint16(1); src <= 3; src++ {
		send(src)
	}
	env.Advance(pressureIdle) // all three idle now
	send(1)                   // but flow 1 is busy again
	send(4)                   // evicts 2 and 3
	if tbl.Len() != 2 || tbl.Evicted != 2 || tbl.FlowLimit != 0 {
		t.Fatalf("after eviction: %d flows, %d evicted, %d refused", tbl.Len(), tbl.Evicted, tbl.FlowLimit)
	}
	send(5)
	send(6) // full again, and the scan ran a moment ago: refused
	if tbl.FlowLimit != 1 || tbl.Len() != 3 || !refused(packet.ICMPPortUnreachable) {
		t.Fatalf("over the limit: %d refused, %d flows, want ICMP port unreachable", tbl.FlowLimit, tbl.Len())
	}
	datagram(&p, buf, gwMAC, gwIP, 7, []byte("x"))
	tbl.HandleFrame(&p)
	if tbl.Denied != 1 || !refused(packet.ICMPAdminProhibited) {
		t.Fatalf("denied flow: %d denied, want ICMP administratively prohibited", tbl.Denied)
	}
}

// TestIPv6 runs the datagram path's tests over IPv6: fd00:: addresses,
// a socket to the host's ::1, ICMPv6 errors from IPV6_RECVERR.
func TestIPv6(t *testing.T) {
	ipv6(t)
	t.Run("round trip and allocations", TestRoundTripAndAllocs)
	t.Run("port unreachable", TestPortUnreachableBecomesICMP)
	t.Run("flush batches", TestFlushBatches)
	t.Run("USO", TestUSO)
}
