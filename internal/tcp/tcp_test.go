package tcp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/kernel"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

var (
	nsMAC = packet.MAC{2, 0, 0, 0, 0, 0x64}
	gwMAC = packet.MAC{0x52, 0x55, 10, 0, 2, 2}
	nsIP  = packet.AddrFrom4([4]byte{10, 0, 2, 100})
	gwIP  = packet.AddrFrom4([4]byte{10, 0, 2, 2})
)

// segment builds a frame from the namespace and decodes it.
func segment(p *packet.Parsed, buf []byte, dstPort uint16, seq, ack uint32, flags packet.TCPFlags, payload []byte) {
	th := packet.TCPLen
	if flags&packet.TCPSyn != 0 {
		th += packet.TCPSynOptLen
	}
	ipLen := packet.IPHeaderLen(nsIP)
	n := packet.EtherLen + ipLen + th + len(payload)
	f := buf[:n]
	packet.Ether(f).SetHeader(gwMAC, nsMAC, packet.EtherTypeOf(nsIP))
	packet.EncodeIP(f[packet.EtherLen:], &packet.IPFields{Protocol: packet.ProtoTCP, Src: nsIP, Dst: gwIP, L4Len: th + len(payload), ID: 1})
	seg := packet.TCP(f[packet.EtherLen+ipLen:])
	if flags&packet.TCPSyn != 0 {
		seg.SetSynOptions(packet.SynOptions{MSS: 1460, HasWScale: true, WScale: 7, SACKPerm: true})
	}
	copy(seg[th:], payload)
	seg.Encode(&packet.TCPFields{SrcPort: 40000, DstPort: dstPort, Seq: seq, Ack: ack, Flags: flags, Window: 1024, HeaderLen: th})
	if err := p.Decode(f); err != nil {
		panic(err)
	}
}

// loopbackServer listens on 127.0.0.1 and returns the listening fd and port.
func loopbackServer(t *testing.T) (int, uint16) {
	t.Helper()
	lo := hostLoopback()
	l, err := unix.Socket(flow.Family(lo), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(l) })
	if err := unix.Bind(l, flow.Sockaddr(lo, 0)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(l, 4096); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(l)
	if sa6, ok := sa.(*unix.SockaddrInet6); ok {
		return l, uint16(sa6.Port)
	}
	return l, uint16(sa.(*unix.SockaddrInet4).Port)
}

// sendPaths runs fn for both ways of sending host data to the namespace:
// peeking at SO_PEEK_OFF, and the copy of unacknowledged bytes kept when the
// kernel lacks it (before Linux 6.9). Both run on every kernel.
func sendPaths(t *testing.T, fn func(t *testing.T, noPeekOff bool)) {
	t.Run("peek-off", func(t *testing.T) {
		if kernelNoPeekOff() {
			// The old kernel in make test-kernel: this path can't run there,
			// and the host kernel's run covers it.
			t.Skip("this kernel's TCP sockets have no SO_PEEK_OFF (Linux 6.9)")
		}
		fn(t, false)
	})
	t.Run("copy", func(t *testing.T) { fn(t, true) })
}

// kernelNoPeekOff is the path the running kernel takes.
func kernelNoPeekOff() bool { return !kernel.Probe().TCPPeekOff }

// established opens a reflected connection to a loopback server and returns
// the table, the fake env, the server's accepted fd, and the sequence state.
func established(t *testing.T, noPeekOff bool) (tbl *Table, env *flowtest.Env, srv int, nsSeq, ourSeq uint32) {
	t.Helper()
	return establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff})
}

// establishedWith is established with the table's configuration cfg.
func establishedWith(t *testing.T, cfg Config) (tbl *Table, env *flowtest.Env, srv int, nsSeq, ourSeq uint32) {
	t.Helper()
	l, port := loopbackServer(t)
	env = flowtest.New()
	tbl = New(cfg, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	nsSeq = 1000
	segment(&p, buf, port, nsSeq, 0, packet.TCPSyn, nil)
	tbl.HandleFrame(&p)
	for i := 0; env.Sent == 0 && i < 100; i++ { // loopback connects at once; else wait for epoll's word
		time.Sleep(time.Millisecond)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLOUT)
	}
	var synack packet.Parsed
	if err := synack.Decode(env.Last()); err != nil || synack.TCP.Flags() != packet.TCPSyn|packet.TCPAck {
		t.Fatalf("no SYN-ACK: %v %+v", err, synack.TCP)
	}
	if synack.TCP.Ack() != nsSeq+1 {
		t.Fatalf("SYN-ACK acks %d, want %d", synack.TCP.Ack(), nsSeq+1)
	}
	if o := synack.TCP.SynOptions(); o != (packet.SynOptions{MSS: tbl.ourMSS(nsIP), HasMSS: true, WScale: ourWScale, HasWScale: true, SACKPerm: true}) {
		t.Fatalf("SYN-ACK options: %+v", o)
	}
	nsSeq++
	ourSeq = synack.TCP.Seq() + 1
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	srv, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(srv) })
	return tbl, env, srv, nsSeq, ourSeq
}

