package udp

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestIdleExpiry: a flow only the namespace spoke on goes after 30 s, one
// that was answered after 120 s, as conntrack's UDP timeouts; the socket
// leaves epoll with it.
func TestIdleExpiry(t *testing.T) {
	srv, port := loopbackUDP(t)
	env := flowtest.New()
	tbl := newTable(env)
	var p packet.Parsed
	buf := make([]byte, 2000)
	open := func(srcPort uint16) {
		datagram(&p, buf, gwMAC, gwIP, port, []byte("q"))
		binary.BigEndian.PutUint16(p.UDP[0:2], srcPort) // another flow (nothing checks the sum on this path)
		tbl.HandleFrame(&p)
		tbl.Flush()
	}
	open(40000) // never answered
	open(40001) // answered below
	got := make([]byte, 10)
	for i := 0; i < 2; i++ {
		n, from, err := unix.Recvfrom(srv, got, 0)
		if err != nil || n != 1 {
			t.Fatalf("host read %d, %v", n, err)
		}
		if i == 1 { // the second flow's datagram
			unix.Sendto(srv, []byte("a"), 0, from)
		}
	}
	time.Sleep(10 * time.Millisecond) // the answer crosses the loopback
	tbl.HandleEvent(env.Idx, env.Gen, unix.EPOLLIN)
	if tbl.Len() != 2 || env.Watched != 2 {
		t.Fatalf("%d flows, %d watched", tbl.Len(), env.Watched)
	}
	tbl.NextTimer() // arms the sweep, as the engine's loop does
	env.Advance(unrepliedTimeout + scanPeriod)
	tbl.Tick()
	if tbl.Len() != 1 || env.Watched != 1 {
		t.Fatalf("after %v: %d flows (want the answered one), %d watched", unrepliedTimeout+scanPeriod, tbl.Len(), env.Watched)
	}
	env.Advance(repliedTimeout - unrepliedTimeout)
	tbl.Tick()
	if tbl.Len() != 0 || env.Watched != 0 {
		t.Fatalf("after %v: %d flows, %d watched", repliedTimeout+scanPeriod, tbl.Len(), env.Watched)
	}
}
