package dhcp6

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/nsgate/nsgate/internal/packet"
)

var (
	testCfg = Config{
		ServerMAC: packet.MAC{0x52, 0x55, 10, 0, 2, 2},
		LinkLocal: netip.MustParseAddr("fe80::2"),
		Prefix:    netip.MustParsePrefix("fd00::/64"),
		DNS:       netip.MustParseAddr("fd00::3"),
	}
	clientMAC = packet.MAC{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	clientLL  = packet.AddrFromNetip(netip.MustParseAddr("fe80::11:22ff:fe33:4455"))
	allAgents = packet.AddrFromNetip(netip.MustParseAddr("ff02::1:2"))
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newServer() (*Server, *clock) {
	s := NewServer(testCfg)
	c := &clock{time.Unix(1_000_000, 0)}
	s.Now = c.now
	return s, c
}

func duid(n byte) dhcpv6.DUID {
	return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 0, 0, 0, 0, n}}
}

// rawFrame wraps payload in UDP/IPv6/Ethernet from the client's link-local
// address to All_DHCP_Relay_Agents_and_Servers, as clients send.
func rawFrame(t testing.TB, payload []byte, src packet.Addr) *packet.Parsed {
	t.Helper()
	n := packet.EtherLen + packet.IPv6Len + packet.UDPLen + len(payload)
	f := make([]byte, n)
	copy(f[n-len(payload):], payload)
	packet.Ether(f).SetHeader(packet.MulticastMAC(allAgents), clientMAC, packet.EtherTypeIPv6)
	packet.IPv6(f[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: packet.UDPLen + len(payload), NextHeader: packet.ProtoUDP, Src: src, Dst: allAgents})
	u := packet.UDP(f[packet.EtherLen+packet.IPv6Len:])
	u.Encode(&packet.UDPFields{SrcPort: ClientPort, DstPort: ServerPort, Length: packet.UDPLen + len(payload)})
	u.SetChecksum(src, allAgents)
	var p packet.Parsed
	if err := p.Decode(f); err != nil {
		t.Fatalf("test frame does not decode: %v", err)
	}
	return &p
}

// msg builds a client message of type typ.
func msg(typ dhcpv6.MessageType, opts ...dhcpv6.Option) *dhcpv6.Message {
	m := &dhcpv6.Message{MessageType: typ, TransactionID: dhcpv6.TransactionID{1, 2, 3}}
	for _, o := range opts {
		m.AddOption(o)
	}
	return m
}

func iaNA(iaid byte, addr string) *dhcpv6.OptIANA {
	ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, iaid}}
	if addr != "" {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(addr)})
	}
	return ia
}

// exchange hands m to s and returns the parsed reply, or nil.
func exchange(t *testing.T, s *Server, m *dhcpv6.Message) *dhcpv6.Message {
	t.Helper()
	out := make([]byte, 2000)
	n := s.Handle(rawFrame(t, m.ToBytes(), clientLL), out)
	if n == 0 {
		return nil
	}
	var p packet.Parsed
	if err := p.Decode(out[:n]); err != nil { // checks the UDP checksum
		t.Fatalf("reply frame does not decode: %v", err)
	}
	if p.Src != packet.AddrFromNetip(testCfg.LinkLocal) || p.Dst != clientLL || p.DstMAC != clientMAC ||
		p.UDP.SrcPort() != ServerPort || p.UDP.DstPort() != ClientPort {
		t.Fatalf("reply %v:%d > %v:%d (%v)", p.Src, p.UDP.SrcPort(), p.Dst, p.UDP.DstPort(), p.DstMAC)
	}
	r, err := dhcpv6.MessageFromBytes(p.Payload)
	if err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if r.TransactionID != m.TransactionID || (m.Options.ClientID() != nil && !r.Options.ClientID().Equal(m.Options.ClientID())) {
		t.Fatalf("reply's transaction %v, client %v", r.TransactionID, r.Options.ClientID())
	}
	if dns := r.Options.DNS(); len(dns) != 1 || !dns[0].Equal(net.ParseIP("fd00::3")) {
		t.Fatalf("DNS %v", dns)
	}
	return r
}

// leased returns the one address of the reply's IA_NA iaid and its status.
func leased(t *testing.T, r *dhcpv6.Message, iaid byte) (string, iana.StatusCode) {
	t.Helper()
	for _, ia := range r.Options.IANA() {
		if ia.IaId != [4]byte{0, 0, 0, iaid} {
			continue
		}
		if st := ia.Options.Status(); st != nil {
			return "", st.StatusCode
		}
		a := ia.Options.OneAddress()
		if a == nil || a.ValidLifetime != ValidLifetime || a.PreferredLifetime != PreferredLifetime || ia.T1 != t1 || ia.T2 != t2 {
			t.Fatalf("IA_NA %v", ia)
		}
		return a.IPv6Addr.String(), iana.StatusSuccess
	}
	t.Fatalf("no IA_NA %d in %v", iaid, r)
	return "", 0
}

