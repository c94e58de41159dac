package tcp

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/icmp"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// A connection's life on the host side: opening the socket, its epoll
// interest and events, and closing it.

// open handles a SYN for a new connection, or (cookieMSS > 0) the ACK of a
// SYN cookie (cookie.go).
func (t *Table) open(p *packet.Parsed, k flow.Key, cookieMSS int) {
	dst, ok := t.hostAddr(k)
	if !ok {
		if t.cfg.NAT.HostLoopbackDisabled(k.Dst) {
			// As slirp4netns: "Network is unreachable" at once, not a
			// refusal.
			icmp.SendUnreachable(t.env, p, packet.ICMPNetUnreachable, k.Dst, t.cfg.GatewayMAC)
			return
		}
		t.resetFor(p)
		return
	}
	if !t.isDNS(k) && !t.cfg.NAT.Allowed(dst, k.DstPort) {
		// Nothing leaves: the namespace hears at once, as from a
		// firewall, and its connect() fails with "No route to host".
		t.Denied++
		t.env.Logf("tcp: connection to %v:%d denied by the egress policy", dst, k.DstPort)
		icmp.SendUnreachable(t.env, p, packet.ICMPAdminProhibited, t.cfg.NAT.Router(p.Src), t.cfg.GatewayMAC)
		return
	}
	if cookieMSS == 0 && t.half >= t.cfg.MaxHalfOpen {
		if t.env.Now()-t.lastCookie > time.Second {
			// Once per episode: a flood must not pay for a log call per SYN.
			t.env.Logf("tcp: %d connections in their handshake, the limit (a SYN flood?): answering new ones with SYN cookies", t.cfg.MaxHalfOpen)
		}
		t.sendCookie(p, k)
		return
	}
	if t.half >= t.cfg.MaxHalfOpen {
		t.evictHalfOpen() // a cookie's connection takes the oldest handshake's place
	}
	if t.flows.Full() && !(t.half > 0 && t.evictHalfOpen()) {
		t.FlowLimit++
		t.env.Logf("tcp: flow limit reached (%d flows, --max-flows): refusing new connections", t.flows.Max())
		t.resetFor(p)
		return
	}
	dnsNext := uint8(1)
	loaded := t.loaded()
	fd, tuned, err := t.dial(dst, k.DstPort, loaded)
	for err != nil && t.isDNS(k) && int(dnsNext) < len(t.cfg.DNSServers) {
		fd, tuned, err = t.dial(t.cfg.DNSServers[dnsNext], 53, loaded)
		dnsNext++
	}
	if err != nil {
		if !errors.Is(err, unix.ECONNREFUSED) {
			t.env.Logf("tcp: connect to %v:%d: %v", dst, k.DstPort, err)
		}
		t.Refused++
		t.resetFor(p)
		return
	}
	idx, f := t.flows.Add(k)
	seg := p.TCP
	if cookieMSS > 0 {
		// The namespace is established already: no window scaling, no
		// SACK (the cookie cannot carry them).
		*f = conn{key: k, fd: fd, state: stConnecting, cookie: true, nsMAC: p.SrcMAC, rcvNxt: seg.Seq(), iss: seg.Ack() - 1,
			sndWnd: uint32(seg.Window()), mss: min(cookieMSS, t.mtuPayload(k.NS)), rto: rtoMin,
			dnsNext: dnsNext, lastSeen: t.env.Now(), opened: t.env.Now(), loaded: loaded}
		t.CookieFlows++
	} else {
		o := seg.SynOptions()
		*f = conn{
			key:      k,
			fd:       fd,
			state:    stConnecting,
			nsMAC:    p.SrcMAC,
			rcvNxt:   seg.Seq() + 1,
			iss:      rand.Uint32(),
			sndWnd:   uint32(seg.Window()),
			nsWScale: o.WScale,
			wscale:   o.HasWScale,
			sack:     o.SACKPerm,
			dnsNext:  dnsNext,
			mss:      t.mss(o, k.NS),
			rto:      rtoMin,
			lastSeen: t.env.Now(),
			opened:   t.env.Now(),
			loaded:   loaded,
		}
	}
	t.halfOpened(idx, f)
	t.Opened++
	if done, ok := connectDone(fd); done {
		// Loopback connects complete inside connect(): answer now rather
		// than after another trip through epoll, and set the socket's
		// options (unless it came tuned from the pool) after the SYN-ACK,
		// not while the namespace waits for it.
		t.connected(idx, ok)
		if !tuned {
			t.tuneFlow(idx)
		}
		return
	}
	t.update(idx) // EPOLLOUT: connect() completes
	if !f.watched {
		t.remove(idx, true)
		t.resetFor(p)
		return
	}
	if !tuned {
		t.tuneFlow(idx) // while the handshake is under way
	}
}

