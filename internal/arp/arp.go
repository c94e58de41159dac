// Package arp answers the namespace's ARP requests for nsgate's own addresses
// (the gateway and the DNS address) and learns the namespace's MAC addresses.
package arp

import "github.com/nsgate/nsgate/internal/packet"

// Responder answers ARP for a small, fixed set of addresses.
type Responder struct {
	mac   packet.MAC
	addrs []packet.Addr
	// proxy answers for every address but except (AnswerAllBut).
	proxy  bool
	except packet.Addr
	// Neighbors learned from the namespace's ARP traffic: where to send
	// frames addressed to the namespace.
	Neighbors Table
}

// NewResponder answers for addrs with mac.
func NewResponder(mac packet.MAC, addrs ...packet.Addr) *Responder {
	return &Responder{mac: mac, addrs: addrs}
}

// AnswerAllBut makes the responder answer for every address except guest,
// the namespace's own: pasta's addressing, where the namespace shares the
// host's network and its neighbours are all behind nsgate.
func (r *Responder) AnswerAllBut(guest packet.Addr) { r.proxy, r.except = true, guest }

// answers reports whether a request from spa for tpa gets an answer.
// A proxying responder stays quiet about the namespace's own address and
// about announcements (tpa == spa) and probes (spa unspecified), or
// duplicate address detection would fail.
func (r *Responder) answers(spa, tpa packet.Addr) bool {
	if r.owns(tpa) {
		return true
	}
	return r.proxy && tpa != r.except && tpa != spa && !spa.IsUnspecified() && !tpa.IsUnspecified()
}

func (r *Responder) owns(ip packet.Addr) bool {
	for _, a := range r.addrs {
		if a == ip {
			return true
		}
	}
	return false
}

// Handle processes a decoded ARP frame p. If it is a request for one of the
// responder's addresses, it writes the reply frame into out and returns its
// length; otherwise it returns 0. out must hold EtherLen+ARPLen bytes.
// Malformed ARP never reaches here: packet.Decode refuses it.
func (r *Responder) Handle(p *packet.Parsed, out []byte) int {
	a := p.ARP
	sha, spa, tpa := a.SenderMAC(), a.SenderIP(), a.TargetIP()
	// A sender claiming nsgate's own address, or a multicast sender MAC, is
	// neither learned nor answered.
	if r.owns(spa) || sha.IsMulticast() {
		return 0
	}
	if !spa.IsUnspecified() { // 0.0.0.0 is an address probe (RFC 5227)
		r.Neighbors.Learn(spa, sha)
	}
	if a.Op() != packet.ARPRequest || !r.answers(spa, tpa) {
		return 0
	}
	const n = packet.EtherLen + packet.ARPLen
	if len(out) < n {
		return 0
	}
	packet.Ether(out).SetHeader(sha, r.mac, packet.EtherTypeARP)
	packet.ARP(out[packet.EtherLen:]).Encode(&packet.ARPFields{Op: packet.ARPReply, SenderMAC: r.mac, SenderIP: tpa, TargetMAC: sha, TargetIP: spa})
	return n
}

// TableSize is how many neighbors the table keeps. A namespace normally has
// one address on the tap; a few more cover DHCP clients and aliases.
const TableSize = 32

// Table maps the namespace's IPv4 addresses to MACs. It is a fixed array
// with round-robin replacement: no allocation, bounded however many
// addresses a hostile namespace claims.
type Table struct {
	ips  [TableSize]packet.Addr
	macs [TableSize]packet.MAC
	n    int // entries in use
	next int // the entry to replace when full
}

// Learn records that ip is at mac.
func (t *Table) Learn(ip packet.Addr, mac packet.MAC) {
	for i := 0; i < t.n; i++ {
		if t.ips[i] == ip {
			t.macs[i] = mac
			return
		}
	}
	i := t.n
	if t.n < TableSize {
		t.n++
	} else {
		i = t.next
		t.next = (t.next + 1) % TableSize
	}
	t.ips[i], t.macs[i] = ip, mac
}

// Lookup returns the MAC learned for ip.
func (t *Table) Lookup(ip packet.Addr) (packet.MAC, bool) {
	for i := 0; i < t.n; i++ {
		if t.ips[i] == ip {
			return t.macs[i], true
		}
	}
	return packet.MAC{}, false
}
