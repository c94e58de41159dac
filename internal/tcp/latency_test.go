package tcp

import (
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Tests of the request/response path: the ACK a small request waits for
// the answer to carry, the edge-triggered host socket, the window estimate
// and what the engine reads to decide on busy polling.

const testHold = 100 * time.Microsecond

// waitReadable polls fd until it has bytes to read, up to a second.
func waitReadable(t *testing.T, fd int) {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 1000); n != 1 || err != nil {
		t.Fatalf("fd %d not readable within 1 s: %v", fd, err)
	}
}

// TestAckCarriedByAnswer: the ACK of a small request is held while the
// engine polls, and the answer carries it: one frame to the namespace for
// the exchange, not two. Without an answer it goes once AckHold has passed;
// a large segment's goes at once (with no DelayedAck: TestDelayedAck).
func TestAckCarriedByAnswer(t *testing.T) {
	sendPaths(t, func(t *testing.T, noPeekOff bool) {
		tbl, env, srv, nsSeq, ourSeq := establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff, AckHold: testHold})
		port := tbl.flows.At(env.Idx).key.DstPort
		var p packet.Parsed
		buf := make([]byte, 2000)
		got := make([]byte, 2000)

		// A request; the host answers.
		before := env.Sent
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("ping"))
		tbl.HandleFrame(&p)
		nsSeq += 4
		tbl.Flush(true)
		if env.Sent != before || !tbl.Held() {
			t.Fatalf("the ACK of a 4-byte request went at once (%d frames), held %v", env.Sent-before, tbl.Held())
		}
		waitReadable(t, srv)
		if n, _ := unix.Read(srv, got); string(got[:n]) != "ping" {
			t.Fatalf("host read %q", got[:n])
		}
		unix.Write(srv, []byte("pong"))
		waitReadable(t, tbl.flows.At(env.Idx).fd)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		tbl.Flush(false)
		if env.Sent != before+1 {
			t.Fatalf("%d frames for one exchange, want the answer alone", env.Sent-before)
		}
		var ans packet.Parsed
		if err := ans.Decode(env.Last()); err != nil || string(ans.Payload) != "pong" || ans.TCP.Ack() != nsSeq {
			t.Fatalf("answer %q acks %d (want %d): %v", ans.Payload, ans.TCP.Ack(), nsSeq, err)
		}
		ourSeq += 4

		// A request with no answer: held for AckHold, no longer.
		before = env.Sent
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("ping"))
		tbl.HandleFrame(&p)
		nsSeq += 4
		tbl.Flush(true)
		env.Advance(testHold / 2)
		tbl.Flush(true)
		if env.Sent != before {
			t.Fatalf("the ACK went before AckHold had passed")
		}
		env.Advance(testHold / 2)
		tbl.Flush(true)
		var ack packet.Parsed
		if err := ack.Decode(env.Last()); env.Sent != before+1 || err != nil || ack.TCP.Ack() != nsSeq || len(ack.Payload) != 0 {
			t.Fatalf("after AckHold: %d frames, ack %d (want %d): %v", env.Sent-before, ack.TCP.Ack(), nsSeq, err)
		}

		// A bulk sender's segment: acknowledged at once (DelayedAck is 0).
		before = env.Sent
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, make([]byte, SmallSegment+1))
		tbl.HandleFrame(&p)
		nsSeq += SmallSegment + 1
		tbl.Flush(true)
		if err := ack.Decode(env.Last()); env.Sent != before+1 || err != nil || ack.TCP.Ack() != nsSeq {
			t.Fatalf("large segment: %d frames, ack %d (want %d): %v", env.Sent-before, ack.TCP.Ack(), nsSeq, err)
		}

		// Without hold (the engine about to sleep), a small one goes too.
		before = env.Sent
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, []byte("x"))
		tbl.HandleFrame(&p)
		tbl.Flush(false)
		if env.Sent != before+1 || tbl.Held() {
			t.Fatalf("Flush(false): %d frames, held %v", env.Sent-before, tbl.Held())
		}
	})
}