// assertTuned checks that a connection's host socket has what tune sets:
// TCP_NODELAY, keep-alives, and (unless noPeekOff) SO_PEEK_OFF at 0, where
// a new socket has -1. Without it, SO_PEEK_OFF stays -1, or the kernel
// has none for TCP (before 6.9: EOPNOTSUPP).
func assertTuned(t *testing.T, fd int, noPeekOff bool) {
	t.Helper()
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"SO_PEEK_OFF", unix.SOL_SOCKET, unix.SO_PEEK_OFF, map[bool]int{false: 0, true: -1}[noPeekOff]},
	} {
		v, err := unix.GetsockoptInt(fd, o.level, o.opt)
		if o.opt == unix.SO_PEEK_OFF && noPeekOff && err == unix.EOPNOTSUPP && kernelNoPeekOff() {
			continue
		}
		if err != nil || v != o.want {
			t.Errorf("%s = %d (%v), want %d", o.name, v, err, o.want)
		}
	}
}

func TestHandshakeAndData(t *testing.T) { sendPaths(t, testHandshakeAndData) }

func testHandshakeAndData(t *testing.T, noPeekOff bool) {
	tbl, env, srv, nsSeq, ourSeq := established(t, noPeekOff)
	for _, f := range tbl.flows.All {
		assertTuned(t, f.fd, noPeekOff) // after the SYN-ACK, off the handshake's path
	}
	if tbl.Len() != 1 {
		t.Fatalf("%d flows", tbl.Len())
	}
	var p packet.Parsed
	buf := make([]byte, 2000)
	port := tbl.flows.At(env.Idx).key.DstPort

	// Namespace → host.
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("hello host"))
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	got := make([]byte, 100)
	time.Sleep(10 * time.Millisecond)
	n, _ := unix.Read(srv, got)
	if string(got[:n]) != "hello host" {
		t.Fatalf("host read %q", got[:n])
	}
	var ack packet.Parsed
	if err := ack.Decode(env.Last()); err != nil || ack.TCP.Ack() != nsSeq+10 {
		t.Fatalf("ACK of the data: %v ack %d want %d", err, ack.TCP.Ack(), nsSeq+10)
	}
	nsSeq += 10

	// Host → namespace: the payload is peeked into the frame, with a
	// partial checksum.
	unix.Write(srv, []byte("hello namespace"))
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	var data packet.Parsed
	if err := data.Decode(env.Last()); err != nil || string(data.Payload) != "hello namespace" || data.TCP.Seq() != ourSeq {
		t.Fatalf("data to the namespace: %v %q seq %d want %d", err, data.Payload, data.TCP.Seq(), ourSeq)
	}
	if !(env.Offload.CsumStart != 0) {
		t.Error("data frame sent without the partial-checksum mark")
	}
	// Not acknowledged yet: a retransmission (rewind) sends the same bytes.
	tbl.rewind(tbl.flows.At(env.Idx))
	tbl.push(env.Idx)
	if err := data.Decode(env.Last()); err != nil || string(data.Payload) != "hello namespace" {
		t.Fatalf("retransmission: %v %q", err, data.Payload)
	}
	// The ACK discards the bytes (from the socket, or the copy): nothing is
	// left to send.
	ourSeq += 15
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, nil)
	before := env.Sent
	tbl.HandleFrame(&p)
	tbl.rewind(tbl.flows.At(env.Idx))
	tbl.push(env.Idx)
	if env.Sent != before {
		t.Fatalf("acknowledged bytes were sent again")
	}

	// FIN from the namespace: the host reads EOF.
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPFin, nil)
	tbl.HandleFrame(&p)
	time.Sleep(10 * time.Millisecond)
	if n, err := unix.Read(srv, got); n != 0 || err != nil {
		t.Fatalf("host read %d, %v after the namespace's FIN, want EOF", n, err)
	}
	// The host closes: FIN to the namespace; its ACK ends the flow.
	unix.Close(srv)
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP)
	var fin packet.Parsed
	if err := fin.Decode(env.Last()); err != nil || !fin.TCP.Flags().Has(packet.TCPFin) || fin.TCP.Seq() != ourSeq {
		t.Fatalf("FIN to the namespace: %v flags %v seq %d", err, fin.TCP.Flags(), fin.TCP.Seq())
	}
	segment(&p, buf, port, nsSeq+1, ourSeq+1, packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if tbl.Len() != 0 {
		t.Fatalf("flow not removed after both FINs: %d flows", tbl.Len())
	}
}

