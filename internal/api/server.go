package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/fileref"

	"golang.org/x/sys/unix"
)

// Limits on clients. Callers (podman, rootlesskit) send their request as
// soon as they connect, so a client gets readTimeout to send it, and
// writeTimeout to take the reply. The accept loop never waits, so idle
// connections can delay no one; past maxClients, each newcomer cuts the
// client that has waited longest for its request, if it has waited at
// least cutAge (a burst of real requests is not cut).
const (
	maxClients   = 256
	readTimeout  = time.Second
	writeTimeout = 5 * time.Second
	cutAge       = 100 * time.Millisecond
)

// Server is a listening API socket.
type Server struct {
	h    *Handler
	ln   *net.UnixListener
	path string
	file fileref.Ref // the socket file, which Close removes
	wg   sync.WaitGroup
	mu   sync.Mutex
	live map[*net.UnixConn]*client // being served: Close cuts them short
}

// client is a connection being served.
type client struct {
	since   time.Time
	reading bool // still waiting for its request
}

// Listen binds the API socket at path. A socket left at path by an earlier
// run is replaced (slirp4netns does the same); any other file is not.
// Serve answers requests.
func Listen(path string) (*Server, error) {
	if err := config.CheckAPISocket(path); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--api-socket %q: exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--api-socket %q: remove stale socket: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("--api-socket %q: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // Close removes it, sandboxed or not
	return newServer(ln, path, fileref.ByPath(path)), nil
}

func newServer(ln *net.UnixListener, path string, file fileref.Ref) *Server {
	return &Server{ln: ln, path: path, file: file, live: map[*net.UnixConn]*client{}}
}

// Handoff returns what a re-executed nsgate (the sandbox) needs to rebuild
// the server with FromFD: a copy of the listening socket and a Ref to the
// socket file, whose descriptors must be kept open across exec. The Server
// itself is left as it was.
func (s *Server) Handoff() (sock int, file fileref.Ref, err error) {
	// A plain copy of the descriptor, owned by no *os.File whose
	// finalizer could close it.
	rc, err := s.ln.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { sock, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		return -1, fileref.Ref{Dir: -1}, fmt.Errorf("api socket %q: %w", s.path, err)
	}
	file, err = fileref.Open(s.path)
	if err != nil {
		unix.Close(sock)
		return -1, file, fmt.Errorf("api socket: %w", err)
	}
	return sock, file, nil
}

// FromFD rebuilds a server from Handoff's descriptors.
func FromFD(path string, sock int, file fileref.Ref) (*Server, error) {
	f := os.NewFile(uintptr(sock), path)
	l, err := net.FileListener(f)
	f.Close() // FileListener made its own copy
	if err != nil {
		return nil, fmt.Errorf("api socket %q (fd %d): %w", path, sock, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("api socket %q (fd %d): not a unix socket", path, sock)
	}
	ul.SetUnlinkOnClose(false)
	return newServer(ul, path, file), nil
}

// Serve answers clients with h until Close.
func (s *Server) Serve(h *Handler) {
	s.h = h
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.h.logf("api: accept: %v", err)
			time.Sleep(100 * time.Millisecond) // EMFILE and the like: do not spin
			continue
		}
		cl := &client{since: time.Now(), reading: true}
		s.mu.Lock()
		if len(s.live) >= maxClients {
			s.cutOldest()
		}
		s.live[c] = cl
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.live, c)
				s.mu.Unlock()
				s.wg.Done()
			}()
			s.serveConn(c, cl)
		}()
	}
}

// cutOldest ends the read of the client that has waited longest for its
// request, for cutAge at least (s.mu held): past maxClients, a newcomer
// takes the place of an idle connection, which had its chance.
func (s *Server) cutOldest() {
	var oldest *net.UnixConn
	for c, cl := range s.live {
		if cl.reading && time.Since(cl.since) >= cutAge && (oldest == nil || cl.since.Before(s.live[oldest].since)) {
			oldest = c
		}
	}
	if oldest != nil {
		s.live[oldest].reading = false
		_ = oldest.SetReadDeadline(time.Now())
		s.h.logf("api: %d clients connected: closing the one idle longest", maxClients)
	}
}

// serveConn reads one request and writes the reply in one write.
func (s *Server) serveConn(c *net.UnixConn, cl *client) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(readTimeout))
	req, tooLarge := readRequest(c)
	s.mu.Lock()
	cut := !cl.reading
	cl.reading = false
	s.mu.Unlock()
	if t := bytes.TrimSpace(req); cut && (len(t) == 0 || !json.Valid(t)) {
		// Cut short for a newcomer: it had its chance. (A request that
		// came whole as the cut fell is answered still.)
		return
	}
	var reply []byte
	if tooLarge {
		s.h.logf("api: request too large (%d bytes or more)", MaxRequest)
		reply = []byte(errTooLarge)
	} else {
		reply = s.h.Handle(req)
	}
	_ = c.SetDeadline(time.Now().Add(writeTimeout))
	if _, err := c.Write(reply); err != nil {
		s.h.logf("api: write reply: %v", err)
	}
	if tooLarge {
		// Read the rest before closing: closing a unix socket with unread
		// data resets it, and the client could lose the reply.
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
}

// readRequest reads until the client shuts down its side, the bytes so far
// form a whole JSON object (clients that never shut down), MaxRequest bytes
// have come, or the deadline passes.
func readRequest(r io.Reader) (req []byte, tooLarge bool) {
	buf := make([]byte, MaxRequest)
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
		if t := bytes.TrimSpace(buf[:n]); len(t) > 0 && t[len(t)-1] == '}' && json.Valid(t) {
			break
		}
	}
	return buf[:n], n >= len(buf)
}

// Close stops accepting, waits for the clients being served, and removes
// the socket file.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.live {
		_ = c.SetDeadline(time.Now()) // a slow client's read ends now
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.file.Remove()
}