// TestEdgeTriggered: host sockets are watched edge-triggered, and push
// reads only while the socket may hold bytes it has not sent: once it has
// found the socket drained, an ACK from the namespace costs no read, and
// the next edge (new bytes) makes it read again.
func TestEdgeTriggered(t *testing.T) {
	sendPaths(t, func(t *testing.T, noPeekOff bool) {
		tbl, env, srv, nsSeq, ourSeq := established(t, noPeekOff)
		f := tbl.flows.At(env.Idx)
		if env.Events&unix.EPOLLET == 0 || env.Events&unix.EPOLLIN == 0 {
			t.Fatalf("epoll interest %#x: want EPOLLIN edge-triggered", env.Events)
		}
		port := f.key.DstPort
		var p packet.Parsed
		buf := make([]byte, 2000)
		unix.Write(srv, []byte("one"))
		waitReadable(t, f.fd)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		if f.sndNxt != ourSeq+3 || f.avail {
			t.Fatalf("after the event: sent %d bytes, avail %v (want 3, false)", f.sndNxt-ourSeq, f.avail)
		}
		// Bytes arrive; their edge is not handled yet. The namespace's ACK
		// does not look for them: the edge will say.
		unix.Write(srv, []byte("two"))
		time.Sleep(10 * time.Millisecond)
		segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil)
		tbl.HandleFrame(&p)
		if f.sndNxt != ourSeq+3 {
			t.Fatalf("an ACK made push read a drained socket")
		}
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		var d packet.Parsed
		if err := d.Decode(env.Last()); err != nil || string(d.Payload) != "two" || f.sndNxt != ourSeq+6 {
			t.Fatalf("after the edge: %q, sent %d: %v", d.Payload, f.sndNxt-ourSeq, err)
		}
		// A window too small for what came: push stops with bytes left and
		// says so, and the ACK that opens the window sends them, no edge
		// needed.
		segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil)
		binary16(p.TCP[14:16], 0) // the window field
		tbl.HandleFrame(&p)
		unix.Write(srv, []byte("three"))
		waitReadable(t, f.fd)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		if f.sndNxt != ourSeq+6 || !f.avail {
			t.Fatalf("zero window: sent %d, avail %v (want 6, true)", f.sndNxt-ourSeq, f.avail)
		}
		segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil)
		tbl.HandleFrame(&p)
		if err := d.Decode(env.Last()); err != nil || string(d.Payload) != "three" {
			t.Fatalf("after the window opened: %q: %v", d.Payload, err)
		}
		// The last bytes and the host's FIN, one edge for both: the short
		// read is not the end, EOF is, and the FIN follows the bytes.
		segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil)
		tbl.HandleFrame(&p)
		unix.Write(srv, []byte("last"))
		unix.Shutdown(srv, unix.SHUT_WR)
		time.Sleep(10 * time.Millisecond)
		sent := env.Sent
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN|unix.EPOLLRDHUP)
		if err := d.Decode(env.Last()); err != nil || env.Sent != sent+2 || !d.TCP.Flags().Has(packet.TCPFin) || d.TCP.Seq() != ourSeq+15 {
			t.Fatalf("after the host's FIN: %d frames, the last %v seq %d (want 2, a FIN at %d): %v",
				env.Sent-sent, d.TCP.Flags(), d.TCP.Seq(), ourSeq+15, err)
		}
	})
}