func TestRefusedAndUnknown(t *testing.T) {
	l, port := loopbackServer(t)
	unix.Close(l) // nobody listens: refused
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: kernelNoPeekOff()}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	segment(&p, buf, port, 5000, 0, packet.TCPSyn, nil)
	tbl.HandleFrame(&p)
	for i := 0; env.Sent == 0 && i < 100; i++ {
		time.Sleep(time.Millisecond)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLOUT|unix.EPOLLERR)
	}
	var rst packet.Parsed
	if err := rst.Decode(env.Last()); err != nil || rst.TCP.Flags() != packet.TCPRst|packet.TCPAck || rst.TCP.Ack() != 5001 {
		t.Fatalf("refused connection: %v flags %v ack %d", err, rst.TCP.Flags(), rst.TCP.Ack())
	}
	if tbl.Len() != 0 {
		t.Fatal("refused flow kept")
	}
	// A segment for no flow gets RST with seq = its ACK.
	segment(&p, buf, port, 7000, 123456, packet.TCPAck, []byte("x"))
	tbl.HandleFrame(&p)
	if err := rst.Decode(env.Last()); err != nil || rst.TCP.Flags() != packet.TCPRst || rst.TCP.Seq() != 123456 {
		t.Fatalf("RST for an unknown flow: %v flags %v seq %d", err, rst.TCP.Flags(), rst.TCP.Seq())
	}
}

func TestFlowLimit(t *testing.T) {
	_, port := loopbackServer(t)
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, MaxFlows: 1, NoPeekOff: kernelNoPeekOff()}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	segment(&p, buf, port, 1, 0, packet.TCPSyn, nil)
	tbl.HandleFrame(&p)
	synAck, _ := env.Decode()
	segment(&p, buf, port, 2, synAck.TCP.Seq()+1, packet.TCPAck, nil)
	tbl.HandleFrame(&p) // established: not evicted for a newcomer
	// A second connection (another source port) is over the limit.
	segment(&p, buf, port, 1, 0, packet.TCPSyn, nil)
	binary16(p.TCP[0:2], 40001)
	tbl.HandleFrame(&p)
	var rst packet.Parsed
	if err := rst.Decode(env.Last()); err != nil || !rst.TCP.Flags().Has(packet.TCPRst) || rst.TCP.DstPort() != 40001 {
		t.Fatalf("SYN over the limit: %v flags %v port %d", err, rst.TCP.Flags(), rst.TCP.DstPort())
	}
	if tbl.Len() != 1 || tbl.FlowLimit != 1 {
		t.Fatalf("%d flows with a limit of 1, %d refused", tbl.Len(), tbl.FlowLimit)
	}
}

func binary16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }

// TestSteadyStateAllocs proves the per-segment path allocates nothing, both
// ways, once a connection is up.
func TestSteadyStateAllocs(t *testing.T) { sendPaths(t, testSteadyStateAllocs) }

func testSteadyStateAllocs(t *testing.T, noPeekOff bool) {
	tbl, env, srv, nsSeq, ourSeq := established(t, noPeekOff)
	port := tbl.flows.At(env.Idx).key.DstPort
	var p packet.Parsed
	buf := make([]byte, 2000)
	payload := bytes.Repeat([]byte{0xab}, 1400)
	drain := make([]byte, 65536)

	nsToHost := testing.AllocsPerRun(500, func() {
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, payload)
		tbl.HandleFrame(&p)
		tbl.Flush(false)
		nsSeq += 1400
		for {
			if n, _ := unix.Read(srv, drain); n <= 0 {
				break
			}
		}
	})
	if nsToHost != 0 {
		t.Errorf("namespace → host: %v allocations per segment", nsToHost)
	}
	sentBefore := env.Sent
	hostToNS := testing.AllocsPerRun(500, func() {
		unix.Write(srv, payload)
		// Loopback delivers at once, as a rule; under qemu's TCG the
		// sender's kernel may hold a small write back a moment
		// (autocorking until the previous one is freed). Wait for it, up
		// to a second: the checks below still want every write sent.
		sent, deadline := env.Sent, time.Now().Add(time.Second)
		for env.Sent == sent && time.Now().Before(deadline) {
			tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		}
		ourSeq += 1400
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, nil)
		tbl.HandleFrame(&p)
		tbl.Flush(false)
		tbl.Idle() // as the engine, before it waits: the discard
	})
	if hostToNS != 0 {
		t.Errorf("host → namespace: %v allocations per segment", hostToNS)
	}
	if env.Sent-sentBefore < 500 {
		t.Fatalf("only %d frames went to the namespace: the loop measured nothing", env.Sent-sentBefore)
	}
	if f := tbl.flows.At(env.Idx); f.sndUna != f.sndNxt || f.sndNxt != ourSeq {
		t.Fatalf("sequence out of step: una %d nxt %d want %d", f.sndUna, f.sndNxt, ourSeq)
	}
}

