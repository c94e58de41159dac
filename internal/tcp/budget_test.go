package tcp

import (
	"testing"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestHalfOpenCap: at the cap, SYNs are answered with cookies and open
// nothing; a cookie's ACK opens an established flow in the place of the
// oldest handshake; a forged one is reset. Past half the cap, flows get
// fewer SYN retries; a completed handshake leaves the count; in a loaded
// table a SYN-ACK goes once more, then the flow is reset.
func TestHalfOpenCap(t *testing.T) {
	_, port := loopbackServer(t)
	env := flowtest.New()
	env.Advance(10 * cookiePeriod)
	budget := &flow.Budget{Max: 100}
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, MaxFlows: 100, MaxHalfOpen: 8, Budget: budget, NoPeekOff: kernelNoPeekOff()}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	seg := func(src uint16, seq, ack uint32, flags packet.TCPFlags, data []byte) {
		segment(&p, buf, port, seq, ack, flags, data)
		binary16(p.TCP[0:2], src)
		p.TCP.SetChecksum(nsIP, gwIP)
		tbl.HandleFrame(&p)
	}
	key := func(src uint16) flow.Key { return flow.Key{NS: nsIP, Dst: gwIP, NSPort: src, DstPort: port} }
	has := func(src uint16) bool { _, ok := tbl.flows.Lookup(key(src)); return ok }
	cookies := map[uint16]uint32{}
	for src := uint16(1000); src < 1010; src++ {
		seg(src, 1, 0, packet.TCPSyn, nil)
		if r, err := env.Decode(); err == nil && r.TCP.Flags() == packet.TCPSyn|packet.TCPAck {
			cookies[src] = r.TCP.Seq()
		}
	}
	if tbl.HalfOpen() != 8 || tbl.Cookies != 2 || tbl.Len() != 8 || budget.Used() != 8 || len(cookies) != 10 {
		t.Fatalf("10 SYNs at a cap of 8: %d half-open, %d cookies, %d flows, budget %d, %d SYN-ACKs", tbl.HalfOpen(), tbl.Cookies, tbl.Len(), budget.Used(), len(cookies))
	}
	if has(1008) || has(1009) || env.Logged == "" {
		t.Fatalf("a SYN past the cap opened a flow, or no warning (%q)", env.Logged)
	}
	// Flows opened once half the cap was in use give up sooner.
	for src, want := range map[uint16]int{1002: defaultSynCnt(t), 1006: loadedSynCnt} {
		idx, _ := tbl.flows.Lookup(key(src))
		if got, _ := unix.GetsockoptInt(tbl.flows.At(idx).fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT); got != want {
			t.Errorf("port %d: TCP_SYNCNT %d, want %d", src, got, want)
		}
	}
	// A forged cookie is reset; the real one opens an established flow,
	// in the place of the oldest handshake, and its data goes through.
	seg(1008, 2, cookies[1008]+1+8, packet.TCPAck, nil)
	if has(1008) {
		t.Fatal("a forged cookie opened a flow")
	}
	seg(1009, 2, cookies[1009]+1, packet.TCPAck|packet.TCPPsh, []byte("hello"))
	idx, ok := tbl.flows.Lookup(key(1009))
	if !ok || tbl.flows.At(idx).state != stEstablished || !tbl.flows.At(idx).cookie || tbl.CookieFlows != 1 {
		t.Fatalf("the cookie's ACK: flow %v, %d cookie flows", ok, tbl.CookieFlows)
	}
	if f := tbl.flows.At(idx); f.rcvNxt != 2+5 || f.toHost != 5 || f.wscale || f.sack || f.mss != 1460 {
		t.Fatalf("cookie flow: rcvNxt %d, %d bytes to the host, wscale %v, sack %v, mss %d", f.rcvNxt, f.toHost, f.wscale, f.sack, f.mss)
	}
	if has(1000) || tbl.HalfOpenResets != 1 || tbl.HalfOpen() != 7 {
		t.Fatalf("after the cookie: oldest present %v, %d reset, %d half-open", has(1000), tbl.HalfOpenResets, tbl.HalfOpen())
	}
	// Completing a handshake takes the flow out of the count.
	seg(1007, 2, cookies[1007]+1, packet.TCPAck, nil)
	if tbl.HalfOpen() != 6 || tbl.Len() != 8 {
		t.Fatalf("after one ACK: %d half-open, %d flows", tbl.HalfOpen(), tbl.Len())
	}
	// In a loaded table every handshake, the ones begun before it was
	// loaded too, gets one more SYN-ACK, then a reset.
	for i := 0; i < 3; i++ {
		env.Advance(rtoMax)
		tbl.Tick()
	}
	if has(1006) || has(1002) {
		t.Errorf("after 3 SYN-ACK timeouts: 1006 present %v, 1002 present %v", has(1006), has(1002))
	}
	if tbl.HalfOpen() != 0 || tbl.Len() != 2 || budget.Used() != 2 {
		t.Fatalf("after the timeouts: %d half-open, %d flows, budget %d", tbl.HalfOpen(), tbl.Len(), budget.Used())
	}
	// Many more SYNs: the cap holds, and the eviction queue stays small.
	for src := uint16(2000); src < 3000; src++ {
		seg(src, 1, 0, packet.TCPSyn, nil)
	}
	if tbl.HalfOpen() != 8 || len(tbl.halfQ) > 2*8+64+1 || tbl.Cookies != 2+1000-8 {
		t.Fatalf("after 1000 SYNs: %d half-open, queue %d, %d cookies", tbl.HalfOpen(), len(tbl.halfQ), tbl.Cookies)
	}
}