// TestWindowLowWatchesDrain: when the ACKs that Flush sends measure the
// window low (the host's reader is slow), the flow asks for EPOLLOUT, so
// that the window update goes out as soon as the socket drains: no edge
// comes to a socket nobody said was waiting for space.
func TestWindowLowWatchesDrain(t *testing.T) {
	tbl, env, srv, nsSeq, ourSeq := established(t, kernelNoPeekOff())
	f := tbl.flows.At(env.Idx)
	port := f.key.DstPort
	var p packet.Parsed
	buf := make([]byte, 2000)
	payload := make([]byte, 1400)
	for i := 0; !f.wndLow && !f.sendBlocked; i++ {
		if i == 100000 {
			t.Fatal("140 MB written and the window never ran low")
		}
		segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, payload)
		tbl.HandleFrame(&p)
		nsSeq = f.rcvNxt
		tbl.Flush(false)
	}
	if env.Events&unix.EPOLLOUT == 0 || !f.outArmed {
		t.Fatalf("window low (sendBlocked %v): epoll interest %#x, armed %v: want EPOLLOUT", f.sendBlocked, env.Events, f.outArmed)
	}
	// The host reads everything: EPOLLOUT brings a window update.
	drain := make([]byte, 1<<20)
	for {
		if n, _ := unix.Read(srv, drain); n <= 0 {
			break
		}
	}
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLOUT)
	var a packet.Parsed
	if err := a.Decode(env.Last()); err != nil || int(a.TCP.Window())<<ourWScale < f.mem.sndbuf/2 {
		t.Fatalf("window update after the drain: %d bytes of %d: %v", int(a.TCP.Window())<<ourWScale, f.mem.sndbuf, err)
	}
}

// TestWindowEstimate: after one SO_MEMINFO, the window comes from the
// estimate, which each write lowers by its bytes and an skb's overhead, as
// the kernel charges the socket: the window's right edge moves back by the
// overhead alone until the next measurement. EPOLLOUT makes the next
// window measure again.
func TestWindowEstimate(t *testing.T) {
	tbl, env, _, nsSeq, ourSeq := established(t, kernelNoPeekOff())
	f := tbl.flows.At(env.Idx)
	port := f.key.DstPort
	var p packet.Parsed
	buf := make([]byte, 2000)
	tbl.window(f, false)
	if f.mem.sndbuf == 0 {
		t.Fatal("no measurement")
	}
	sndbuf, free := f.mem.sndbuf, f.mem.free
	edge := func() uint32 {
		var a packet.Parsed
		if err := a.Decode(env.Last()); err != nil {
			t.Fatal(err)
		}
		return a.TCP.Ack() + uint32(a.TCP.Window())<<ourWScale
	}
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, make([]byte, 1400))
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	nsSeq += 1400
	first := edge()
	if f.mem.sndbuf != sndbuf || f.mem.free != free-1400-sendOverhead {
		t.Fatalf("estimate after a 1400-byte write: sndbuf %d free %d, want %d and %d", f.mem.sndbuf, f.mem.free, sndbuf, free-1400-sendOverhead)
	}
	segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, make([]byte, 1400))
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	// The window field counts 128-byte units: the edge may round down.
	if e := edge(); first-e > sendOverhead+1<<ourWScale || e-first < 1<<31 && e != first {
		t.Fatalf("the right edge moved by more than a write's overhead: %d then %d", first, e)
	}
	f.wndLow = true
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLOUT)
	if f.mem.sndbuf == 0 || f.mem.free == free-2*(1400+sendOverhead) {
		t.Fatalf("EPOLLOUT did not make the window measure again")
	}
}

// TestInteractive: the engine busy-polls after small exchanges, not during
// bulk, and not once they are a millisecond old.
func TestInteractive(t *testing.T) {
	tbl := New(Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500}, nil)
	now := time.Second
	if tbl.Interactive(now) {
		t.Fatal("interactive before any traffic")
	}
	tbl.moved(1, now)
	if !tbl.Interactive(now + interactiveWindow/2) {
		t.Fatal("not interactive after a small exchange")
	}
	if tbl.Interactive(now + interactiveWindow) {
		t.Fatal("interactive a millisecond after the last small exchange")
	}
	now += 2 * interactiveWindow
	tbl.moved(SmallSegment+1, now)
	tbl.moved(1, now)
	if tbl.Interactive(now) {
		t.Fatal("interactive during bulk traffic")
	}
	tbl.moved(1, now+interactiveWindow)
	if !tbl.Interactive(now + interactiveWindow) {
		t.Fatal("bulk traffic turned polling off for good")
	}
}

