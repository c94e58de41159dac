package vmsock

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/fileref"
	"golang.org/x/sys/unix"
)

// Listen binds and listens on a unix stream socket at path, for qemu's
// -netdev stream,server=off,addr.type=unix,addr.path=PATH. A socket file
// left by a run that is gone (nobody accepts on it) is replaced; a live
// one, or any other file, is an error.
func Listen(path string) (*Port, error) {
	if err := config.CheckUnixPath("--socket", path); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--socket %q: exists and is not a socket", path)
		}
		if live(path) {
			return nil, fmt.Errorf("--socket %q: another process is listening on it (stop it, or choose another path)", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--socket %q: remove stale socket: %w", path, err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("--socket %q: socket: %w", path, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("--socket %q: bind: %w", path, err)
	}
	if err := unix.Listen(fd, 8); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("--socket %q: listen: %w", path, err)
	}
	p := newPort(fd, -1)
	p.file = fileref.ByPath(path)
	return p, nil
}

// live reports whether something accepts connections on the socket at path.
// The probe is a connection that closes at once, as passt's own: nsgate on
// the other end reads it as ErrSilent and goes on waiting.
func live(path string) bool {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	// ECONNREFUSED: a socket file nobody listens on. Any other error
	// (EACCES, say) is not proof of staleness, but bind will say more.
	return unix.Connect(fd, &unix.SockaddrUnix{Name: path}) == nil
}

// ListenFd returns the listening socket, or -1 for a Port made by FromConn.
func (p *Port) ListenFd() int { return p.ln }

// Connected reports whether a VM is connected.
func (p *Port) Connected() bool { return p.conn >= 0 }

// ErrBusy is returned by Accept when a VM is already connected: the new
// connection was closed.
var ErrBusy = errors.New("a VM is already connected: closed a second connection")

// Accept takes a waiting connection. It returns unix.EAGAIN when there is
// none, and ErrBusy when a VM is already connected (qemu serves one peer
// per netdev; a second qemu on the same socket is a mistake, refused at once
// rather than left hanging).
func (p *Port) Accept() error {
	for {
		fd, _, err := unix.Accept4(p.ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return err
		}
		if p.conn >= 0 {
			unix.Close(fd)
			return ErrBusy
		}
		growBuffers(fd)
		p.conn, p.since = fd, time.Now()
		return nil
	}
}

// Hangup closes the VM's connection and forgets its buffered frames.
func (p *Port) Hangup() {
	if p.conn >= 0 {
		unix.Close(p.conn)
	}
	p.conn = -1
	p.rstart, p.rend, p.wstart, p.wend = 0, 0, 0, 0
	p.readClosed, p.spoke, p.drained = false, false, false
}

// Close hangs up, closes the listening socket and removes its file.
func (p *Port) Close() error {
	p.Hangup()
	if p.ln >= 0 {
		unix.Close(p.ln)
		p.ln = -1
	}
	p.file.Remove()
	return nil
}

// Handoff is what a re-executed nsgate (the sandbox, where the socket's path
// is out of reach) needs to rebuild the Port with FromHandoff. Its
// descriptors must be kept open across exec.
type Handoff struct {
	Listen int // -1: none
	Conn   int // -1: none
	File   fileref.Ref
}

// Handoff returns the Port's descriptors, and a Ref that can remove its
// socket file from the sandbox. The Port stays usable.
func (p *Port) Handoff() (Handoff, error) {
	h := Handoff{Listen: p.ln, Conn: p.conn, File: fileref.Ref{Dir: -1}}
	if p.file.Path != "" {
		r, err := fileref.Open(p.file.Path)
		if err != nil {
			return h, fmt.Errorf("--socket: %w", err)
		}
		h.File = r
	}
	return h, nil
}

// FromHandoff rebuilds a Port from Handoff's descriptors.
func FromHandoff(h Handoff) *Port {
	p := newPort(h.Listen, h.Conn)
	p.file = h.File
	for _, fd := range []int{h.Listen, h.Conn, h.File.Dir} {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	return p
}
