package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/vmsock"
	"golang.org/x/sys/unix"
)

// vmLoop runs the engine on a vmsock.Port listening in a temporary
// directory, as nsgate --socket does. It returns the socket's path, the
// log, and Run's result.
func vmLoop(t *testing.T, cfg Config) (string, *logBuf, chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vm.sock")
	port, err := vmsock.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	log := &logBuf{}
	cfg.Logf = log.printf
	e, err := New(port, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1) // Run's reason, for the test
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		reason, err := e.Run()
		if err != nil {
			reason = "error: " + err.Error()
		}
		done <- reason
	}()
	t.Cleanup(func() {
		e.Stop("test over")
		<-exited
		e.Close()
		port.Close()
	})
	return path, log, done
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(strings.TrimSpace(fmt.Sprintf(format, args...)) + "\n")
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fakeVM is qemu's end of the stream: frames with a 4-byte length.
type fakeVM struct {
	t *testing.T
	c net.Conn
}

func dialVM(t *testing.T, path string) *fakeVM {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeVM{t, c}
}

func (v *fakeVM) send(frame []byte) {
	v.t.Helper()
	if _, err := v.c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame)))); err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.c.Write(frame); err != nil {
		v.t.Fatal(err)
	}
}

// recv returns the next frame, or the error that ended the stream.
func (v *fakeVM) recv(timeout time.Duration) ([]byte, error) {
	v.c.SetReadDeadline(time.Now().Add(timeout))
	var hdr [4]byte
	if _, err := io.ReadFull(v.c, hdr[:]); err != nil {
		return nil, err
	}
	f := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(v.c, f)
	return f, err
}

// recvParsed returns the next frame, decoded, or fails.
func (v *fakeVM) recvParsed() *packet.Parsed {
	v.t.Helper()
	f, err := v.recv(2 * time.Second)
	if err != nil {
		v.t.Fatalf("no frame from nsgate: %v", err)
	}
	var p packet.Parsed
	if err := p.Decode(f); err != nil {
		v.t.Fatalf("undecodable frame: %v", err)
	}
	return &p
}

// closed reports whether nsgate closed the connection.
func (v *fakeVM) closed() bool {
	_, err := v.recv(2 * time.Second)
	return errors.Is(err, io.EOF)
}

func (v *fakeVM) arp(gw packet.Addr) {
	v.t.Helper()
	v.send(arpRequest(gw))
	r := v.recvParsed()
	if r.ARP == nil || r.ARP.Op() != packet.ARPReply || r.ARP.SenderIP() != gw {
		v.t.Fatalf("ARP for the gateway: %+v", r)
	}
}

