package dhcp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/nsgate/nsgate/internal/packet"
)

var testCfg = Config{
	ServerMAC: packet.MAC{0x52, 0x55, 10, 0, 2, 2},
	ServerIP:  netip.AddrFrom4([4]byte{10, 0, 2, 2}),
	Mask:      netip.AddrFrom4([4]byte{255, 255, 255, 0}),
	Broadcast: netip.AddrFrom4([4]byte{10, 0, 2, 255}),
	DNS:       netip.AddrFrom4([4]byte{10, 0, 2, 3}),
	PoolStart: netip.AddrFrom4([4]byte{10, 0, 2, 15}),
	MTU:       65520,
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newServer() (*Server, *clock) {
	s := NewServer(testCfg)
	c := &clock{time.Unix(1_000_000, 0)}
	s.Now = c.now
	return s, c
}

// frame wraps a client message in UDP/IPv4/Ethernet as a client sends it.
func frame(t *testing.T, m *dhcpv4.DHCPv4) *packet.Parsed {
	t.Helper()
	return rawFrame(t, m.ToBytes(), packet.MAC(m.ClientHWAddr))
}

func rawFrame(t *testing.T, payload []byte, src packet.MAC) *packet.Parsed {
	t.Helper()
	n := packet.EtherLen + packet.IPv4Len + packet.UDPLen + len(payload)
	f := make([]byte, n)
	copy(f[n-len(payload):], payload)
	packet.Ether(f).SetHeader(packet.BroadcastMAC, src, packet.EtherTypeIPv4)
	bc := packet.AddrFrom4([4]byte{255, 255, 255, 255})
	zero := packet.AddrFrom4([4]byte{})
	packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: n - packet.EtherLen, Protocol: packet.ProtoUDP, Src: zero, Dst: bc})
	u := packet.UDP(f[packet.EtherLen+packet.IPv4Len:])
	u.Encode(&packet.UDPFields{SrcPort: ClientPort, DstPort: ServerPort, Length: packet.UDPLen + len(payload)})
	u.SetChecksum(zero, bc)
	var p packet.Parsed
	if err := p.Decode(f); err != nil {
		t.Fatalf("test frame does not decode: %v", err)
	}
	return &p
}

// exchange hands m to s and decodes the reply, or returns nil.
func exchange(t *testing.T, s *Server, m *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, *packet.Parsed) {
	t.Helper()
	out := make([]byte, 2000)
	n := s.Handle(frame(t, m), out)
	if n == 0 {
		return nil, nil
	}
	var p packet.Parsed
	if err := p.Decode(out[:n]); err != nil { // checks IPv4 and UDP checksums
		t.Fatalf("reply frame does not decode: %v", err)
	}
	if p.UDP.SrcPort() != ServerPort || p.UDP.DstPort() != ClientPort || p.Src != packet.AddrFromNetip(testCfg.ServerIP) || p.SrcMAC != testCfg.ServerMAC {
		t.Fatalf("reply from %v:%d (%v) to port %d", p.Src, p.UDP.SrcPort(), p.SrcMAC, p.UDP.DstPort())
	}
	r, err := dhcpv4.FromBytes(p.Payload)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return r, &p
}

func mac(last byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, last} }

func discover(t *testing.T, hw net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func requestFor(t *testing.T, offer *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func checkLeaseOptions(t *testing.T, r *dhcpv4.DHCPv4, wantIP string) {
	t.Helper()
	if got := r.YourIPAddr.String(); got != wantIP {
		t.Errorf("yiaddr %s, want %s", got, wantIP)
	}
	if got := net.IP(r.SubnetMask()).String(); got != "255.255.255.0" {
		t.Errorf("subnet mask %s", got)
	}
	if got := r.Router(); len(got) != 1 || got[0].String() != "10.0.2.2" {
		t.Errorf("router %v", got)
	}
	if got := r.DNS(); len(got) != 1 || got[0].String() != "10.0.2.3" {
		t.Errorf("DNS %v", got)
	}
	if got := r.ServerIdentifier(); got.String() != "10.0.2.2" {
		t.Errorf("server identifier %v", got)
	}
	if got := r.IPAddressLeaseTime(0); got != LeaseTime {
		t.Errorf("lease time %v", got)
	}
	if got := r.BroadcastAddress(); got.String() != "10.0.2.255" {
		t.Errorf("broadcast %v", got)
	}
	if got := r.Options.Get(dhcpv4.OptionInterfaceMTU); len(got) != 2 || int(got[0])<<8|int(got[1]) != 65520 {
		t.Errorf("MTU option %v", got)
	}
}

func TestDiscoverRequestAck(t *testing.T) {
	s, _ := newServer()
	d := discover(t, mac(1))
	offer, p := exchange(t, s, d)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("no OFFER: %v", offer)
	}
	if offer.TransactionID != d.TransactionID {
		t.Errorf("xid %v, want %v", offer.TransactionID, d.TransactionID)
	}
	checkLeaseOptions(t, offer, "10.0.2.15")
	// Not broadcast-flagged: unicast to the offered address at chaddr.
	if p.DstMAC != packet.MAC(mac(1)) || p.Dst != (packet.AddrFrom4([4]byte{10, 0, 2, 15})) {
		t.Errorf("OFFER sent to %v/%v", p.DstMAC, p.Dst)
	}
	ack, _ := exchange(t, s, requestFor(t, offer))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("no ACK: %v", ack)
	}
	checkLeaseOptions(t, ack, "10.0.2.15")

	// The same client asking again keeps its address; another gets the next.
	if again, _ := exchange(t, s, discover(t, mac(1))); again.YourIPAddr.String() != "10.0.2.15" {
		t.Errorf("same client re-offered %v", again.YourIPAddr)
	}
	if other, _ := exchange(t, s, discover(t, mac(2))); other.YourIPAddr.String() != "10.0.2.16" {
		t.Errorf("second client offered %v", other.YourIPAddr)
	}
}