// TestReassemblyAndSACK: segments beyond a gap are kept, described in SACK
// blocks, and written in order once the gap fills.
func TestReassemblyAndSACK(t *testing.T) {
	tbl, env, srv, nsSeq, ourSeq := established(t, kernelNoPeekOff())
	port := tbl.flows.At(env.Idx).key.DstPort
	var p packet.Parsed
	buf := make([]byte, 2000)
	a, b, c, d := []byte("aaaa"), []byte("bbbb"), []byte("cccc"), []byte("dddd")
	segment(&p, buf, port, nsSeq+4, ourSeq, packet.TCPAck, b) // a is missing
	tbl.HandleFrame(&p)
	segment(&p, buf, port, nsSeq+12, ourSeq, packet.TCPAck, d) // and c
	tbl.HandleFrame(&p)
	var dup packet.Parsed
	if err := dup.Decode(env.Last()); err != nil || dup.TCP.Ack() != nsSeq {
		t.Fatalf("duplicate ACK: %v ack %d want %d", err, dup.TCP.Ack(), nsSeq)
	}
	// NOP NOP SACK(2 blocks): the latest arrival (d) first, then b.
	opts := dup.TCP[packet.TCPLen:dup.TCP.HeaderLen()]
	want := []byte{1, 1, 5, 18}
	for _, v := range []uint32{nsSeq + 12, nsSeq + 16, nsSeq + 4, nsSeq + 8} {
		want = append(want, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	if !bytes.Equal(opts, want) {
		t.Fatalf("SACK option % x, want % x", opts, want)
	}
	segment(&p, buf, port, nsSeq+8, ourSeq, packet.TCPAck, c)
	tbl.HandleFrame(&p)
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, a) // the gap fills
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	var ack packet.Parsed
	if err := ack.Decode(env.Last()); err != nil || ack.TCP.Ack() != nsSeq+16 || ack.TCP.HeaderLen() != packet.TCPLen {
		t.Fatalf("cumulative ACK: %v ack %d want %d, header %d", err, ack.TCP.Ack(), nsSeq+16, ack.TCP.HeaderLen())
	}
	time.Sleep(10 * time.Millisecond)
	got := make([]byte, 64)
	n, _ := unix.Read(srv, got)
	if string(got[:n]) != "aaaabbbbccccdddd" {
		t.Fatalf("host read %q", got[:n])
	}
	if f := tbl.flows.At(env.Idx); len(f.ooo) != 0 || f.oooBytes != 0 {
		t.Fatalf("reassembly queue not empty: %d segments, %d bytes", len(f.ooo), f.oooBytes)
	}
}

// TestIdleTimeout: a connection silent past the idle timeout is reset both
// ways by the periodic scan.
func TestIdleTimeout(t *testing.T) {
	tbl, env, srv, _, _ := established(t, kernelNoPeekOff())
	tbl.NextTimer() // arms the idle scan, as the engine's loop does
	env.Advance(DefaultIdleTimeout - scanPeriod)
	tbl.Tick()
	if tbl.Len() != 1 {
		t.Fatal("flow removed before its idle timeout")
	}
	env.Advance(2 * scanPeriod)
	tbl.Tick()
	if tbl.Len() != 0 {
		t.Fatal("idle flow not removed")
	}
	var rst packet.Parsed
	if err := rst.Decode(env.Last()); err != nil || !rst.TCP.Flags().Has(packet.TCPRst) {
		t.Fatalf("no RST to the namespace: %v flags %v", err, rst.TCP.Flags())
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := unix.Read(srv, make([]byte, 10)); err != unix.ECONNRESET {
		t.Fatalf("host side read %v, want ECONNRESET", err)
	}
}

// testNAT maps 10.0.2.2 and fd00::2 to the loopback and, since these tests
// run in the machine's own namespace, lets nothing else out.
var testNAT = nat.Mapper{Gateway: gwIP, Network: netip.MustParsePrefix("10.0.2.0/24"),
	Gateway6: gwIP6, Network6: netip.MustParsePrefix("fd00::/64"),
	AllowHost: func(a packet.Addr) bool {
		return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) || a == packet.Addr{15: 1}
	}}

// The IPv6 addresses of ipv6.
var (
	nsIP6 = packet.AddrFromNetip(netip.MustParseAddr("fd00::5054:ff:fe12:3456"))
	gwIP6 = packet.AddrFromNetip(netip.MustParseAddr("fd00::2"))
)

// ipv6 makes the rest of the test speak IPv6: segments from nsIP6 to
// gwIP6, and the host's server on ::1.
func ipv6(t *testing.T) {
	ns4, gw4 := nsIP, gwIP
	nsIP, gwIP = nsIP6, gwIP6
	t.Cleanup(func() { nsIP, gwIP = ns4, gw4 })
}

// hostLoopback is where the gateway of the test's family leads.
func hostLoopback() packet.Addr {
	if gwIP.Is4() {
		return packet.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return packet.Addr{15: 1}
}

// TestLogAddresses: logs print addresses in dotted form, not as byte arrays.
func TestLogAddresses(t *testing.T) {
	k := flow.Key{NS: nsIP, Dst: packet.AddrFrom4([4]byte{127, 0, 0, 1}), NSPort: 40000, DstPort: 80}
	if got, want := fmt.Sprintf("tcp %v: x", k), "tcp 10.0.2.100:40000 -> 127.0.0.1:80: x"; got != want {
		t.Fatalf("key prints as %q, want %q", got, want)
	}
	// A failing connect names the address and port.
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: kernelNoPeekOff(), Outbound: flow.Outbound{V4: packet.AddrFrom4([4]byte{192, 0, 2, 77})}}, env)
	var p packet.Parsed
	segment(&p, make([]byte, 2000), 80, 1, 0, packet.TCPSyn, nil)
	tbl.HandleFrame(&p)
	if want := "tcp: connect to 127.0.0.1:80: bind to --outbound-addr 192.0.2.77: "; !strings.HasPrefix(env.Logged, want) {
		t.Fatalf("log %q, want it to start with %q", env.Logged, want)
	}
}

