// Package dhcp is nsgate's DHCPv4 server for the namespace side of the tap:
// DISCOVER→OFFER, REQUEST→ACK or NAK, RELEASE, DECLINE and INFORM, from a
// pool of 16 addresses starting at network+15, as slirp4netns has it.
//
// Messages are decoded and encoded with github.com/insomniacslk/dhcp, whose
// parser checks every option length against the packet. DHCP is control
// plane: a few messages per client, so the library's allocations are
// acceptable here, unlike on the data path.
package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/nsgate/nsgate/internal/packet"
)

// Ports.
const (
	ServerPort = 67
	ClientPort = 68
)

// PoolSize is the number of addresses leased, as in slirp4netns.
const PoolSize = 16

// LeaseTime is the lease handed out (a day, as libslirp does): the
// namespace's network never changes under a running nsgate.
const LeaseTime = 24 * time.Hour

// offerTime is how long an offered address stays reserved for a client that
// has not requested it yet.
const offerTime = 30 * time.Second

// Config is the network the server describes.
type Config struct {
	ServerMAC packet.MAC
	ServerIP  netip.Addr // the gateway: server identifier and router
	Mask      netip.Addr
	Broadcast netip.Addr
	DNS       netip.Addr // invalid: no DNS option (--disable-dns)
	PoolStart netip.Addr
	MTU       int
}

type state uint8

const (
	free state = iota
	offered
	bound
	declined
)

type lease struct {
	client string // client identifier (option 61), else the MAC
	state  state
	expiry time.Time
}

// Server holds the leases. It is owned by the engine's loop: no locks.
type Server struct {
	cfg    Config
	leases [PoolSize]lease
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// NewServer returns a server for cfg.
func NewServer(cfg Config) *Server {
	return &Server{cfg: cfg, Now: time.Now}
}

func (s *Server) addr(i int) netip.Addr {
	a := s.cfg.PoolStart.As4()
	a[3] += byte(i) // the pool never crosses a /24 boundary: --cidr is at most /25 and starts at +15
	return netip.AddrFrom4(a)
}

func (s *Server) index(ip net.IP) int {
	ip4 := ip.To4()
	if ip4 == nil {
		return -1
	}
	for i := range s.leases {
		if a := s.addr(i).As4(); bytes.Equal(ip4, a[:]) {
			return i
		}
	}
	return -1
}

// expire frees leases past their time.
func (s *Server) expire(now time.Time) {
	for i := range s.leases {
		if l := &s.leases[i]; l.state != free && now.After(l.expiry) {
			*l = lease{}
		}
	}
}

// find returns the lease index held (offered or bound) by client, or -1.
func (s *Server) find(client string) int {
	for i, l := range s.leases {
		if (l.state == offered || l.state == bound) && l.client == client {
			return i
		}
	}
	return -1
}

// allocate returns the client's lease, or the first free address.
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

// Handle processes p, a decoded UDP frame to port 67, and writes the reply
// frame (if any) into out, returning its length.
func (s *Server) Handle(p *packet.Parsed, out []byte) int {
	req, err := dhcpv4.FromBytes(p.Payload)
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest ||
		req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return 0
	}
	if !req.GatewayIPAddr.IsUnspecified() && req.GatewayIPAddr != nil {
		return 0 // relayed: there is no relay on a tap
	}
	client := string(req.ClientHWAddr)
	if id := req.Options.Get(dhcpv4.OptionClientIdentifier); len(id) > 0 {
		client = "id:" + string(id)
	}
	now := s.Now()
	s.expire(now)

	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		i := s.allocate(client)
		if i < 0 {
			return 0 // pool exhausted: stay silent, as servers do
		}
		l := &s.leases[i]
		if l.state != bound {
			*l = lease{client: client, state: offered, expiry: now.Add(offerTime)}
		}
		return s.reply(req, dhcpv4.MessageTypeOffer, s.addr(i), true, out)

	case dhcpv4.MessageTypeRequest:
		return s.request(req, client, now, out)

	case dhcpv4.MessageTypeRelease:
		if i := s.find(client); i >= 0 && s.index(req.ClientIPAddr) == i {
			s.leases[i] = lease{}
		}
		return 0

	case dhcpv4.MessageTypeDecline:
		// The client found the address in use: keep it out of the pool for a
		// lease time.
		if i := s.index(req.RequestedIPAddress()); i >= 0 && s.find(client) == i {
			s.leases[i] = lease{state: declined, expiry: now.Add(LeaseTime)}
		}
		return 0

	case dhcpv4.MessageTypeInform:
		if req.ClientIPAddr.To4() == nil || req.ClientIPAddr.IsUnspecified() {
			return 0
		}
		return s.reply(req, dhcpv4.MessageTypeAck, netip.Addr{}, false, out)
	}
	return 0
}

