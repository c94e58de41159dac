package tcp

import (
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Tests of what a bulk sender sees of nsgate: the MSS it is offered, and
// how often its segments are acknowledged.

// TestOurMSS: the MSS offered is the MTU's, in whole pages above a page.
func TestOurMSS(t *testing.T) {
	for _, c := range []struct {
		mtu  int
		want uint16
	}{
		{576, 536},
		{1500, 1460},
		{4136, 4096},
		{4137, 4096},
		{9000, 8192},
		{65520, 61440},
	} {
		tbl := New(Config{MTU: c.mtu}, nil)
		if got := tbl.ourMSS(nsIP); got != c.want {
			t.Errorf("MTU %d: MSS %d, want %d", c.mtu, got, c.want)
		}
	}
	// And on the wire, in the SYN-ACK (establishedWith checks it). Without
	// SO_PEEK_OFF (make test-kernel's 6.1) the flow keeps its own copy.
	establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 65520, NoPeekOff: kernelNoPeekOff()})
}

// TestDelayedAck: one segment's ACK waits up to DelayedAck for the next
// segment to share it, and NextTimer says when it is due; a second
// segment is acknowledged at once; data to the namespace carries a
// waiting ACK. Every byte reaches the host.
func TestDelayedAck(t *testing.T) {
	sendPaths(t, func(t *testing.T, noPeekOff bool) {
		const delay = 5 * time.Millisecond
		tbl, env, srv, nsSeq, ourSeq := establishedWith(t, Config{GatewayMAC: gwMAC, NAT: testNAT, MTU: 1500, NoPeekOff: noPeekOff, AckHold: testHold, DelayedAck: delay})
		port := tbl.flows.At(env.Idx).key.DstPort
		var p packet.Parsed
		buf := make([]byte, 2000)
		payload := make([]byte, 1400)
		sent := 0
		send := func() {
			payload[0]++
			segment(&p, buf, port, nsSeq, ourSeq, packet.TCPAck, payload)
			tbl.HandleFrame(&p)
			nsSeq += uint32(len(payload))
			sent += len(payload)
		}
		acked := func(what string, frames, before int) {
			t.Helper()
			var ack packet.Parsed
			if err := ack.Decode(env.Last()); env.Sent != before+frames || err != nil || ack.TCP.Ack() != nsSeq {
				t.Fatalf("%s: %d frames (want %d), last acks %d (want %d): %v", what, env.Sent-before, frames, ack.TCP.Ack(), nsSeq, err)
			}
		}

		// One segment: no ACK yet, not even before the loop sleeps, and the
		// loop's timer says when it is due.
		before := env.Sent
		send()
		tbl.Flush(true)
		tbl.Flush(false)
		if env.Sent != before {
			t.Fatalf("one segment's ACK went at once")
		}
		if next, due := tbl.NextTimer(), env.Now()+delay; next != due {
			t.Fatalf("NextTimer %v, want the delayed ACK's %v", next, due)
		}
		// The second: one ACK for both, at once.
		send()
		tbl.Flush(true)
		acked("second segment", 1, before)
		if tbl.Held() {
			t.Fatal("an ACK still waits after the second segment's")
		}

		// One alone: it goes when DelayedAck has passed, not before.
		before = env.Sent
		send()
		env.Advance(delay - time.Microsecond)
		tbl.Flush(true)
		if env.Sent != before {
			t.Fatal("the delayed ACK went early")
		}
		env.Advance(time.Microsecond)
		tbl.Flush(true)
		acked("after DelayedAck", 1, before)

		// One, then the host's data: the data carries the ACK.
		before = env.Sent
		send()
		tbl.Flush(true)
		unix.Write(srv, []byte("answer"))
		waitReadable(t, tbl.flows.At(env.Idx).fd)
		tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
		env.Advance(delay)
		tbl.Flush(true)
		acked("data from the host", 1, before)
		var d packet.Parsed
		if err := d.Decode(env.Last()); err != nil || string(d.Payload) != "answer" {
			t.Fatalf("the last frame is %q, want the host's data: %v", d.Payload, err)
		}

		got := 0
		for got < sent {
			waitReadable(t, srv)
			n, err := unix.Read(srv, make([]byte, 8192))
			if err != nil || n == 0 {
				t.Fatalf("host read after %d of %d bytes: %v", got, sent, err)
			}
			got += n
		}
	})
}