// TestDisableHostLoopback: a SYN to the gateway under --disable-host-loopback
// gets ICMP network unreachable from the gateway, quoting the SYN's header
// and ports and sequence number, as slirp4netns answers; no flow is opened.
func TestDisableHostLoopback(t *testing.T) {
	env := flowtest.New()
	m := testNAT
	m.DisableHostLoopback = true
	tbl := New(Config{GatewayMAC: gwMAC, NAT: m, MTU: 1500, NoPeekOff: kernelNoPeekOff()}, env)
	var p packet.Parsed
	segment(&p, make([]byte, 2000), 80, 1234, 0, packet.TCPSyn, nil)
	tbl.HandleFrame(&p)
	r, err := env.Decode()
	typ, code, sent := uint8(packet.ICMPUnreachable), uint8(packet.ICMPNetUnreachable), []byte(p.IP)
	if !nsIP.Is4() {
		typ, code, sent = packet.ICMPv6Unreachable, packet.ICMPv6NoRoute, p.IP6
	}
	if err != nil || r.ICMP == nil || r.ICMP.Type() != typ || r.ICMP.Code() != code || r.Src != gwIP || r.Dst != nsIP || r.DstMAC != nsMAC ||
		len(r.ICMP) < packet.ICMPEchoLen+packet.IPHeaderLen(nsIP)+8 || !bytes.HasPrefix(sent, r.ICMP[packet.ICMPEchoLen:]) {
		t.Fatalf("want ICMP network unreachable quoting the SYN, got %v %+v", err, r)
	}
	if tbl.Len() != 0 {
		t.Fatal("a flow was opened")
	}
}

// TestSuperFrames: with GSO, host data goes to the namespace in frames of
// many segments, marked for segmentation at the MSS with a partial
// checksum that completes right; a TSO super-frame from the namespace
// reaches the socket whole. Neither way allocates.
func TestSuperFrames(t *testing.T) { sendPaths(t, testSuperFrames) }