// tune sets what a connection's socket needs before its first byte
// either way: SO_PEEK_OFF for push's peeks, TCP_NODELAY (the namespace's
// kernel did its Nagle already), keep-alives. It fails only for
// SO_PEEK_OFF, on a kernel the probe at start said has it.
func (t *Table) tune(fd int) error {
	if err := t.peekOff(fd); err != nil {
		return err
	}
	setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	return nil
}

// tuneFlow tunes flow idx's socket, if it still has one, and resets the
// connection if that fails.
func (t *Table) tuneFlow(idx int32) {
	f := t.flows.At(idx)
	if f.fd < 0 {
		return // refused: the flow is gone
	}
	if err := t.tune(f.fd); err != nil {
		t.env.Logf("tcp %v: %v", f.key, err)
		t.abort(idx, true)
	}
}

// connected completes the handshake once the host's connect() finishes;
// ok says the socket reported no error, so that SO_ERROR need not be asked.
func (t *Table) connected(idx int32, ok bool) {
	f := t.flows.At(idx)
	if !ok && connectFailed(f.fd) {
		if t.isDNS(f.key) && int(f.dnsNext) < len(t.cfg.DNSServers) && t.redial(idx) {
			return // the next nameserver
		}
		t.Refused++
		t.abort(idx, true)
		return
	}
	if f.cookie {
		f.state = stEstablished
		t.settled(f)
		f.sndUna, f.sndNxt = f.iss+1, f.iss+1
		t.update(idx)
		return
	}
	f.state = stSynAckSent
	f.sndUna = f.iss
	f.sndNxt = f.iss + 1
	t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
	t.startTimer(f)
	t.update(idx) // host data waits until the namespace completes the handshake
}

// mss returns the largest payload to send to the namespace: what its SYN
// offers, within the tap's MTU, and at least 64 bytes.
func (t *Table) mss(o packet.SynOptions, ns packet.Addr) int {
	return max(min(int(o.MSSOr(packet.TCPDefaultMSS)), t.mtuPayload(ns)), 64)
}

// dial starts a non-blocking connect to addr:port, on a spare socket if
// the pool has one (pool.go); loaded gives it fewer SYN retransmissions
// (budget.go). tuned says the socket came tuned from the pool; if not, the
// caller tunes it (tune).
func (t *Table) dial(addr packet.Addr, port uint16, loaded bool) (fd int, tuned bool, err error) {
	family := flow.Family(addr)
	if fd = t.pool.take(family); fd >= 0 {
		tuned = true
	} else if fd, err = newSocket(family); err != nil {
		return -1, false, err
	}
	if loaded {
		shorten(fd) // SYN retransmissions: before connect()
	}
	if src := t.cfg.Outbound.For(addr); !src.IsZero() {
		if err := unix.Bind(fd, flow.Sockaddr(src, 0)); err != nil {
			unix.Close(fd)
			return -1, false, fmt.Errorf("bind to %s %v: %w", t.cfg.Outbound.Option(addr), src, err)
		}
	}
	err = unix.Connect(fd, flow.Sockaddr(addr, port))
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, false, err
	}
	return fd, tuned, nil
}

