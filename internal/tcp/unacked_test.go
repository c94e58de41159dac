package tcp

import (
	"bytes"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestUnackedRing writes, acknowledges and rereads across the ring's wrap
// and through growth, and checks every byte against a model.
func TestUnackedRing(t *testing.T) {
	var p ringPool
	var u unacked
	var model []byte // the bytes held, oldest first
	next := byte(0)
	fill := func(n int) {
		space := p.reserve(&u, n)
		n = min(n, space)
		b := make([]byte, n)
		for i := range b {
			b[i] = next
			next++
		}
		u.write(b)
		model = append(model, b...)
	}
	check := func() {
		t.Helper()
		if u.n != len(model) {
			t.Fatalf("ring holds %d bytes, model %d", u.n, len(model))
		}
		got := make([]byte, u.n)
		if n := u.read(0, got); n != u.n || !bytes.Equal(got, model) {
			t.Fatalf("ring content differs from the model (%d bytes read)", n)
		}
		if u.n > 3 { // a read from an offset, as a retransmission after a partial ACK
			part := make([]byte, 2)
			if u.read(u.n-3, part) != 2 || !bytes.Equal(part, model[len(model)-3:len(model)-1]) {
				t.Fatal("read at an offset differs")
			}
		}
	}
	fill(10000)
	check()
	if len(u.buf) != minRing {
		t.Fatalf("first ring %d bytes, want %d", len(u.buf), minRing)
	}
	for i := 0; i < 50; i++ { // around the ring many times
		u.drop(7000)
		model = model[7000:]
		fill(7000)
		check()
	}
	if len(u.buf) != minRing {
		t.Fatalf("ring grew to %d without need", len(u.buf))
	}
	fill(60000) // more than the ring: it grows, keeping its bytes in order
	check()
	if len(u.buf) != 128<<10 {
		t.Fatalf("ring is %d bytes after growth, want %d", len(u.buf), 128<<10)
	}
	for len(model) < maxRing {
		fill(maxRing)
		check()
	}
	if len(u.buf) != maxRing || u.space() != 0 || p.reserve(&u, 1) != 0 {
		t.Fatalf("ring at %d bytes, space %d: should stop at maxRing %d", len(u.buf), u.space(), maxRing)
	}
	u.drop(u.n)
	model = nil
	p.release(&u)
	if p.lent != 0 || u.buf != nil {
		t.Fatalf("after release: lent %d, ring %d bytes", p.lent, len(u.buf))
	}
	// The pool hands the same memory back: no allocation in steady state.
	allocs := testing.AllocsPerRun(100, func() {
		p.reserve(&u, 1000)
		u.write(make([]byte, 0))
		p.release(&u)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per ring lent from a warm pool", allocs)
	}
}

// TestRingBudget: past the budget, new flows still get a first ring of
// minRing, and no ring grows.
func TestRingBudget(t *testing.T) {
	var p ringPool
	p.lent = ringBudget - 1 // as if other flows held nearly all of it
	var u unacked
	if got := p.reserve(&u, 64<<10); got != minRing {
		t.Fatalf("a new flow over budget got %d bytes of ring, want %d", got, minRing)
	}
	u.write(make([]byte, minRing))
	if got := p.reserve(&u, 1); got != 0 || len(u.buf) != minRing {
		t.Fatalf("a ring grew past the budget: space %d, size %d", got, len(u.buf))
	}
	// Room for doubling, not for the 128 KiB a 64 KiB segment asks: the
	// ring doubles, as a ring that can grow must.
	p.lent = ringBudget - 2*minRing
	if p.growTo(&u, 1) != 2*minRing {
		t.Fatalf("growTo(1) = %d, want %d", p.growTo(&u, 1), 2*minRing)
	}
	if got := p.reserve(&u, 64<<10); got != minRing || len(u.buf) != 2*minRing {
		t.Fatalf("near the budget: space %d, size %d; want the ring doubled", got, len(u.buf))
	}
}

// TestCopyPathRingFullResumesOnACK: a flow whose ring is full and cannot
// grow stops reading, yet remembers that the socket holds more (f.avail):
// epoll is edge-triggered and says nothing again, so the namespace's ACK,
// which makes room, must be what reads on.
func TestCopyPathRingFullResumesOnACK(t *testing.T) {
	tbl, env, srv, nsSeq, ourSeq := established(t, true)
	f := tbl.flows.At(env.Idx)
	port := f.key.DstPort
	tbl.rings.lent = ringBudget // the other flows took it all: a first ring only
	msg := bytes.Repeat([]byte("0123456789abcdef"), 3*minRing/16)
	if _, err := unix.Write(srv, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	if got := f.sndNxt - ourSeq; got != minRing || !f.avail {
		t.Fatalf("sent %d bytes (want a ring's %d), avail %v (want true)", got, minRing, f.avail)
	}
	var p packet.Parsed
	buf := make([]byte, 2000)
	for want := uint32(2 * minRing); want <= 3*minRing; want += minRing {
		segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil) // no epoll event in between
		tbl.HandleFrame(&p)
		if got := f.sndNxt - ourSeq; got != want {
			t.Fatalf("after the ACK: sent %d bytes, want %d", got, want)
		}
	}
	segment(&p, buf, port, nsSeq, f.sndNxt, packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if f.avail || f.sndNxt-ourSeq != uint32(len(msg)) {
		t.Fatalf("everything sent and acknowledged: avail %v, sent %d of %d", f.avail, f.sndNxt-ourSeq, len(msg))
	}
}

// TestCopyPathIdleReleasesRing: on the copy path a flow's ring holds the
// bytes until the namespace acknowledges them, retransmits from it, and an
// idle, empty ring goes back to the pool at the sweep.
func TestCopyPathIdleReleasesRing(t *testing.T) {
	tbl, env, srv, nsSeq, ourSeq := established(t, true)
	f := tbl.flows.At(env.Idx)
	port := f.key.DstPort
	msg := bytes.Repeat([]byte("0123456789"), 300)
	if _, err := unix.Write(srv, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	if f.sent.n != len(msg) || tbl.rings.lent != len(f.sent.buf) {
		t.Fatalf("ring holds %d bytes (want %d), pool lent %d", f.sent.n, len(msg), tbl.rings.lent)
	}
	// The socket is drained: only the ring can resend.
	if n, _ := recvFlags(f.fd, make([]byte, 10), unix.MSG_PEEK|unix.MSG_DONTWAIT); n > 0 {
		t.Fatalf("%d bytes still queued in the socket", n)
	}
	tbl.rewind(f)
	tbl.push(env.Idx)
	var p packet.Parsed
	if err := p.Decode(env.Last()); err != nil || p.TCP.Seq() != ourSeq+uint32(len(msg))-uint32(len(p.Payload)) ||
		!bytes.Equal(p.Payload, msg[len(msg)-len(p.Payload):]) {
		t.Fatalf("retransmission from the ring: %v seq %d, %d bytes", err, p.TCP.Seq(), len(p.Payload))
	}
	buf := make([]byte, 2000)
	segment(&p, buf, port, nsSeq, ourSeq+uint32(len(msg)), packet.TCPAck, nil)
	tbl.HandleFrame(&p)
	if f.sent.n != 0 || f.sent.buf == nil {
		t.Fatalf("after the ACK: ring holds %d bytes, buffer kept %v", f.sent.n, f.sent.buf != nil)
	}
	tbl.NextTimer() // arms the idle scan
	env.Advance(scanPeriod)
	tbl.Tick()
	if f.sent.buf != nil || tbl.rings.lent != 0 {
		t.Fatalf("idle flow kept its ring: lent %d", tbl.rings.lent)
	}
}