func testSuperFrames(t *testing.T, noPeekOff bool) {
	tbl, env, srv, nsSeq, ourSeq := establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff, GSO: true})
	port := tbl.flows.At(env.Idx).key.DstPort
	var p packet.Parsed
	buf := make([]byte, 70000)
	const size = 60000 // within the window (1024 << 7) and one frame's 44 segments
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	drain := make([]byte, 1<<20)

	// Host → namespace: one frame, 60,000 bytes.
	if n, err := unix.Write(srv, payload); n != size {
		t.Fatalf("write: %d, %v", n, err)
	}
	deadline := time.Now().Add(time.Second)
	for sent := env.Sent; env.Sent == sent && time.Now().Before(deadline); {
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	}
	var d packet.Parsed
	if err := d.Decode(env.Last()); err != nil || !bytes.Equal(d.Payload, payload) {
		t.Fatalf("super-frame to the namespace: %v, %d bytes (want all %d, equal)", err, len(d.Payload), size)
	}
	tcpOff := uint16(packet.EtherLen + packet.IPHeaderLen(nsIP))
	gso, mss := packet.GSOTCPv4, uint16(1460) // the SYN's MSS, within the MTU
	if !nsIP.Is4() {
		gso, mss = packet.GSOTCPv6, 1440
	}
	want := packet.Offload{CsumStart: tcpOff, CsumOffset: packet.TCPChecksumOffset, GSO: gso, GSOSize: mss, HdrLen: tcpOff + packet.TCPLen}
	if env.Offload != want {
		t.Fatalf("offload %+v, want %+v", env.Offload, want)
	}
	if s := packet.Checksum(d.TCP, packet.PseudoHeaderSum(d.Src, d.Dst, packet.ProtoTCP, len(d.TCP))); s != 0 {
		t.Fatalf("the completed checksum does not verify: residue %#x", s)
	}
	ourSeq += size
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, nil)
	tbl.HandleFrame(&p)

	// Namespace → host: a TSO super-frame of 60,000 bytes.
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, payload)
	p.Offload = packet.Offload{CsumStart: tcpOff, CsumOffset: packet.TCPChecksumOffset, GSO: gso, GSOSize: 1448, HdrLen: tcpOff + packet.TCPLen}
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	nsSeq += size
	got := 0
	for deadline := time.Now().Add(time.Second); got < size && time.Now().Before(deadline); {
		n, _ := unix.Read(srv, drain[got:])
		got += max(n, 0)
	}
	if got != size || !bytes.Equal(drain[:size], payload) {
		t.Fatalf("the host read %d bytes of the super-frame's %d, or not the same", got, size)
	}

	nsToHost := testing.AllocsPerRun(200, func() {
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, payload)
		tbl.HandleFrame(&p)
		tbl.Flush(false)
		nsSeq += size
		for left := size; left > 0; {
			n, _ := unix.Read(srv, drain)
			if n <= 0 {
				break
			}
			left -= n
		}
	})
	sentBefore := env.Sent
	hostToNS := testing.AllocsPerRun(200, func() {
		unix.Write(srv, payload)
		for sent, deadline := env.Sent, time.Now().Add(time.Second); env.Sent == sent && time.Now().Before(deadline); {
			tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		}
		ourSeq = tbl.flows.At(env.Idx).sndNxt
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, nil)
		tbl.HandleFrame(&p)
		tbl.Flush(false)
	})
	if nsToHost != 0 || hostToNS != 0 {
		t.Errorf("super-frames allocate: %v per frame to the host, %v to the namespace", nsToHost, hostToNS)
	}
	if env.Sent-sentBefore < 200 || env.Offload.GSO != gso {
		t.Fatalf("%d frames to the namespace, the last %+v: the loop measured no super-frames", env.Sent-sentBefore, env.Offload)
	}
}

// TestIPv6 runs the tests of the per-segment path over IPv6: segments
// between fd00:: addresses, reflected onto a socket to the host's ::1.
func TestIPv6(t *testing.T) {
	ipv6(t)
	t.Run("handshake and data", TestHandshakeAndData)
	t.Run("refused and unknown", TestRefusedAndUnknown)
	t.Run("steady-state allocations", TestSteadyStateAllocs)
	t.Run("super-frames", TestSuperFrames)
	t.Run("disable-host-loopback", TestDisableHostLoopback)
	t.Run("reassembly and SACK", TestReassemblyAndSACK)
	t.Run("delayed ACK", TestDelayedAck)
}
