// Package fwd holds nsgate's port forwards: host sockets listening for
// connections and datagrams that go into the namespace (podman's -p, the
// slirp4netns API's add_hostfwd).
//
// The Table is owned by the engine's event loop, like the flow tables: it
// opens and closes the listeners and, when one is ready, hands the accepted
// connection or the waiting datagrams to the engine (Sink), which reflects
// them through the tap with the client's own address.
package fwd

import (
	"errors"
	"fmt"
	"slices"

	"github.com/nsgate/nsgate/internal/publish"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Sink is where the listeners' traffic goes: the engine.
type Sink interface {
	// AcceptTCP takes over fd, a connection accepted for r from
	// client:clientPort.
	AcceptTCP(fd int, client packet.Addr, clientPort uint16, r *publish.Rule)
	// ReadUDP reads the datagrams waiting on fd, r's socket.
	ReadUDP(fd int, r *publish.Rule)
	// Closing is called just before fd, r's socket, is closed.
	Closing(fd int, r *publish.Rule)
}

// ErrNoRule is returned by Remove for an unknown id.
var ErrNoRule = errors.New("no such forward")

// acceptBatch bounds the connections accepted per wake-up, so that a flood
// of connections cannot starve the tap; the rest are taken on the next one.
const acceptBatch = 64

// backlog is the listen queue: a burst of hundreds of clients (a load test,
// a proxy's pool) waits there instead of being refused.
const backlog = 4096

type slot struct {
	rule   publish.Rule
	fd     int
	gen    uint32
	warned bool // an accept error was logged
}

// Table is the set of forwards.
type Table struct {
	env    flow.Env
	sink   Sink
	slots  []slot
	nextID int
	// Accepted counts the TCP connections taken from the listeners.
	Accepted uint64
}

// New returns an empty table. env registers the listeners with the event
// loop, which reports their readiness to HandleEvent.
func New(env flow.Env, sink Sink) *Table {
	return &Table{env: env, sink: sink, nextID: 1}
}

// AddListener adds forward r with fd, a socket Listen opened for it
// earlier (before the sandbox closed the way to the port). The table owns
// fd from now on, even on error.
func (t *Table) AddListener(r publish.Rule, fd int) (int, error) {
	// The guest address is of the host address's family; an IPv6 one may
	// be left for the engine to find (the namespace's own address).
	guestOK := r.GuestAddr.IsValid() && r.GuestAddr.Is4() == r.HostAddr.Is4() || !r.GuestAddr.IsValid() && r.HostAddr.Is6()
	if r.GuestPort == 0 || !guestOK {
		unix.Close(fd)
		return 0, fmt.Errorf("forward %s %s:%d to %s:%d: bad guest address", r.Proto, r.HostAddr, r.HostPort, r.GuestAddr, r.GuestPort)
	}
	idx := -1
	for i := range t.slots {
		if t.slots[i].fd < 0 {
			idx = i
			break
		}
	}
	if idx < 0 {
		t.slots = append(t.slots, slot{fd: -1})
		idx = len(t.slots) - 1
	}
	s := &t.slots[idx]
	s.gen++
	if err := t.env.Watch(fd, unix.EPOLLIN, int32(idx), s.gen, true); err != nil {
		unix.Close(fd)
		return 0, fmt.Errorf("forward %s %s:%d: epoll: %w", r.Proto, r.HostAddr, r.HostPort, err)
	}
	r.ID = t.nextID
	t.nextID++
	s.rule, s.fd, s.warned = r, fd, false
	return r.ID, nil
}

// Listen opens the host socket of r: bound, and listening for TCP.
func Listen(r publish.Rule) (int, error) {
	if r.Proto != "tcp" && r.Proto != "udp" {
		return -1, fmt.Errorf("forward: protocol %q: must be tcp or udp", r.Proto)
	}
	if !r.HostAddr.IsValid() || r.HostAddr.Zone() != "" {
		return -1, fmt.Errorf("forward %s %s:%d: bad host address", r.Proto, r.HostAddr, r.HostPort)
	}
	if r.HostPort == 0 || r.GuestPort == 0 {
		return -1, fmt.Errorf("forward %s: port 0", r.Proto)
	}
	typ := unix.SOCK_STREAM
	if r.Proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	host := packet.AddrFromNetip(r.HostAddr)
	fd, err := unix.Socket(flow.Family(host), typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("forward %s: socket: %w", r.Proto, err)
	}
	if !host.Is4() {
		// [::] takes IPv6 clients only: IPv4 ones come through an IPv4
		// forward, which can then bind the same port on 0.0.0.0, and
		// reach the namespace's IPv4 address as IPv4.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if r.Proto == "tcp" {
		// A restarted nsgate must get its port back while old connections
		// linger in TIME_WAIT. (Not for UDP: there SO_REUSEADDR would let
		// two sockets share the port and split its traffic.)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if r.Iface != "" {
		// pasta's ADDR%IFNAME/PORT: only traffic that arrives there.
		if err := unix.BindToDevice(fd, r.Iface); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("forward %s: bind port %d to interface %q: %w", r.Proto, r.HostPort, r.Iface, err)
		}
	}
	if err := unix.Bind(fd, flow.Sockaddr(host, r.HostPort)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("forward %s: bind %s:%d: %w", r.Proto, r.HostAddr, r.HostPort, err)
	}
	if r.Proto == "tcp" {
		if err := unix.Listen(fd, backlog); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("forward %s: listen on %s:%d: %w", r.Proto, r.HostAddr, r.HostPort, err)
		}
	}
	return fd, nil
}

