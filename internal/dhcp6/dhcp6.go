// Package dhcp6 is nsgate's DHCPv6 server for the namespace (RFC 8415):
// stateful IA_NA leases from a pool of the IPv6 prefix (Solicit, Advertise,
// Request, Reply, Renew, Rebind, Release, Decline, Confirm, and Rapid
// Commit), and stateless Information-Request answered with the DNS
// address. passt and pasta have one; slirp4netns has none.
//
// Messages are decoded and encoded with github.com/insomniacslk/dhcp's
// dhcpv6 package, whose parser checks every option length against the
// message. DHCPv6 is control plane: a few messages per client, so the
// library's allocations are acceptable here, unlike on the data path.
package dhcp6

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/nsgate/nsgate/internal/packet"
)

// Ports.
const (
	ClientPort = 546
	ServerPort = 547
)

// PoolSize is the number of addresses leased: prefix::100 and up.
const PoolSize = 32

// poolStart is the interface identifier of the first leased address:
// prefix::100, the address rootlesskit gives a pasta namespace, and clear
// of the router's ::2 and the DNS address's ::3.
const poolStart = 0x100

// Lifetimes. The namespace's network never changes under a running nsgate,
// so leases are long, as the DHCPv4 server's are; T1 and T2 are the
// usual 0.5 and 0.8 of the preferred lifetime.
const (
	ValidLifetime     = 24 * time.Hour
	PreferredLifetime = 24 * time.Hour
	t1                = PreferredLifetime / 2
	t2                = PreferredLifetime * 4 / 5
	// offerTime is how long an advertised address stays reserved for a
	// client that has not requested it yet.
	offerTime = 30 * time.Second
)

// Config is the network the server describes.
type Config struct {
	ServerMAC packet.MAC
	LinkLocal netip.Addr   // the server's address: replies come from it
	Prefix    netip.Prefix // the /64 the pool is in
	DNS       netip.Addr   // invalid: no DNS option (--disable-dns)
}

type state uint8

const (
	free state = iota
	offered
	bound
	declined
)

// lease is one pool address: whose it is (DUID and IAID) and until when.
type lease struct {
	client string
	state  state
	expiry time.Time
}

// Server holds the leases. It is owned by the engine's loop: no locks.
type Server struct {
	cfg      Config
	serverID dhcpv6.DUID
	leases   [PoolSize]lease
	// Now is the clock; tests replace it.
	Now func() time.Time
	// Dropped counts messages refused as malformed or not for this server.
	Dropped uint64
}

// NewServer returns a server for cfg, identified by a DUID-LL of its MAC.
func NewServer(cfg Config) *Server {
	return &Server{
		cfg:      cfg,
		serverID: &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr(cfg.ServerMAC[:])},
		Now:      time.Now,
	}
}

// addr returns pool address i.
func (s *Server) addr(i int) netip.Addr {
	a := s.cfg.Prefix.Addr().As16()
	v := poolStart + i
	a[14], a[15] = byte(v>>8), byte(v)
	return netip.AddrFrom16(a)
}

// index returns the pool index of ip, or -1.
func (s *Server) index(ip net.IP) int {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !s.cfg.Prefix.Contains(a) {
		return -1
	}
	b := a.As16()
	if !bytes.Equal(b[8:14], make([]byte, 6)) {
		return -1
	}
	i := int(b[14])<<8 | int(b[15]) - poolStart
	if i < 0 || i >= PoolSize {
		return -1
	}
	return i
}

func (s *Server) expire(now time.Time) {
	for i := range s.leases {
		if l := &s.leases[i]; l.state != free && now.After(l.expiry) {
			*l = lease{}
		}
	}
}

// find returns the index leased or offered to client, or -1.
func (s *Server) find(client string) int {
	for i, l := range s.leases {
		if (l.state == offered || l.state == bound) && l.client == client {
			return i
		}
	}
	return -1
}

// allocate returns client's address, or the first free one, or -1.
func (s *Server) allocate(client string) int {
	if i := s.find(client); i >= 0 {
		return i
	}
	for i, l := range s.leases {
		if l.state == free {
			return i
		}
	}
	return -1
}