// redial replaces a DNS flow's failed socket with one connecting to the
// next nameserver.
func (t *Table) redial(idx int32) bool {
	f := t.flows.At(idx)
	if f.watched {
		t.env.Unwatch(f.fd)
		f.watched = false
	}
	unix.Close(f.fd)
	f.fd = -1
	for int(f.dnsNext) < len(t.cfg.DNSServers) {
		addr := t.cfg.DNSServers[f.dnsNext]
		f.dnsNext++
		fd, tuned, err := t.dial(addr, 53, f.loaded)
		if err == nil && !tuned {
			if err = t.tune(fd); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			continue
		}
		f.fd, f.events = fd, 0
		t.update(idx)
		if f.watched {
			return true
		}
		unix.Close(fd)
		f.fd = -1
	}
	return false
}

// connectDone polls a connecting socket without waiting: done says the
// connect() has completed, ok that it did without an error.
func connectDone(fd int) (done, ok bool) {
	pfd := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(pfd[:], 0)
	if err != nil || n != 1 {
		return false, false
	}
	return true, pfd[0].Revents&(unix.POLLERR|unix.POLLHUP) == 0
}

// connectFailed reports whether the connect() of fd failed (SO_ERROR).
func connectFailed(fd int) bool {
	soErr, e := getInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	return e != 0 || soErr != 0
}

// hostAddr maps a destination in the namespace's view to a host address:
// DNS to the first nameserver, the rest through the NAT rules.
func (t *Table) hostAddr(k flow.Key) (packet.Addr, bool) {
	if t.isDNS(k) {
		return t.cfg.DNSServers[0], true
	}
	return t.cfg.NAT.Host(k.Dst)
}

// isDNS reports whether k is a connection to a DNS relay address.
func (t *Table) isDNS(k flow.Key) bool {
	return len(t.cfg.DNSServers) > 0 && k.DstPort == 53 && !k.Dst.IsZero() && (k.Dst == t.cfg.DNS || k.Dst == t.cfg.DNS6)
}

// update sets the flow's epoll interest. Sockets are watched
// edge-triggered (EPOLLET): the bytes push has peeked at stay in the
// receive queue until the namespace acknowledges them, so a level-triggered
// EPOLLIN would report them again on every wait, and the loop would spin
// for as long as the namespace takes to answer (in a request/response
// exchange, 15 waits, SO_MEMINFO calls and futile peeks per round trip).
// An edge comes with each new segment and with the host's FIN or reset;
// what push cannot take at once (the namespace's window or the flow's ring
// is full) it takes when the namespace's ACK calls it again, and f.avail
// says whether there may be any.
//
// EPOLLOUT is asked for while connect() is under way, and while the socket
// refused bytes or the window advertised is low. Its edge comes only if
// the kernel knows someone waits for space (SOCK_NOSPACE): a refused write
// tells it, and so does the poll that epoll_ctl makes, which is why the
// interest is set again each time the flow starts waiting (outArmed), even
// if EPOLLOUT is in it already. It is taken out of the interest only when
// it fires alone and unneeded (HandleEvent): until the socket runs short
// of space, it never does, and taking it out at once would cost a system
// call per connection.
func (t *Table) update(idx int32) {
	f := t.flows.At(idx)
	if f.state == stSynSent || f.fd < 0 {
		return // the host socket waits until the namespace answers
	}
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET)
	if f.state == stConnecting || f.sendBlocked || f.wndLow {
		ev |= unix.EPOLLOUT
		if !f.outArmed {
			t.watch(idx, f, ev)
			return
		}
	}
	if f.watched && (ev == f.events || ev|unix.EPOLLOUT == f.events) {
		return
	}
	t.watch(idx, f, ev)
}

// watch sets the flow's epoll interest to ev.
func (t *Table) watch(idx int32, f *conn, ev uint32) {
	if err := t.env.Watch(f.fd, ev, idx, t.flows.Gen(idx), !f.watched); err != nil {
		t.env.Logf("tcp %v: epoll: %v", f.key, err)
		return
	}
	f.events, f.watched = ev, true
	f.outArmed = ev&unix.EPOLLOUT != 0
}