func TestStateful(t *testing.T) {
	s, clk := newServer()
	sid := s.serverID
	// Solicit -> Advertise of fd00::100.
	adv := exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(1)), iaNA(1, "")))
	if adv.Type() != dhcpv6.MessageTypeAdvertise || !adv.Options.ServerID().Equal(sid) {
		t.Fatalf("answer to Solicit: %v", adv)
	}
	if a, _ := leased(t, adv, 1); a != "fd00::100" {
		t.Fatalf("advertised %s", a)
	}
	// Another client meanwhile gets the next address: the first is offered.
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(2)), iaNA(1, ""))), 1); a != "fd00::101" {
		t.Fatalf("second client offered %s", a)
	}
	// Request -> Reply, bound.
	rep := exchange(t, s, msg(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100")))
	if a, _ := leased(t, rep, 1); rep.Type() != dhcpv6.MessageTypeReply || a != "fd00::100" {
		t.Fatalf("Reply %v", rep)
	}
	// A day less a minute later, Renew extends it; the offer to client 2 has lapsed.
	clk.t = clk.t.Add(ValidLifetime - time.Minute)
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeRenew, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100"))), 1); a != "fd00::100" {
		t.Fatalf("Renew: %s", a)
	}
	clk.t = clk.t.Add(2 * time.Minute)
	// Rebind (no Server Identifier) too; and a Renew for another client's
	// address is refused with NoBinding.
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeRebind, dhcpv6.OptClientID(duid(1)), iaNA(1, "fd00::100"))), 1); a != "fd00::100" {
		t.Fatalf("Rebind: %s", a)
	}
	if _, st := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeRenew, dhcpv6.OptClientID(duid(3)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100"))), 1); st != iana.StatusNoBinding {
		t.Fatalf("Renew of another's address: status %v", st)
	}
	// Release frees it: a new client gets fd00::100.
	rel := exchange(t, s, msg(dhcpv6.MessageTypeRelease, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100")))
	if st := rel.Options.Status(); st == nil || st.StatusCode != iana.StatusSuccess {
		t.Fatalf("Release: %v", rel)
	}
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(4)), iaNA(1, ""))), 1); a != "fd00::100" {
		t.Fatalf("after Release, offered %s", a)
	}
	// Decline keeps the address out of the pool.
	exchange(t, s, msg(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(duid(4)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100")))
	exchange(t, s, msg(dhcpv6.MessageTypeDecline, dhcpv6.OptClientID(duid(4)), dhcpv6.OptServerID(sid), iaNA(1, "fd00::100")))
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(5)), iaNA(1, ""))), 1); a != "fd00::101" {
		t.Fatalf("after Decline, offered %s", a)
	}
}

func TestRapidCommit(t *testing.T) {
	s, _ := newServer()
	rc := &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit}
	r := exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(1)), iaNA(7, ""), rc))
	if r.Type() != dhcpv6.MessageTypeReply || r.GetOneOption(dhcpv6.OptionRapidCommit) == nil {
		t.Fatalf("rapid commit: %v", r)
	}
	if a, _ := leased(t, r, 7); a != "fd00::100" {
		t.Fatalf("leased %s", a)
	}
	// Bound, not offered: a Renew finds the binding.
	if a, _ := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeRenew, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(s.serverID), iaNA(7, "fd00::100"))), 7); a != "fd00::100" {
		t.Fatalf("Renew: %s", a)
	}
}

func TestPoolExhausted(t *testing.T) {
	s, _ := newServer()
	for i := 0; i < PoolSize; i++ {
		exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(byte(i))), iaNA(1, ""), &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit}))
	}
	if _, st := leased(t, exchange(t, s, msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(200)), iaNA(1, ""))), 1); st != iana.StatusNoAddrsAvail {
		t.Fatalf("status %v, want NoAddrsAvail", st)
	}
}