// Remove closes forward id's listener. Connections already accepted go on.
func (t *Table) Remove(id int) error {
	for i := range t.slots {
		if s := &t.slots[i]; s.fd >= 0 && s.rule.ID == id {
			t.close(s)
			return nil
		}
	}
	return fmt.Errorf("forward id %d: %w", id, ErrNoRule)
}

func (t *Table) close(s *slot) {
	t.sink.Closing(s.fd, &s.rule)
	t.env.Unwatch(s.fd)
	unix.Close(s.fd)
	s.fd = -1
	s.rule = publish.Rule{}
}

// List returns the forwards in the order they were added.
func (t *Table) List() []publish.Rule {
	var out []publish.Rule
	for _, s := range t.slots {
		if s.fd >= 0 {
			out = append(out, s.rule)
		}
	}
	slices.SortFunc(out, func(a, b publish.Rule) int { return a.ID - b.ID })
	return out
}

// Len returns the number of forwards.
func (t *Table) Len() int {
	n := 0
	for _, s := range t.slots {
		if s.fd >= 0 {
			n++
		}
	}
	return n
}

// HandleEvent serves a ready listener.
func (t *Table) HandleEvent(idx int32, gen uint32, events uint32) {
	if int(idx) >= len(t.slots) || t.slots[idx].gen != gen || t.slots[idx].fd < 0 {
		return
	}
	s := &t.slots[idx]
	if s.rule.Proto == "udp" {
		t.sink.ReadUDP(s.fd, &s.rule)
		return
	}
	for i := 0; i < acceptBatch; i++ {
		fd, sa, err := unix.Accept4(s.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			if err != unix.EAGAIN && !s.warned {
				// EMFILE and friends: say so once; the client waits in
				// the backlog and the next event retries.
				s.warned = true
				t.env.Logf("forward %d (%s:%d): accept: %v", s.rule.ID, s.rule.HostAddr, s.rule.HostPort, err)
			}
			return
		}
		var client packet.Addr
		var port uint16
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			client, port = packet.AddrFrom4(sa.Addr), uint16(sa.Port)
		case *unix.SockaddrInet6:
			client, port = packet.Addr(sa.Addr), uint16(sa.Port)
		default:
			unix.Close(fd)
			continue
		}
		t.Accepted++
		t.sink.AcceptTCP(fd, client, port, &s.rule)
	}
}

// Close closes every listener.
func (t *Table) Close() {
	for i := range t.slots {
		if t.slots[i].fd >= 0 {
			t.close(&t.slots[i])
		}
	}
}