// TestVMPeer: the engine serves a VM over a stream socket. Frames both
// ways; TCP through the gateway with a checksum the VM can verify (no vnet
// header carries a partial one); a second VM turned away; flows reset when
// the VM leaves; the next VM served; a broken length drops only that
// connection.
func TestVMPeer(t *testing.T) {
	cfg := testConfig(t)
	gw := addr(cfg.Net.Gateway)
	path, log, done := vmLoop(t, cfg)

	vm := dialVM(t, path)
	vm.arp(gw)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	seg := make([]byte, packet.TCPLen)
	packet.TCP(seg).Encode(&packet.TCPFields{SrcPort: 40000, DstPort: port, Seq: 1, Flags: packet.TCPSyn, Window: 1000, HeaderLen: packet.TCPLen})
	packet.TCP(seg).SetChecksum(guestIP, gw)
	vm.send(ipFrame(cfg.MAC, guestIP, gw, packet.ProtoTCP, seg))
	r := vm.recvParsed()
	if r.TCP == nil || r.TCP.Flags() != packet.TCPSyn|packet.TCPAck {
		t.Fatalf("SYN to the host: %+v, want SYN-ACK", r)
	}
	if s := packet.Checksum(r.TCP, packet.PseudoHeaderSum(r.Src, r.Dst, packet.ProtoTCP, len(r.TCP))); s != 0 {
		t.Fatalf("the SYN-ACK's checksum does not verify (residue %#x)", s)
	}
	hostConn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hostConn.Close()

	second := dialVM(t, path)
	if !second.closed() {
		t.Fatal("a second VM was not turned away")
	}

	vm.c.Close()
	hostConn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := hostConn.Read(make([]byte, 1)); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("the host's end of the VM's connection after the VM left: %v, want a reset", err)
	}

	vm = dialVM(t, path)
	vm.arp(gw)
	vm.c.Write([]byte{0, 0, 0, 0})
	if !vm.closed() {
		t.Fatal("a frame of length 0 did not end the connection")
	}
	vm = dialVM(t, path)
	vm.arp(gw)

	select {
	case reason := <-done:
		t.Fatalf("Run returned: %s", reason)
	default:
	}
	for _, want := range []string{"VM connected", "VM disconnected; waiting", "frame length 0", "already connected"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestVMOneOff: with OneOff, Run returns when the VM leaves, but not for a
// connection that never sent a byte (a liveness probe).
func TestVMOneOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.OneOff = true
	path, _, done := vmLoop(t, cfg)
	probe := dialVM(t, path)
	probe.c.Close()
	vm := dialVM(t, path)
	vm.arp(addr(cfg.Net.Gateway))
	select {
	case reason := <-done:
		t.Fatalf("Run returned after a probe: %s", reason)
	default:
	}
	vm.c.Close()
	select {
	case reason := <-done:
		if reason != "VM disconnected" {
			t.Fatalf("Run returned %q", reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when the VM left")
	}
}

// TestVMBacklog: a VM that sends many frames in one write gets every answer,
// though one recv reads more frames than one wake-up handles (Buffered).
func TestVMBacklog(t *testing.T) {
	cfg := testConfig(t)
	path, _, _ := vmLoop(t, cfg)
	vm := dialVM(t, path)
	const n = 600 // over the loop's batch of 256
	var all []byte
	req := arpRequest(addr(cfg.Net.Gateway))
	for range n {
		all = binary.BigEndian.AppendUint32(all, uint32(len(req)))
		all = append(all, req...)
	}
	if _, err := vm.c.Write(all); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := vm.recv(2 * time.Second); err != nil {
			t.Fatalf("answer %d of %d: %v", i+1, n, err)
		}
	}
}

// emfilePeer is a Peer whose listening socket is always readable and whose
// Accept always fails for want of descriptors.
type emfilePeer struct {
	ln      int
	accepts atomic.Int32
}

func (p *emfilePeer) Fd() int                            { return -1 }
func (p *emfilePeer) Headroom() int                      { return 0 }
func (p *emfilePeer) Read([]byte) (int, error)           { return 0, unix.EAGAIN }
func (p *emfilePeer) Write([]byte, packet.Offload) error { return unix.ENOTCONN }
func (p *emfilePeer) ListenFd() int                      { return p.ln }
func (p *emfilePeer) Accept() error                      { p.accepts.Add(1); return unix.EMFILE }
func (p *emfilePeer) Hangup()                            {}

// TestVMAcceptEMFILE: a connection that cannot be accepted (no descriptor
// left) does not spin the loop: the listening socket rests, then is tried
// again.
func TestVMAcceptEMFILE(t *testing.T) {
	ln, err := unix.Eventfd(1, unix.EFD_CLOEXEC) // always readable
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	p := &emfilePeer{ln: ln}
	cfg := testConfig(t)
	log := &logBuf{}
	cfg.Logf = log.printf
	e, err := New(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { e.Run(); close(done) }()
	time.Sleep(acceptPause + acceptPause/2)
	e.Stop("test over")
	<-done
	e.Close()
	if n := p.accepts.Load(); n != 2 {
		t.Fatalf("%d accept calls in 1.5 pauses, want 2 (once, and once after the pause)\n%s", n, log)
	}
	if !strings.Contains(log.String(), "trying again in 1s") {
		t.Fatalf("log: %s", log)
	}
}