// HandleEvent processes readiness of flow idx's host socket.
func (t *Table) HandleEvent(idx int32, gen uint32, events uint32) {
	f := t.flows.Event(idx, gen)
	if f == nil || f.fd < 0 {
		return // the flow went away earlier in this batch
	}
	f.lastSeen = t.env.Now()
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		f.avail = true // new bytes, or the end of them
	}
	if events&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		f.rdhup = true // its edge has come: push must read on to EOF
	}
	if f.state == stConnecting {
		t.connected(idx, events&(unix.EPOLLERR|unix.EPOLLHUP) == 0)
		return
	}
	if events&unix.EPOLLERR != 0 {
		if soErr, _ := getInt(f.fd, unix.SOL_SOCKET, unix.SO_ERROR); soErr != 0 {
			t.abort(idx, true)
			return
		}
	}
	if events&unix.EPOLLOUT != 0 {
		f.outArmed = false
		switch {
		case f.sendBlocked || f.wndLow:
			t.writable(idx, f)
		case events == unix.EPOLLOUT:
			// Alone and unneeded: the socket ran short of space once
			// and has room again. Stop asking.
			t.watch(idx, f, f.events&^unix.EPOLLOUT)
		}
	}
	if f.avail {
		t.push(idx)
		if t.flows.At(idx).fd < 0 {
			return
		}
	}
	if t.done(idx) {
		return
	}
	t.update(idx)
}

// writable handles EPOLLOUT on a socket that refused bytes, or whose
// window was advertised low: the socket drained. It tells the namespace at
// once, and if bytes were refused, makes it resend them now rather than
// after its RTO.
func (t *Table) writable(idx int32, f *conn) {
	f.sendBlocked = false
	f.mem.stale()
	t.sendCtl(f, packet.TCPAck, f.sndNxt)
	if f.wndLow {
		// Writable, yet the window is still shut (skb overhead): stop
		// asking epoll, and let the timer look again.
		f.wndLow = false
		t.setRecheck(idx, f, true)
	}
	if f.dropped {
		f.dropped = false
		for i := 0; i < 3; i++ {
			t.sendCtl(f, packet.TCPAck, f.sndNxt)
		}
	}
}

// done removes a flow closed both ways and acknowledged; it reports whether
// it did.
func (t *Table) done(idx int32) bool {
	f := t.flows.At(idx)
	if f.nsFin && f.finSent && f.sndUna == f.sndNxt {
		if f.ackPending {
			t.sendCtl(f, packet.TCPAck, f.sndNxt) // the ACK of the namespace's FIN
		}
		t.remove(idx, false)
		return true
	}
	return false
}

// abort resets the connection both ways. toNS sends a RST to the namespace;
// the host side always gets one (SO_LINGER 0).
func (t *Table) abort(idx int32, toNS bool) {
	f := t.flows.At(idx)
	if toNS {
		seq := f.sndNxt
		if f.state == stConnecting && !f.cookie {
			seq = 0 // refusing the SYN: the RST acknowledges it
		}
		if f.cookie && f.state == stConnecting {
			seq = f.iss + 1 // the namespace believes it established
		}
		if f.state == stSynSent {
			seq = f.iss + 1 // withdrawing our SYN
		}
		t.sendCtl(f, packet.TCPRst|packet.TCPAck, seq)
	}
	t.Resets++
	t.remove(idx, true)
}

// Reset closes every flow, the host's ends with a RST, and sends nothing to
// the namespace: the VM behind it has gone (see engine.Peer).
func (t *Table) Reset() {
	for idx := range t.flows.All {
		t.Resets++
		t.remove(idx, true)
	}
}

// remove closes the flow's socket and frees its slot. rst makes the close
// abortive, so that the host peer sees a reset, not an orderly end.
func (t *Table) remove(idx int32, rst bool) {
	f := t.flows.At(idx)
	if f.fd < 0 {
		return
	}
	// Closing the socket takes it out of epoll: nsgate holds no other
	// descriptor for it. Bytes left unread would make the close a reset.
	if rst {
		unix.SetsockoptLinger(f.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	} else {
		t.discardAcked(f)
	}
	unix.Close(f.fd)
	t.settled(f)
	t.stopTimer(f)
	t.setRecheck(idx, f, false)
	t.rings.release(&f.sent)
	t.flows.Remove(idx)
}
