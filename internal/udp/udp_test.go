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
		NAT: nat.Mapper{Gateway: gwIP, Network: netip.MustParsePrefix("10.0.2.0/24"),
			// These tests run in the machine's own namespace: loopback only.
			AllowHost: func(a packet.Addr) bool { return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) }}}, env)
}

func datagram(p *packet.Parsed, buf []byte, dstMAC packet.MAC, dst packet.Addr, dstPort uint16, payload []byte) {
	n := packet.EtherLen + packet.IPv4Len + packet.UDPLen + len(payload)
	f := buf[:n]
	packet.Ether(f).SetHeader(dstMAC, nsMAC, packet.EtherTypeIPv4)
	copy(f[packet.EtherLen+packet.IPv4Len+packet.UDPLen:], payload)
	packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: n - packet.EtherLen, ID: 1, Protocol: packet.ProtoUDP, Src: nsIP, Dst: dst})
	u := packet.UDP(f[packet.EtherLen+packet.IPv4Len:])
	u.Encode(&packet.UDPFields{SrcPort: 40000, DstPort: dstPort, Length: packet.UDPLen + len(payload)})
	u.SetChecksum(nsIP, dst)
	if err := p.Decode(f); err != nil {
		panic(err)
	}
}

// loopbackUDP returns a bound loopback UDP socket and its port.
func loopbackUDP(t *testing.T) (int, uint16) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
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
	if err := r.Decode(env.Last()); err != nil || r.ICMP == nil || r.ICMP.Type() != packet.ICMPUnreachable || r.ICMP.Code() != 3 {
		t.Fatalf("want ICMP port unreachable, got %v %+v", err, r.ICMP)
	}
	// The quoted header names the namespace's datagram.
	q := packet.IPv4(r.ICMP[8:])
	if q.Src() != nsIP || q.Dst() != gwIP || !bytes.Equal(q[20:22], []byte{0x9c, 0x40}) {
		t.Fatalf("quoted datagram %v -> %v port % x", q.Src(), q.Dst(), q[20:22])
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