func TestBroadcastFlag(t *testing.T) {
	s, _ := newServer()
	_, p := exchange(t, s, discover(t, mac(1), dhcpv4.WithBroadcast(true)))
	if p.DstMAC != packet.BroadcastMAC || p.Dst != (packet.AddrFrom4([4]byte{255, 255, 255, 255})) {
		t.Errorf("broadcast-flagged OFFER sent to %v/%v", p.DstMAC, p.Dst)
	}
}

func TestClientIdentifier(t *testing.T) {
	s, _ := newServer()
	id := dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte("\x01client-a")))
	o1, _ := exchange(t, s, discover(t, mac(1), id))
	exchange(t, s, requestFor(t, o1))
	// Same client id from another MAC: same lease (RFC 2131 4.2).
	if o2, _ := exchange(t, s, discover(t, mac(9), id)); o2.YourIPAddr.String() != "10.0.2.15" {
		t.Errorf("client id not used as the key: offered %v", o2.YourIPAddr)
	}
}

func TestNak(t *testing.T) {
	s, _ := newServer()
	offer, _ := exchange(t, s, discover(t, mac(1)))
	tests := []struct {
		name string
		ip   net.IP
	}{
		{"address not offered", net.IPv4(10, 0, 2, 20)},
		{"outside the pool", net.IPv4(10, 0, 2, 100)},
		{"other network", net.IPv4(192, 168, 1, 15)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := requestFor(t, offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(tt.ip)))
			r, p := exchange(t, s, req)
			if r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
				t.Fatalf("want NAK, got %v", r)
			}
			if p.DstMAC != packet.BroadcastMAC || !r.YourIPAddr.IsUnspecified() {
				t.Errorf("NAK to %v with yiaddr %v", p.DstMAC, r.YourIPAddr)
			}
		})
	}
	// Another client requesting 10.0.2.15 (offered to mac(1)) is refused too.
	req := requestFor(t, offer, dhcpv4.WithHwAddr(mac(2)))
	if r, _ := exchange(t, s, req); r == nil || r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("another client got %v for an address offered to someone else", r)
	}
}

func TestInitRebootAndRenew(t *testing.T) {
	s, _ := newServer()
	offer, _ := exchange(t, s, discover(t, mac(1)))
	exchange(t, s, requestFor(t, offer))
	// INIT-REBOOT: no server id, requested address.
	reboot := requestFor(t, offer, dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier))
	if r, _ := exchange(t, s, reboot); r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INIT-REBOOT: %v", r)
	}
	// RENEWING: ciaddr set, no requested address, unicast reply to ciaddr.
	renew := requestFor(t, offer, dhcpv4.WithoutOption(dhcpv4.OptionServerIdentifier),
		dhcpv4.WithoutOption(dhcpv4.OptionRequestedIPAddress), dhcpv4.WithClientIP(net.IPv4(10, 0, 2, 15)))
	r, p := exchange(t, s, renew)
	if r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("RENEW: %v", r)
	}
	if p.Dst != (packet.AddrFrom4([4]byte{10, 0, 2, 15})) || p.DstMAC != packet.MAC(mac(1)) {
		t.Errorf("RENEW ACK sent to %v/%v", p.DstMAC, p.Dst)
	}
}

func TestOtherServerSelected(t *testing.T) {
	s, _ := newServer()
	offer, _ := exchange(t, s, discover(t, mac(1)))
	req := requestFor(t, offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 0, 2, 99))))
	if r, _ := exchange(t, s, req); r != nil {
		t.Fatalf("answered a REQUEST for another server: %v", r)
	}
	if s.find(string(mac(1))) >= 0 {
		t.Error("offer kept after the client chose another server")
	}
}