func TestStatelessAndConfirm(t *testing.T) {
	s, _ := newServer()
	r := exchange(t, s, msg(dhcpv6.MessageTypeInformationRequest))
	if r.Type() != dhcpv6.MessageTypeReply || len(r.Options.IANA()) != 0 {
		t.Fatalf("Information-Request: %v", r)
	}
	c := exchange(t, s, msg(dhcpv6.MessageTypeConfirm, dhcpv6.OptClientID(duid(1)), iaNA(1, "fd00::1234")))
	if st := c.Options.Status(); st == nil || st.StatusCode != iana.StatusSuccess {
		t.Fatalf("Confirm on-link: %v", c)
	}
	c = exchange(t, s, msg(dhcpv6.MessageTypeConfirm, dhcpv6.OptClientID(duid(1)), iaNA(1, "2001:db8::1")))
	if st := c.Options.Status(); st == nil || st.StatusCode != iana.StatusNotOnLink {
		t.Fatalf("Confirm off-link: %v", c)
	}
}

// TestDiscarded: what RFC 8415 section 16 says to discard gets no answer.
func TestDiscarded(t *testing.T) {
	s, _ := newServer()
	other := duid(99)
	for name, m := range map[string]*dhcpv6.Message{
		"Solicit without Client Identifier":  msg(dhcpv6.MessageTypeSolicit, iaNA(1, "")),
		"Solicit with a Server Identifier":   msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(s.serverID)),
		"Request without Server Identifier":  msg(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(duid(1)), iaNA(1, "fd00::100")),
		"Request for another server":         msg(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(other), iaNA(1, "fd00::100")),
		"Renew for another server":           msg(dhcpv6.MessageTypeRenew, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(other), iaNA(1, "fd00::100")),
		"Information-Request for another":    msg(dhcpv6.MessageTypeInformationRequest, dhcpv6.OptServerID(other)),
		"Advertise (a server's message)":     msg(dhcpv6.MessageTypeAdvertise, dhcpv6.OptClientID(duid(1))),
		"Confirm without addresses":          msg(dhcpv6.MessageTypeConfirm, dhcpv6.OptClientID(duid(1))),
		"Release without Client Identifier":  msg(dhcpv6.MessageTypeRelease, dhcpv6.OptServerID(s.serverID)),
		"Decline without Server Identifier":  msg(dhcpv6.MessageTypeDecline, dhcpv6.OptClientID(duid(1))),
		"Rebind with a Server Identifier":    msg(dhcpv6.MessageTypeRebind, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(s.serverID)),
		"Reconfigure (a server's message)":   msg(dhcpv6.MessageTypeReconfigure, dhcpv6.OptClientID(duid(1))),
		"Relay-forward (no relay on a link)": {MessageType: dhcpv6.MessageTypeRelayForward},
	} {
		t.Run(name, func(t *testing.T) {
			if r := exchange(t, s, m); r != nil {
				t.Fatalf("answered: %v", r)
			}
		})
	}
	// Malformed option lengths: the parser refuses them, nothing answers.
	good := msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(1)), iaNA(1, "")).ToBytes()
	for cut := 1; cut < len(good); cut++ {
		b := append([]byte(nil), good[:cut]...)
		if n := s.Handle(rawFrame(t, b, clientLL), make([]byte, 2000)); n != 0 && cut < 4 {
			t.Fatalf("a %d-byte message answered", cut)
		}
	}
	bad := append([]byte(nil), good...)
	bad[5] = 0xff // the first option's length, far past the end
	if n := s.Handle(rawFrame(t, bad, clientLL), make([]byte, 2000)); n != 0 {
		t.Fatal("an option overrunning the message was answered")
	}
	// From a global address outside the prefix: not a client on this link.
	if n := s.Handle(rawFrame(t, good, packet.AddrFromNetip(netip.MustParseAddr("2001:db8::5"))), make([]byte, 2000)); n != 0 {
		t.Fatal("answered a client from off the link")
	}
}

// FuzzHandle feeds hostile DHCPv6 messages to the server: never a crash,
// every answer decodes.
func FuzzHandle(f *testing.F) {
	f.Add(msg(dhcpv6.MessageTypeSolicit, dhcpv6.OptClientID(duid(1)), iaNA(1, "")).ToBytes())
	f.Add(msg(dhcpv6.MessageTypeRequest, dhcpv6.OptClientID(duid(1)), dhcpv6.OptServerID(duid(0)), iaNA(1, "fd00::100")).ToBytes())
	f.Add(msg(dhcpv6.MessageTypeInformationRequest).ToBytes())
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 1400 {
			return
		}
		s, _ := newServer()
		p := rawFrame(t, payload, clientLL)
		for i := 0; i < 2; i++ { // twice: the second sees the first's lease state
			out := make([]byte, 2000)
			if n := s.Handle(p, out); n > 0 {
				var reply packet.Parsed
				if err := reply.Decode(out[:n]); err != nil {
					t.Fatalf("server built an undecodable reply: %v", err)
				}
			}
		}
	})
}