// Handle processes p, a decoded UDP datagram to port 547, and writes the
// reply frame (if any) into out, returning its length. Messages that RFC
// 8415 section 16 says to discard (a missing or foreign Server Identifier,
// a missing Client Identifier, relayed messages) get no answer.
func (s *Server) Handle(p *packet.Parsed, out []byte) int {
	if p.IP6 == nil || p.Src.IsZero() || !p.Src.Is6LinkLocal() && !s.cfg.Prefix.Contains(p.Src.Netip()) {
		s.Dropped++
		return 0 // clients send from their link-local address (RFC 8415 13.1)
	}
	req, err := dhcpv6.MessageFromBytes(p.Payload)
	if err != nil {
		s.Dropped++
		return 0
	}
	cid := req.Options.ClientID()
	sid := req.Options.ServerID()
	typ := req.Type()
	switch typ {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRebind:
		if cid == nil || sid != nil {
			s.Dropped++
			return 0
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if cid == nil || sid == nil || !sid.Equal(s.serverID) {
			s.Dropped++
			return 0
		}
	case dhcpv6.MessageTypeInformationRequest:
		if sid != nil && !sid.Equal(s.serverID) {
			s.Dropped++
			return 0
		}
	default:
		s.Dropped++
		return 0
	}
	now := s.Now()
	s.expire(now)
	resp := &dhcpv6.Message{MessageType: dhcpv6.MessageTypeReply, TransactionID: req.TransactionID}
	if cid != nil {
		resp.AddOption(dhcpv6.OptClientID(cid))
	}
	resp.AddOption(dhcpv6.OptServerID(s.serverID))
	if s.cfg.DNS.IsValid() {
		resp.AddOption(dhcpv6.OptDNS(net.IP(s.cfg.DNS.AsSlice())))
	}
	var duid []byte
	if cid != nil {
		duid = cid.ToBytes()
	}
	switch typ {
	case dhcpv6.MessageTypeSolicit:
		rapid := req.GetOneOption(dhcpv6.OptionRapidCommit) != nil
		if rapid {
			resp.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
		} else {
			resp.MessageType = dhcpv6.MessageTypeAdvertise
		}
		for _, ia := range req.Options.IANA() {
			resp.AddOption(s.assign(ia, duid, rapid, now))
		}
	case dhcpv6.MessageTypeRequest:
		for _, ia := range req.Options.IANA() {
			resp.AddOption(s.assign(ia, duid, true, now))
		}
	case dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		for _, ia := range req.Options.IANA() {
			resp.AddOption(s.extend(ia, duid, now))
		}
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		for _, ia := range req.Options.IANA() {
			client := clientKey(duid, ia.IaId)
			for _, a := range ia.Options.Addresses() {
				if i := s.index(a.IPv6Addr); i >= 0 && s.leases[i].client == client {
					s.leases[i] = lease{}
					if typ == dhcpv6.MessageTypeDecline {
						// In use by someone else: out of the pool for a lease time.
						s.leases[i] = lease{state: declined, expiry: now.Add(ValidLifetime)}
					}
				}
			}
		}
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
	case dhcpv6.MessageTypeConfirm:
		// Whether the client's addresses still fit this link.
		n := 0
		for _, ia := range req.Options.IANA() {
			for _, a := range ia.Options.Addresses() {
				n++
				if ip, ok := netip.AddrFromSlice(a.IPv6Addr); !ok || !s.cfg.Prefix.Contains(ip) {
					resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNotOnLink})
					return s.frame(p, resp, out)
				}
			}
		}
		if n == 0 {
			return 0 // nothing to confirm: no reply (RFC 8415 18.3.3)
		}
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
	case dhcpv6.MessageTypeInformationRequest:
		// Stateless: the DNS option is all there is.
	}
	return s.frame(p, resp, out)
}

// clientKey identifies a binding: the client's DUID and the IA's IAID.
func clientKey(duid []byte, iaid [4]byte) string { return string(duid) + string(iaid[:]) }

// iaReply returns an IA_NA for iaid with address i's lifetimes, or with
// status code st when i < 0.
func (s *Server) iaReply(iaid [4]byte, i int, st iana.StatusCode) *dhcpv6.OptIANA {
	ia := &dhcpv6.OptIANA{IaId: iaid}
	if i < 0 {
		ia.Options.Add(&dhcpv6.OptStatusCode{StatusCode: st})
		return ia
	}
	ia.T1, ia.T2 = t1, t2
	ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.IP(s.addr(i).AsSlice()), PreferredLifetime: PreferredLifetime, ValidLifetime: ValidLifetime})
	return ia
}

// assign offers (bind false) or binds an address for ia.
func (s *Server) assign(ia *dhcpv6.OptIANA, duid []byte, bind bool, now time.Time) *dhcpv6.OptIANA {
	client := clientKey(duid, ia.IaId)
	i := s.allocate(client)
	if i < 0 {
		return s.iaReply(ia.IaId, -1, iana.StatusNoAddrsAvail)
	}
	if bind {
		s.leases[i] = lease{client: client, state: bound, expiry: now.Add(ValidLifetime)}
	} else if s.leases[i].state != bound {
		s.leases[i] = lease{client: client, state: offered, expiry: now.Add(offerTime)}
	}
	return s.iaReply(ia.IaId, i, 0)
}

// extend renews ia's binding. The binding is made again when its address
// is free (nsgate restarted under a running client); an address that is
// another client's, or outside the pool, gets NoBinding, and the client
// starts over with a Solicit.
func (s *Server) extend(ia *dhcpv6.OptIANA, duid []byte, now time.Time) *dhcpv6.OptIANA {
	client := clientKey(duid, ia.IaId)
	a := ia.Options.OneAddress()
	i := -1
	if a != nil {
		i = s.index(a.IPv6Addr)
	}
	if i < 0 || s.leases[i].state != free && s.leases[i].client != client {
		return s.iaReply(ia.IaId, -1, iana.StatusNoBinding)
	}
	s.leases[i] = lease{client: client, state: bound, expiry: now.Add(ValidLifetime)}
	return s.iaReply(ia.IaId, i, 0)
}

// frame writes resp, from the server's link-local address to the client's
// port 546, into out.
func (s *Server) frame(p *packet.Parsed, resp *dhcpv6.Message, out []byte) int {
	payload := resp.ToBytes()
	hdr := packet.EtherLen + packet.IPv6Len + packet.UDPLen
	n := hdr + len(payload)
	if len(out) < n {
		return 0
	}
	copy(out[hdr:], payload)
	src := packet.AddrFromNetip(s.cfg.LinkLocal)
	packet.Ether(out).SetHeader(p.SrcMAC, s.cfg.ServerMAC, packet.EtherTypeIPv6)
	packet.IPv6(out[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: packet.UDPLen + len(payload), NextHeader: packet.ProtoUDP, Src: src, Dst: p.Src})
	u := packet.UDP(out[packet.EtherLen+packet.IPv6Len:])
	u.Encode(&packet.UDPFields{SrcPort: ServerPort, DstPort: p.UDP.SrcPort(), Length: packet.UDPLen + len(payload)})
	u.SetChecksum(src, p.Src)
	return n
}
