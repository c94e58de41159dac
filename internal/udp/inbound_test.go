package udp

import (
	"testing"

	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestForwardRoundTripAndAllocs: a datagram to a forward's socket reaches
// the namespace from the client (a loopback client appears as the
// gateway), the namespace's reply goes back to that client from the
// forward's port, neither way allocates, and Forget drops the flow.
func TestForwardRoundTripAndAllocs(t *testing.T) {
	fwdFd, fwdPort := loopbackUDP(t)
	client, clientPort := loopbackUDP(t)
	env := flowtest.New()
	tbl := newTable(env)
	to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(fwdPort)}
	if err := unix.Sendto(client, []byte("question"), 0, to); err != nil {
		t.Fatal(err)
	}
	tbl.ReadForward(fwdFd, nsIP, 40000, nsMAC)
	var r packet.Parsed
	if err := r.Decode(env.Last()); err != nil || string(r.Payload) != "question" ||
		r.Src != gwIP || r.Dst != nsIP || r.UDP.SrcPort() != clientPort || r.UDP.DstPort() != 40000 || r.DstMAC != nsMAC {
		t.Fatalf("datagram to the namespace: %v %+v", err, r)
	}
	var p packet.Parsed
	buf := make([]byte, 2000)
	datagram(&p, buf, gwMAC, gwIP, clientPort, []byte("answer"))
	tbl.HandleFrame(&p)
	tbl.Flush()
	got := make([]byte, 100)
	n, from, err := unix.Recvfrom(client, got, unix.MSG_DONTWAIT)
	if err != nil || string(got[:n]) != "answer" || from.(*unix.SockaddrInet4).Port != int(fwdPort) {
		t.Fatalf("client got %q from %+v, %v; want \"answer\" from port %d", got[:max(n, 0)], from, err, fwdPort)
	}

	toNS := testing.AllocsPerRun(300, func() {
		unix.Sendto(client, []byte("question"), 0, to)
		tbl.ReadForward(fwdFd, nsIP, 40000, nsMAC)
	})
	fromNS := testing.AllocsPerRun(300, func() {
		datagram(&p, buf, gwMAC, gwIP, clientPort, []byte("answer"))
		tbl.HandleFrame(&p)
		tbl.Flush()
	})
	if toNS != 0 || fromNS != 0 {
		t.Fatalf("allocations per forwarded datagram: into the namespace %v, back %v", toNS, fromNS)
	}
	if tbl.Len() != 1 {
		t.Fatalf("%d flows, want 1 (one client)", tbl.Len())
	}
	tbl.Forget(fwdFd)
	if tbl.Len() != 0 {
		t.Fatalf("%d flows after Forget", tbl.Len())
	}
}
