package tcp

import (
	"math/rand/v2"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Accept opens a forwarded connection: fd is a connection a host client
// made to a forward's listener, and nsgate now opens the same connection
// into the namespace, from client:clientPort (the address the namespace
// sees for that client) to guest:guestPort, by sending the SYN itself.
// Once the namespace answers, the flow is like any other. Accept owns fd;
// if the connection cannot be opened, the client gets a reset.
func (t *Table) Accept(fd int, client packet.Addr, clientPort uint16, guest packet.Addr, guestPort uint16, guestMAC packet.MAC) bool {
	k := flow.Key{NS: guest, Dst: client, NSPort: guestPort, DstPort: clientPort}
	refuse := func(why string) bool {
		t.env.Logf("tcp: forwarded connection from %v:%d to %v:%d: %s", client, clientPort, guest, guestPort, why)
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
		t.Refused++
		return false
	}
	if t.flows.Full() {
		return refuse("flow table full")
	}
	if _, dup := t.flows.Lookup(k); dup {
		// Two host clients that map to the same address and port (say
		// 127.0.0.1:P and 127.0.0.2:P, both the gateway to the namespace).
		return refuse("the namespace already has a connection with that address and port")
	}
	if err := t.tune(fd); err != nil {
		return refuse(err.Error())
	}
	_, f := t.flows.Add(k)
	*f = conn{
		key:      k,
		fd:       fd,
		state:    stSynSent,
		inbound:  true,
		avail:    true, // the client may have spoken already
		nsMAC:    guestMAC,
		iss:      rand.Uint32(),
		wscale:   true, // offered; the SYN-ACK decides
		sack:     true,
		mss:      packet.TCPDefaultMSS,
		rto:      rtoMin,
		lastSeen: t.env.Now(),
		opened:   t.env.Now(),
	}
	f.sndUna, f.sndNxt = f.iss, f.iss+1
	t.Opened++
	t.Inbound++
	t.sendCtl(f, packet.TCPSyn, f.iss)
	t.startTimer(f)
	return true
}

// synSent handles the namespace's answer to the SYN of a forwarded
// connection: a SYN-ACK establishes it, a RST refuses it (the client gets a
// reset too, as if it had reached the server directly).
func (t *Table) synSent(idx int32, p *packet.Parsed) {
	f := t.flows.At(idx)
	seg := p.TCP
	flags := seg.Flags()
	ackOK := flags.Has(packet.TCPAck) && seg.Ack() == f.iss+1
	switch {
	case flags.Has(packet.TCPAck) && !ackOK:
		t.resetFor(p) // not for our SYN (RFC 9293 3.10.7.3)
		return
	case flags.Has(packet.TCPRst):
		if ackOK {
			t.Refused++
			t.abort(idx, false)
		}
		return
	case !flags.Has(packet.TCPSyn) || !ackOK:
		return // a bare SYN (simultaneous open) is not expected here
	}
	o := seg.SynOptions()
	f.mss = t.mss(o, f.key.NS)
	f.wscale, f.nsWScale, f.sack = o.HasWScale, o.WScale, o.SACKPerm
	f.rcvNxt = seg.Seq() + 1
	f.sndUna = f.iss + 1
	f.sndWnd = uint32(seg.Window()) // a SYN's window is never scaled
	f.state = stEstablished
	f.retries = 0
	f.rto = rtoMin
	t.stopTimer(f)
	t.sendCtl(f, packet.TCPAck, f.sndNxt)
	t.push(idx) // the client may have spoken already
	if t.flows.Live(idx) {
		t.update(idx)
	}
}

// Client returns the address the namespace sees for a forward's client
// (nat.Mapper.Client).
func (t *Table) Client(addr packet.Addr) packet.Addr { return t.cfg.NAT.Client(addr) }