// request answers a REQUEST in any of its RFC 2131 states.
func (s *Server) request(req *dhcpv4.DHCPv4, client string, now time.Time, out []byte) int {
	sid := req.ServerIdentifier()
	if sid != nil && !sid.Equal(net.IP(s.cfg.ServerIP.AsSlice())) {
		// SELECTING another server's offer: release ours.
		if i := s.find(client); i >= 0 && s.leases[i].state == offered {
			s.leases[i] = lease{}
		}
		return 0
	}
	want := req.RequestedIPAddress() // SELECTING, INIT-REBOOT
	if want == nil {
		want = req.ClientIPAddr // RENEWING, REBINDING
	}
	i := s.index(want)
	if i < 0 || s.find(client) != i {
		// Not an address this server offered or leased to this client.
		return s.reply(req, dhcpv4.MessageTypeNak, netip.Addr{}, false, out)
	}
	s.leases[i] = lease{client: client, state: bound, expiry: now.Add(LeaseTime)}
	return s.reply(req, dhcpv4.MessageTypeAck, s.addr(i), true, out)
}

// reply builds the answer and its UDP/IPv4/Ethernet framing into out.
func (s *Server) reply(req *dhcpv4.DHCPv4, typ dhcpv4.MessageType, yiaddr netip.Addr, withLease bool, out []byte) int {
	server := net.IP(s.cfg.ServerIP.AsSlice())
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	}
	if typ != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(net.IP(yiaddr.AsSlice())),
			dhcpv4.WithServerIP(server),
			dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.IPMask(s.cfg.Mask.AsSlice()))),
			dhcpv4.WithOption(dhcpv4.OptRouter(server)),
			dhcpv4.WithOption(dhcpv4.OptBroadcastAddress(net.IP(s.cfg.Broadcast.AsSlice()))),
			dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(s.cfg.MTU >> 8), byte(s.cfg.MTU)}),
		)
		if s.cfg.DNS.IsValid() {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(net.IP(s.cfg.DNS.AsSlice()))))
		}
		if withLease {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(LeaseTime)))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return 0
	}
	// RFC 2131 4.1: NAKs are broadcast; a client with an address gets
	// unicast to it; otherwise broadcast if the client asked, else unicast
	// to the offered address at the client's MAC.
	var chaddr packet.MAC
	copy(chaddr[:], req.ClientHWAddr)
	dstMAC, dstIP := chaddr, packet.IPv4Broadcast
	ciaddr := req.ClientIPAddr.To4()
	switch {
	case typ == dhcpv4.MessageTypeNak:
		dstMAC = packet.BroadcastMAC
	case ciaddr != nil && !ciaddr.IsUnspecified():
		dstIP = packet.AddrFrom4([4]byte(ciaddr))
	case req.IsBroadcast():
		dstMAC = packet.BroadcastMAC
	default:
		dstIP = packet.AddrFromNetip(yiaddr)
	}
	payload := resp.ToBytes()
	hdr := packet.EtherLen + packet.IPv4Len + packet.UDPLen
	n := hdr + len(payload)
	if len(out) < n {
		return 0
	}
	copy(out[hdr:], payload)
	packet.Ether(out).SetHeader(dstMAC, s.cfg.ServerMAC, packet.EtherTypeIPv4)
	src := packet.AddrFromNetip(s.cfg.ServerIP)
	packet.IPv4(out[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: n - packet.EtherLen, Protocol: packet.ProtoUDP, Src: src, Dst: dstIP})
	u := packet.UDP(out[packet.EtherLen+packet.IPv4Len:])
	u.Encode(&packet.UDPFields{SrcPort: ServerPort, DstPort: ClientPort, Length: packet.UDPLen + len(payload)})
	u.SetChecksum(src, dstIP)
	return n
}
