package tcp

import (
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestSocketPool: once a connection has used IPv4, Idle keeps poolSize
// tuned IPv4 sockets and none of IPv6; the next SYN connects on one of them
// (its options intact after connect), and bytes cross it both ways; Close
// closes what is left.
func TestSocketPool(t *testing.T) { sendPaths(t, testSocketPool) }

func testSocketPool(t *testing.T, noPeekOff bool) {
	tbl, env, _, _, _ := established(t, noPeekOff)
	t.Cleanup(tbl.Close)
	if n := tbl.spare(hostLoopback()); n != 0 {
		t.Fatalf("%d spare sockets before the loop was idle", n)
	}
	for range poolSize + 2 {
		tbl.Idle()
	}
	if n, n6 := tbl.spare(hostLoopback()), tbl.spare(packet.Addr{15: 1}); n != poolSize || n6 != 0 {
		t.Fatalf("spare sockets: %d IPv4 (want %d), %d IPv6 (want 0: no IPv6 connection yet)", n, poolSize, n6)
	}
	spares := append([]int(nil), tbl.pool.fds[0][:poolSize]...)
	for _, fd := range spares {
		assertTuned(t, fd, noPeekOff)
	}

	// A second connection, from another port, to a second server.
	l, port := loopbackServer(t)
	var p packet.Parsed
	buf := make([]byte, 2000)
	segment(&p, buf, port, 5000, 0, packet.TCPSyn, nil)
	binary16(p.TCP[0:2], 40001)
	tbl.HandleFrame(&p)
	var synAck packet.Parsed
	if err := synAck.Decode(env.Last()); err != nil || synAck.TCP.Flags() != packet.TCPSyn|packet.TCPAck || synAck.TCP.DstPort() != 40001 {
		t.Fatalf("no SYN-ACK for the second connection: %v %v", err, synAck.TCP.Flags())
	}
	if n := tbl.spare(hostLoopback()); n != poolSize-1 {
		t.Fatalf("%d spare sockets after a connection took one, want %d", n, poolSize-1)
	}
	idx := env.Idx
	f := tbl.flows.At(idx)
	if f.fd != spares[poolSize-1] {
		t.Fatalf("the connection's socket is fd %d, not the spare %d", f.fd, spares[poolSize-1])
	}
	assertTuned(t, f.fd, noPeekOff) // the options survive connect()

	segment(&p, buf, port, 5001, synAck.TCP.Seq()+1, packet.TCPAck|packet.TCPPsh, []byte("ping"))
	binary16(p.TCP[0:2], 40001)
	tbl.HandleFrame(&p)
	tbl.Flush(false)
	c, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	got := make([]byte, 16)
	if n, err := unix.Read(c, got); err != nil || string(got[:n]) != "ping" {
		t.Fatalf("the host read %q, %v", got[:max(n, 0)], err)
	}
	unix.Write(c, []byte("pong"))
	time.Sleep(10 * time.Millisecond)
	tbl.HandleEvent(idx, env.Gen, unix.EPOLLIN)
	var data packet.Parsed
	if err := data.Decode(env.Last()); err != nil || string(data.Payload) != "pong" {
		t.Fatalf("to the namespace: %v %q", err, data.Payload)
	}

	tbl.Close()
	for _, fd := range spares[:poolSize-1] {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Errorf("spare fd %d still open after Close: %v", fd, err)
		}
	}
	if n := tbl.spare(hostLoopback()); n != 0 {
		t.Errorf("%d spare sockets after Close", n)
	}
}

// TestSocketPoolRefillFails: when no socket can be made (the descriptor
// limit), the pool stays short and stops trying until a connection asks
// the family's pool again (take, which finds it empty); the next Idle then
// makes one.
func TestSocketPoolRefillFails(t *testing.T) {
	tbl, _, _, _, _ := established(t, kernelNoPeekOff())
	t.Cleanup(tbl.Close)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// The lowest free descriptor: with the limit there, none can be made.
	lowest, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(lowest)
	low := lim
	low.Cur = uint64(lowest)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	tbl.Idle()
	used := tbl.pool.used[0]
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if n := tbl.spare(hostLoopback()); n != 0 || used {
		t.Fatalf("after EMFILE: %d spare sockets, refills still on: %v", n, used)
	}
	tbl.Idle()
	if n := tbl.spare(hostLoopback()); n != 0 {
		t.Fatalf("the pool refilled (%d) with no connection since the failure", n)
	}
	if fd := tbl.pool.take(unix.AF_INET); fd != -1 || !tbl.pool.used[0] {
		t.Fatalf("take from an empty pool: fd %d, refills on: %v", fd, tbl.pool.used[0])
	}
	tbl.Idle()
	if n := tbl.spare(hostLoopback()); n != 1 {
		t.Fatalf("%d spare sockets after a connection asked again, want 1", n)
	}
}