func TestReleaseAndReuse(t *testing.T) {
	s, _ := newServer()
	offer, _ := exchange(t, s, discover(t, mac(1)))
	exchange(t, s, requestFor(t, offer))
	rel, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithClientIP(net.IPv4(10, 0, 2, 15)))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := exchange(t, s, rel); r != nil {
		t.Fatalf("RELEASE answered: %v", r)
	}
	if o, _ := exchange(t, s, discover(t, mac(2))); o.YourIPAddr.String() != "10.0.2.15" {
		t.Errorf("released address not reused: %v", o.YourIPAddr)
	}
}

func TestDecline(t *testing.T) {
	s, _ := newServer()
	offer, _ := exchange(t, s, discover(t, mac(1)))
	exchange(t, s, requestFor(t, offer))
	dec, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 2, 15))))
	exchange(t, s, dec)
	if o, _ := exchange(t, s, discover(t, mac(1))); o.YourIPAddr.String() != "10.0.2.16" {
		t.Errorf("declined address offered again: %v", o.YourIPAddr)
	}
}

func TestInform(t *testing.T) {
	s, _ := newServer()
	inf, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeInform), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithClientIP(net.IPv4(10, 0, 2, 100)))
	r, p := exchange(t, s, inf)
	if r == nil || r.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("INFORM: %v", r)
	}
	if !r.YourIPAddr.IsUnspecified() || r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Errorf("INFORM ACK carries a lease: yiaddr %v", r.YourIPAddr)
	}
	if r.Router()[0].String() != "10.0.2.2" || p.Dst != (packet.AddrFrom4([4]byte{10, 0, 2, 100})) {
		t.Errorf("INFORM ACK router %v sent to %v", r.Router(), p.Dst)
	}
}

func TestPoolExhaustionAndExpiry(t *testing.T) {
	s, c := newServer()
	for i := 0; i < PoolSize; i++ {
		o, _ := exchange(t, s, discover(t, mac(byte(i))))
		if o == nil {
			t.Fatalf("client %d got no offer", i)
		}
		if want := net.IPv4(10, 0, 2, byte(15+i)); !o.YourIPAddr.Equal(want) {
			t.Fatalf("client %d offered %v, want %v", i, o.YourIPAddr, want)
		}
	}
	if o, _ := exchange(t, s, discover(t, mac(200))); o != nil {
		t.Fatalf("offered %v from an exhausted pool", o.YourIPAddr)
	}
	c.t = c.t.Add(offerTime + time.Second) // unrequested offers lapse
	if o, _ := exchange(t, s, discover(t, mac(200))); o == nil || o.YourIPAddr.String() != "10.0.2.15" {
		t.Fatalf("expired offer not reused: %v", o)
	}
}

func TestDisableDNS(t *testing.T) {
	cfg := testCfg
	cfg.DNS = netip.Addr{}
	s := NewServer(cfg)
	o, _ := exchange(t, s, discover(t, mac(1)))
	if o.Options.Has(dhcpv4.OptionDomainNameServer) {
		t.Errorf("DNS offered with DNS disabled: %v", o.DNS())
	}
}

// TestHostileOptions feeds option areas whose lengths run past the packet:
// the bug of the seed code, which trusted them.
func TestHostileOptions(t *testing.T) {
	base := discover(t, mac(1)).ToBytes()[:240] // fixed header and magic cookie
	cases := map[string][]byte{
		"length past end":      {53, 200, 1},
		"length byte missing":  {53},
		"message type empty":   {53, 0, 255},
		"message type too big": {53, 4, 1, 1, 1, 1, 255},
		"requested ip short":   {53, 1, 3, 50, 2, 10, 0, 255},
		"client id past end":   {53, 1, 1, 61, 255, 1, 2, 3},
		"no end option":        {53, 1, 1},
		"only pads":            {0, 0, 0, 0},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			s, _ := newServer()
			p := rawFrame(t, append(append([]byte{}, base...), opts...), packet.MAC(mac(1)))
			out := make([]byte, 2000)
			s.Handle(p, out) // must not panic; an answer is allowed only to a sane message
		})
	}
	// A truncated fixed header is ignored outright.
	s, _ := newServer()
	if n := s.Handle(rawFrame(t, base[:100], packet.MAC(mac(1))), make([]byte, 2000)); n != 0 {
		t.Error("answered a truncated BOOTP header")
	}
}

func FuzzHandle(f *testing.F) {
	d, _ := dhcpv4.NewDiscovery(mac(1))
	f.Add(d.ToBytes())
	r, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithHwAddr(mac(1)),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(10, 0, 2, 15))))
	f.Add(r.ToBytes())
	f.Add(append(d.ToBytes()[:240], 53, 200, 1))
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 65000 {
			return
		}
		s, _ := newServer()
		out := make([]byte, 2000)
		p := rawFrame(t, payload, packet.MAC(mac(1)))
		for i := 0; i < 2; i++ { // twice: the second sees the first's lease state
			n := s.Handle(p, out)
			if n == 0 {
				continue
			}
			var reply packet.Parsed
			if err := reply.Decode(out[:n]); err != nil {
				t.Fatalf("server built an undecodable reply: %v", err)
			}
		}
	})
}