// TestRequestResponseAllocs: a request, its held ACK and the answer that
// carries it allocate nothing.
func TestRequestResponseAllocs(t *testing.T) {
	sendPaths(t, func(t *testing.T, noPeekOff bool) {
		tbl, env, srv, nsSeq, ourSeq := establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff, AckHold: time.Hour})
		f := tbl.flows.At(env.Idx)
		port := f.key.DstPort
		var p packet.Parsed
		buf := make([]byte, 2000)
		got := make([]byte, 64)
		q, a := []byte("q"), []byte("a")
		sent := env.Sent
		allocs := testing.AllocsPerRun(200, func() {
			segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck|packet.TCPPsh, q)
			tbl.HandleFrame(&p)
			tbl.Flush(true)
			nsSeq++
			for n, _ := unix.Read(srv, got); n <= 0; n, _ = unix.Read(srv, got) {
			}
			unix.Write(srv, a)
			for f.sndNxt == ourSeq {
				tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
			}
			ourSeq++
			tbl.Flush(true)
			tbl.Idle()
		})
		if allocs != 0 {
			t.Errorf("%v allocations per request and answer", allocs)
		}
		if env.Sent-sent != 201 || tbl.Held() { // AllocsPerRun runs it once more
			t.Fatalf("%d frames for 201 exchanges (want one each), ACKs held %v", env.Sent-sent, tbl.Held())
		}
	})
}

// queued returns the bytes in fd's receive queue (SIOCINQ).
func queued(t *testing.T, fd int) int {
	t.Helper()
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeferredDiscard: acknowledged bytes stay at the head of the socket
// until Idle discards them, a retransmission starts after them, and a flow
// that ends with some left still ends in order.
func TestDeferredDiscard(t *testing.T) {
	if kernelNoPeekOff() {
		t.Skip("this kernel's TCP sockets have no SO_PEEK_OFF (Linux 6.9): the copy path discards nothing")
	}
	tbl, env, srv, nsSeq, ourSeq := established(t, false)
	f := tbl.flows.At(env.Idx)
	port := f.key.DstPort
	var p, d packet.Parsed
	buf := make([]byte, 2000)
	unix.Write(srv, []byte("abcdef"))
	waitReadable(t, f.fd)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	segment(&p, buf, port, nsSeq, ourSeq+3, packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if f.acked != 3 || queued(t, f.fd) != 6 {
		t.Fatalf("after an ACK of 3: %d acknowledged, %d queued; want 3 and 6 until Idle", f.acked, queued(t, f.fd))
	}
	tbl.rewind(f)
	tbl.push(env.Idx)
	if err := d.Decode(env.Last()); err != nil || string(d.Payload) != "def" || d.TCP.Seq() != ourSeq+3 {
		t.Fatalf("retransmission %q at %d: %v; want \"def\" at %d", d.Payload, d.TCP.Seq()-ourSeq, err, 3)
	}
	tbl.Idle()
	if f.acked != 0 || queued(t, f.fd) != 3 {
		t.Fatalf("after Idle: %d acknowledged, %d queued; want 0 and 3", f.acked, queued(t, f.fd))
	}
	// Everything acknowledged, both FINs, 3 bytes not discarded: the host
	// sees the end.
	segment(&p, buf, port, nsSeq, ourSeq+6, packet.TCPAck|packet.TCPFin, nil)
	tbl.HandleFrame(&p)
	unix.Shutdown(srv, unix.SHUT_WR)
	waitReadable(t, f.fd)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN|unix.EPOLLRDHUP)
	segment(&p, buf, port, nsSeq+1, ourSeq+7, packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if tbl.Len() != 0 {
		t.Fatalf("flow not removed after both FINs")
	}
	waitReadable(t, srv)
	time.Sleep(10 * time.Millisecond)
	if n, err := unix.Read(srv, buf); n != 0 || err != nil {
		t.Fatalf("the host read %d, %v at the end: want EOF", n, err)
	}
}