// TestHalfOpenQueueBounded: connections that complete their handshake, as
// all do without a flood, leave the eviction queue near empty.
func TestHalfOpenQueueBounded(t *testing.T) {
	_, port := loopbackServer(t)
	env := flowtest.New()
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, MaxFlows: 100, MaxHalfOpen: 64, NoPeekOff: kernelNoPeekOff()}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	for i := 0; i < 3000; i++ {
		src := uint16(1000 + i)
		segment(&p, buf, port, 1, 0, packet.TCPSyn, nil)
		binary16(p.TCP[0:2], src)
		tbl.HandleFrame(&p)
		synAck, err := env.Decode()
		if err != nil || synAck.TCP.Flags() != packet.TCPSyn|packet.TCPAck {
			t.Fatalf("connection %d: no SYN-ACK (%v)", i, err)
		}
		segment(&p, buf, port, 2, synAck.TCP.Seq()+1, packet.TCPAck|packet.TCPRst, nil)
		binary16(p.TCP[0:2], src)
		tbl.HandleFrame(&p) // established, then reset: the flow goes
	}
	if tbl.Len() != 0 || tbl.HalfOpen() != 0 || len(tbl.halfQ) > 64+1 {
		t.Fatalf("after 3000 connections: %d flows, %d half-open, queue of %d", tbl.Len(), tbl.HalfOpen(), len(tbl.halfQ))
	}
}

// TestCookieAllocs: answering a SYN with a cookie, and checking one,
// allocate nothing: a flood's path.
func TestCookieAllocs(t *testing.T) {
	env := flowtest.New()
	env.Advance(cookiePeriod)
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, MaxFlows: 100, MaxHalfOpen: 8}, env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	segment(&p, buf, 80, 1, 0, packet.TCPSyn, nil)
	k := flow.Key{NS: nsIP, Dst: gwIP, NSPort: 40000, DstPort: 80}
	if n := testing.AllocsPerRun(100, func() { tbl.sendCookie(&p, k) }); n != 0 {
		t.Errorf("sendCookie: %v allocations", n)
	}
	r, _ := env.Decode()
	iss := r.TCP.Seq()
	segment(&p, buf, 80, 2, iss+1, packet.TCPAck, nil)
	if _, ok := tbl.checkCookie(&p, k); !ok {
		t.Fatal("checkCookie refused nsgate's own cookie")
	}
	if n := testing.AllocsPerRun(100, func() { tbl.checkCookie(&p, k) }); n != 0 {
		t.Errorf("checkCookie: %v allocations", n)
	}
	// A cookie is good for one to two periods.
	env.Advance(2 * cookiePeriod)
	if _, ok := tbl.checkCookie(&p, k); ok {
		t.Error("a cookie two periods old was accepted")
	}
}

// defaultSynCnt is the TCP_SYNCNT a new socket has: the sysctl's.
func defaultSynCnt(t *testing.T) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	n, _ := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT)
	return n
}
