package engine

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/nsgate/nsgate/internal/publish"

	"github.com/nsgate/nsgate/internal/fwd"
	"github.com/nsgate/nsgate/internal/packet"
)

// fwdSink is the engine as the forward table sees it: accepted connections
// and datagrams go to the TCP and UDP translators.
type fwdSink Engine

func (s *fwdSink) AcceptTCP(fd int, client packet.Addr, clientPort uint16, r *publish.Rule) {
	e := (*Engine)(s)
	guest, ok := e.guestAddr(r)
	if !ok {
		unix.Close(fd) // refused at once, not left waiting
		return
	}
	e.tcp.Accept(fd, e.tcp.Client(client), clientPort, guest, r.GuestPort, e.guestMAC)
}

func (s *fwdSink) ReadUDP(fd int, r *publish.Rule) {
	e := (*Engine)(s)
	guest, ok := e.guestAddr(r)
	if !ok {
		var b [1]byte
		for { // drop what waits: there is nowhere to send it yet
			if _, _, err := unix.Recvfrom(fd, b[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC); err != nil {
				return
			}
		}
	}
	e.udp.ReadForward(fd, guest, r.GuestPort, e.guestMAC)
}

// guestAddr returns where forward r's traffic goes in the namespace: its
// guest address, or for an IPv6 forward without one, the address the
// namespace forms from its MAC by autoconfiguration (what -c sets too).
// ok is false while that MAC is unknown (a VM that has not spoken yet).
func (e *Engine) guestAddr(r *publish.Rule) (packet.Addr, bool) {
	if r.GuestAddr.IsValid() {
		return packet.AddrFromNetip(r.GuestAddr), true
	}
	if g := e.cfg.Net6.Guest; g.IsValid() {
		return packet.AddrFromNetip(g), true // pasta's: set, not formed
	}
	if e.guestMAC == (packet.MAC{}) {
		return packet.Addr{}, false
	}
	return packet.SLAAC(packet.AddrFromNetip(e.cfg.Net6.Prefix.Addr()), e.guestMAC), true
}

func (s *fwdSink) Closing(fd int, r *publish.Rule) {
	if r.Proto == "udp" {
		(*Engine)(s).udp.Forget(fd)
	}
}

// AddForward opens a port forward; a zero GuestAddr means the namespace's
// address. Call it before Run, or on the loop (Do).
func (e *Engine) AddForward(r publish.Rule) (int, error) {
	fd, err := fwd.Listen(r)
	if err != nil {
		return 0, err
	}
	return e.AddForwardFD(r, fd)
}

// AddForwardFD is AddForward with fd, the socket fwd.Listen opened for r.
// The engine owns fd from now on. An IPv6 forward needs -6; without a
// guest address it goes to the namespace's own (guestAddr).
func (e *Engine) AddForwardFD(r publish.Rule, fd int) (int, error) {
	if !r.HostAddr.Is4() && !e.cfg.IPv6 {
		unix.Close(fd)
		return 0, fmt.Errorf("forward %s [%s]:%d: IPv6 forwards need -6 (--enable-ipv6)", r.Proto, r.HostAddr, r.HostPort)
	}
	if !r.GuestAddr.IsValid() && r.HostAddr.Is4() {
		r.GuestAddr = e.cfg.Net.Guest
	}
	return e.fwd.AddListener(r, fd)
}

// ErrStopped is returned by Forwarder calls once the loop has stopped.
var ErrStopped = errors.New("nsgate is shutting down")

// Do runs fn on the loop goroutine and waits for it. It reports false if
// the loop stopped first (fn then did not run, or its end was not seen).
// Any goroutine but the loop's may call it, once Run has started or will.
func (e *Engine) Do(fn func()) bool {
	done := make(chan struct{})
	select {
	case e.ctl <- func() { fn(); close(done) }:
	case <-e.exited:
		return false
	}
	e.wakeLoop()
	select {
	case <-done:
		return true
	case <-e.exited:
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
}

// runCtl runs the work control-plane goroutines queued with Do.
func (e *Engine) runCtl() {
	for {
		select {
		case fn := <-e.ctl:
			fn()
		default:
			return
		}
	}
}

// Forwarder is the engine's forward table for other goroutines (the API
// socket): each call runs on the loop.
type Forwarder struct{ e *Engine }

// Forwarder returns the forward table's thread-safe face.
func (e *Engine) Forwarder() Forwarder { return Forwarder{e} }

// Add opens a forward (see Engine.AddForward).
func (f Forwarder) Add(r publish.Rule) (id int, err error) {
	if !f.e.Do(func() { id, err = f.e.AddForward(r) }) {
		return 0, ErrStopped
	}
	return id, err
}

// Remove closes forward id.
func (f Forwarder) Remove(id int) (err error) {
	if !f.e.Do(func() { err = f.e.fwd.Remove(id) }) {
		return ErrStopped
	}
	return err
}

// List returns the forwards, in the order added.
func (f Forwarder) List() (rules []publish.Rule, err error) {
	if !f.e.Do(func() {
		rules = f.e.fwd.List()
		for i := range rules {
			// An IPv6 forward's guest address as it stands now.
			if a, ok := f.e.guestAddr(&rules[i]); ok && !rules[i].GuestAddr.IsValid() {
				rules[i].GuestAddr = a.Netip()
			}
		}
	}) {
		return nil, ErrStopped
	}
	return rules, nil
}
