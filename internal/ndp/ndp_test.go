package ndp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

var (
	ourMAC  = packet.MAC{0x52, 0x55, 10, 0, 2, 2}
	nsMAC   = packet.MAC{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	prefix  = a6("fd00::")
	gw      = a6("fd00::2")
	dnsAddr = a6("fd00::3")
	ll      = a6("fe80::2")
	nsLL    = a6("fe80::11:22ff:fe33:4455")
)

func a6(s string) packet.Addr { return packet.AddrFromNetip(netip.MustParseAddr(s)) }

func newRouter() *Router {
	return New(Config{MAC: ourMAC, Prefix: prefix, Gateway: gw, LinkLocal: ll, DNS: dnsAddr, MTU: 65520, Managed: true, Other: true})
}

// icmp6 builds a frame carrying ICMPv6 message msg (checksum filled in)
// from src to dst with hop limit hop.
func icmp6(src, dst packet.Addr, dstMAC packet.MAC, hop uint8, msg []byte) []byte {
	f := make([]byte, packet.EtherLen+packet.IPv6Len+len(msg))
	packet.Ether(f).SetHeader(dstMAC, nsMAC, packet.EtherTypeIPv6)
	packet.IPv6(f[packet.EtherLen:]).Encode(&packet.IPv6Fields{PayloadLen: len(msg), NextHeader: packet.ProtoICMPv6, HopLimit: hop, Src: src, Dst: dst})
	m := packet.ICMP(f[packet.EtherLen+packet.IPv6Len:])
	copy(m, msg)
	m.SetICMPv6Checksum(src, dst)
	return f
}

// ns is a neighbour solicitation for target, with a source link-layer
// option unless src is unspecified (DAD).
func ns(src, target packet.Addr) []byte {
	msg := make([]byte, packet.NDPNeighborLen, packet.NDPNeighborLen+8)
	msg[0] = packet.ICMPv6NeighborSol
	copy(msg[8:], target[:])
	if !src.IsZero() {
		msg = append(msg, packet.NDPOptSourceLL, 1, nsMAC[0], nsMAC[1], nsMAC[2], nsMAC[3], nsMAC[4], nsMAC[5])
	}
	dst := packet.SolicitedNode(target)
	return icmp6(src, dst, packet.MulticastMAC(dst), 255, msg)
}

func handle(t *testing.T, r *Router, frame []byte) (*packet.Parsed, int) {
	t.Helper()
	var p packet.Parsed
	if err := p.Decode(frame); err != nil {
		t.Fatalf("test frame does not decode: %v", err)
	}
	out := make([]byte, 2000)
	n := r.Handle(&p, out)
	if n == 0 {
		return nil, 0
	}
	var reply packet.Parsed
	if err := reply.Decode(out[:n]); err != nil { // checks the ICMPv6 checksum too
		t.Fatalf("reply does not decode: %v", err)
	}
	return &reply, n
}

func TestNeighborSolicitation(t *testing.T) {
	r := newRouter()
	for _, target := range []packet.Addr{gw, dnsAddr, ll} {
		reply, _ := handle(t, r, ns(nsLL, target))
		if reply == nil {
			t.Fatalf("no advertisement for %v", target)
		}
		m := reply.ICMP
		if m.Type() != packet.ICMPv6NeighborAdv || m.NDPTarget() != target || reply.Src != target || reply.Dst != nsLL ||
			reply.DstMAC != nsMAC || reply.SrcMAC != ourMAC || reply.IP6.HopLimit() != 255 {
			t.Fatalf("advertisement for %v: type %d target %v %v > %v", target, m.Type(), m.NDPTarget(), reply.Src, reply.Dst)
		}
		if m[4] != packet.NARouter|packet.NASolicit|packet.NAOverride {
			t.Fatalf("flags %#x", m[4])
		}
		var tll packet.MAC
		m.NDPOptions(packet.NDPNeighborLen, func(typ uint8, body []byte) {
			if typ == packet.NDPOptTargetLL {
				tll = packet.MAC(body[:6])
			}
		})
		if tll != ourMAC {
			t.Fatalf("target link-layer address %v", tll)
		}
	}
	// Someone else's address: silence.
	if reply, _ := handle(t, r, ns(nsLL, a6("fd00::99"))); reply != nil {
		t.Fatal("answered for an address that is not the router's")
	}
	// DAD of the gateway's address: unsolicited, to all nodes.
	reply, _ := handle(t, r, ns(packet.Addr{}, gw))
	if reply == nil || reply.Dst != AllNodes || reply.DstMAC != packet.MulticastMAC(AllNodes) || reply.ICMP[4]&packet.NASolicit != 0 {
		t.Fatalf("DAD answer: %+v", reply)
	}
}

func TestNDPValidation(t *testing.T) {
	r := newRouter()
	good := ns(nsLL, gw)
	for _, c := range []struct {
		name string
		edit func(f []byte) []byte
	}{
		{"hop limit 64 (forwarded)", func(f []byte) []byte {
			m := f[packet.EtherLen+packet.IPv6Len:]
			return icmp6(nsLL, packet.SolicitedNode(gw), packet.MulticastMAC(packet.SolicitedNode(gw)), 64, m)
		}},
		{"code 1", func(f []byte) []byte {
			m := append([]byte(nil), f[packet.EtherLen+packet.IPv6Len:]...)
			m[1] = 1
			return icmp6(nsLL, packet.SolicitedNode(gw), packet.MulticastMAC(packet.SolicitedNode(gw)), 255, m)
		}},
		{"option of length 0", func(f []byte) []byte {
			m := append([]byte(nil), f[packet.EtherLen+packet.IPv6Len:]...)
			m[packet.NDPNeighborLen+1] = 0
			return icmp6(nsLL, packet.SolicitedNode(gw), packet.MulticastMAC(packet.SolicitedNode(gw)), 255, m)
		}},
		{"option past the end", func(f []byte) []byte {
			m := append([]byte(nil), f[packet.EtherLen+packet.IPv6Len:]...)
			m[packet.NDPNeighborLen+1] = 3
			return icmp6(nsLL, packet.SolicitedNode(gw), packet.MulticastMAC(packet.SolicitedNode(gw)), 255, m)
		}},
		{"truncated solicitation", func(f []byte) []byte {
			m := append([]byte(nil), f[packet.EtherLen+packet.IPv6Len:packet.EtherLen+packet.IPv6Len+20]...)
			return icmp6(nsLL, packet.SolicitedNode(gw), packet.MulticastMAC(packet.SolicitedNode(gw)), 255, m)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := r.Dropped
			if reply, _ := handle(t, r, c.edit(good)); reply != nil {
				t.Fatal("answered")
			}
			if r.Dropped != before+1 {
				t.Fatalf("Dropped %d, want %d", r.Dropped, before+1)
			}
		})
	}
}

// checkAdvert checks an advertisement: from fe80::2, M and O set, the
// router lifetime, and the options: source link-layer address, prefix
// (on-link, autonomous), MTU and RDNSS.
func checkAdvert(t *testing.T, reply *packet.Parsed, dst packet.Addr) {
	t.Helper()
	if reply == nil {
		t.Fatal("no advertisement")
	}
	m := reply.ICMP
	if m.Type() != packet.ICMPv6RouterAdv || reply.Src != ll || reply.Dst != dst || reply.IP6.HopLimit() != 255 {
		t.Fatalf("advertisement: %+v", reply)
	}
	if m[5] != packet.RAManaged|packet.RAOther || m[6] != 1800>>8 || m[7] != 1800&0xff {
		t.Fatalf("flags %#x, lifetime % x", m[5], m[6:8])
	}
	seen := map[uint8]bool{}
	ok := m.NDPOptions(packet.NDPRouterAdvLen, func(typ uint8, b []byte) {
		seen[typ] = true
		switch typ {
		case packet.NDPOptSourceLL:
			if packet.MAC(b[:6]) != ourMAC {
				t.Errorf("source LL %v", packet.MAC(b[:6]))
			}
		case packet.NDPOptPrefix:
			if b[0] != 64 || b[1] != 0xc0 || packet.Addr(b[14:30]) != prefix {
				t.Errorf("prefix option % x", b)
			}
		case packet.NDPOptMTU:
			if b[2] != 0 || b[3] != 0 || b[4] != 0xff || b[5] != 0xf0 {
				t.Errorf("MTU option % x", b)
			}
		case packet.NDPOptRDNSS:
			if packet.Addr(b[6:22]) != dnsAddr {
				t.Errorf("RDNSS % x", b)
			}
		}
	})
	if !ok || len(seen) != 4 {
		t.Fatalf("options %v (valid %v)", seen, ok)
	}
}

func TestRouterSolicitation(t *testing.T) {
	r := newRouter()
	rs := []byte{packet.ICMPv6RouterSol, 0, 0, 0, 0, 0, 0, 0, packet.NDPOptSourceLL, 1, 2, 0x11, 0x22, 0x33, 0x44, 0x55}
	allRouters := a6("ff02::2")
	reply, _ := handle(t, r, icmp6(nsLL, allRouters, packet.MulticastMAC(allRouters), 255, rs))
	checkAdvert(t, reply, AllNodes)
	// From :: (no address yet), without options: still answered.
	reply, _ = handle(t, r, icmp6(packet.Addr{}, allRouters, packet.MulticastMAC(allRouters), 255, rs[:8]))
	checkAdvert(t, reply, AllNodes)
	// Forwarded (hop limit below 255): dropped.
	if reply, _ := handle(t, r, icmp6(nsLL, allRouters, packet.MulticastMAC(allRouters), 254, rs)); reply != nil {
		t.Fatal("answered a forwarded solicitation")
	}
}

func TestUnsolicitedAdverts(t *testing.T) {
	r := newRouter()
	out := make([]byte, 2000)
	now := time.Duration(1)
	var times []time.Duration
	for i := 0; i < 5; i++ {
		if next := r.NextTimer(); next > now {
			now = next
		}
		if r.Tick(now-1, out) != 0 {
			t.Fatal("advertised before it was due")
		}
		n := r.Tick(now, out)
		var p packet.Parsed
		if err := p.Decode(out[:n]); err != nil {
			t.Fatalf("advert %d: %v", i, err)
		}
		checkAdvert(t, &p, AllNodes)
		times = append(times, now)
	}
	// Three at start, initialInterval apart, then every Interval.
	for i, want := range []time.Duration{initialInterval, initialInterval, Interval, Interval} {
		if got := times[i+1] - times[i]; got != want {
			t.Fatalf("interval %d: %v, want %v", i, got, want)
		}
	}
}

func TestEcho(t *testing.T) {
	r := newRouter()
	echo := []byte{packet.ICMPv6EchoRequest, 0, 0, 0, 0x12, 0x34, 0, 7, 'h', 'i'}
	for _, dst := range []packet.Addr{gw, dnsAddr, ll} {
		reply, _ := handle(t, r, icmp6(nsLL, dst, ourMAC, 64, echo))
		if reply == nil || reply.ICMP.Type() != packet.ICMPv6EchoReply || reply.Src != dst || reply.Dst != nsLL ||
			reply.ICMP.EchoID() != 0x1234 || reply.ICMP.EchoSeq() != 7 || string(reply.ICMP[8:]) != "hi" {
			t.Fatalf("echo to %v: %+v", dst, reply)
		}
	}
	if reply, _ := handle(t, r, icmp6(nsLL, a6("2001:db8::1"), ourMAC, 64, echo)); reply != nil {
		t.Fatal("answered an echo to another host (the ping sockets' job)")
	}
}

// TestNoDNS: without a DNS address, no RDNSS and no answers for ::3.
func TestNoDNS(t *testing.T) {
	r := New(Config{MAC: ourMAC, Prefix: prefix, Gateway: gw, LinkLocal: ll, MTU: 1500})
	if reply, _ := handle(t, r, ns(nsLL, dnsAddr)); reply != nil {
		t.Fatal("answered for the DNS address with DNS off")
	}
	out := make([]byte, 2000)
	n := r.Advert(out, packet.MAC{}, AllNodes)
	var p packet.Parsed
	if err := p.Decode(out[:n]); err != nil {
		t.Fatal(err)
	}
	p.ICMP.NDPOptions(packet.NDPRouterAdvLen, func(typ uint8, _ []byte) {
		if typ == packet.NDPOptRDNSS {
			t.Fatal("RDNSS without a DNS address")
		}
	})
}

// FuzzHandle feeds hostile ICMPv6 messages to the router: never a crash,
// and every answer decodes.
func FuzzHandle(f *testing.F) {
	f.Add(ns(nsLL, gw)[packet.EtherLen+packet.IPv6Len:], uint8(255))
	f.Add([]byte{packet.ICMPv6RouterSol, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 0x11, 0x22, 0x33, 0x44, 0x55}, uint8(255))
	f.Add([]byte{packet.ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}, uint8(64))
	f.Fuzz(func(t *testing.T, msg []byte, hop uint8) {
		if len(msg) < 4 || len(msg) > 1400 {
			return // the decoder refuses shorter ones (packet's tests)
		}
		r := newRouter()
		for _, dst := range []packet.Addr{gw, packet.SolicitedNode(gw), a6("ff02::2")} {
			frame := icmp6(nsLL, dst, ourMAC, hop, msg)
			var p packet.Parsed
			if p.Decode(frame) != nil {
				continue
			}
			out := make([]byte, 2000)
			if n := r.Handle(&p, out); n > 0 {
				var reply packet.Parsed
				if err := reply.Decode(out[:n]); err != nil {
					t.Fatalf("undecodable answer: %v", err)
				}
			}
		}
	})
}

// TestProxy: in pasta's addressing the router answers for every global
// neighbour but the namespace's own address, and never for duplicate
// address detection or link-local targets it does not own.
func TestProxy(t *testing.T) {
	r := newRouter()
	r.cfg.Proxy, r.cfg.Guest = true, a6("fd00::100")
	guest := a6("fd00::100")
	for _, tt := range []struct {
		name        string
		src, target packet.Addr
		answer      bool
	}{
		{"a neighbour", guest, a6("fd00::99"), true},
		{"the gateway", guest, gw, true},
		{"the namespace's own address", nsLL, guest, false},
		{"duplicate address detection", packet.Addr{}, a6("fd00::99"), false},
		{"a link-local neighbour", guest, a6("fe80::99"), false},
		{"its own source", a6("fd00::99"), a6("fd00::99"), false},
	} {
		reply, _ := handle(t, r, ns(tt.src, tt.target))
		if (reply != nil) != tt.answer {
			t.Errorf("%s: answered = %v, want %v", tt.name, reply != nil, tt.answer)
		}
	}
}
