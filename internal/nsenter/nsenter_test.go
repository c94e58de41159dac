package nsenter

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &Conn{fd: fds[0]}, &Conn{fd: fds[1]}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSendRecvFD(t *testing.T) {
	helper, parent := pair(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	if err := helper.SendFD(p[1]); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	fd, err := parent.RecvFD()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// The received descriptor is the pipe's write end, and close-on-exec.
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatalf("received fd does not work: %v", err)
	}
	b := make([]byte, 1)
	if n, _ := unix.Read(p[0], b); n != 1 || b[0] != 'x' {
		t.Fatal("byte did not cross the passed pipe")
	}
	if flags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Error("received fd is not close-on-exec")
	}
}

func TestRecvError(t *testing.T) {
	helper, parent := pair(t)
	helper.SendError(errors.New("join network namespace /proc/1/ns/net: operation not permitted"))
	_, err := parent.RecvFD()
	if err == nil || err.Error() != "join network namespace /proc/1/ns/net: operation not permitted" {
		t.Fatalf("RecvFD error = %v", err)
	}
}

func TestRecvClosed(t *testing.T) {
	helper, parent := pair(t)
	helper.Close()
	if _, err := parent.RecvFD(); err == nil {
		t.Fatal("RecvFD succeeded on a closed socket")
	}
	if _, err := parent.Recv(); err == nil {
		t.Fatal("Recv succeeded on a closed socket")
	}
}

func TestRecvWithoutFD(t *testing.T) {
	helper, parent := pair(t)
	if err := helper.Send('K'); err != nil { // "K" but no descriptor attached
		t.Fatal(err)
	}
	if fd, err := parent.RecvFD(); err == nil {
		unix.Close(fd)
		t.Fatal("RecvFD accepted a message without a descriptor")
	}
}
