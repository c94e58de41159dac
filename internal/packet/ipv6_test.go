package packet

import (
	"errors"
	"net/netip"
	"testing"
)

var (
	nsIP6 = Addr(netip.MustParseAddr("fd00::5054:ff:fe12:3456").As16())
	gwIP6 = Addr(netip.MustParseAddr("fd00::2").As16())
)

// frame6 builds an IPv6 frame from nsIP6 to gwIP6 whose payload is ext
// (extension headers, already chained) followed by l4, the last header's
// next-header value being proto. If sum, the L4 checksum of ICMPv6, UDP or
// TCP is filled in.
func frame6(ext []byte, proto uint8, l4 []byte, sum bool) []byte {
	f := make([]byte, EtherLen+IPv6Len+len(ext)+len(l4))
	Ether(f).SetHeader(MAC{2, 0, 0, 0, 0, 1}, MAC{2, 0, 0, 0, 0, 2}, EtherTypeIPv6)
	first := proto
	if len(ext) > 0 {
		first = ext[len(ext)-1] // the caller passes the first type last
		ext = ext[:len(ext)-1]
		f = f[:len(f)-1]
	}
	IPv6(f[EtherLen:]).Encode(&IPv6Fields{PayloadLen: len(ext) + len(l4), NextHeader: first, Src: nsIP6, Dst: gwIP6})
	copy(f[EtherLen+IPv6Len:], ext)
	m := f[EtherLen+IPv6Len+len(ext):]
	copy(m, l4)
	if sum {
		off := map[uint8]int{ProtoICMPv6: 2, ProtoUDP: 6, ProtoTCP: 16}[proto]
		m[off], m[off+1] = 0, 0
		s := Checksum(m, PseudoHeaderSum(nsIP6, gwIP6, proto, len(m)))
		m[off], m[off+1] = byte(s>>8), byte(s)
	}
	return f
}

// ext builds an extension header of type-independent layout: next header,
// length in 8-byte units after the first 8, padding.
func ext(next uint8, units int) []byte {
	b := make([]byte, 8*(units+1))
	b[0], b[1] = next, uint8(units)
	return b
}

func chain(first uint8, hdrs ...[]byte) []byte {
	var b []byte
	for _, h := range hdrs {
		b = append(b, h...)
	}
	return append(b, first)
}

func TestDecodeIPv6(t *testing.T) {
	echo := []byte{ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g'}
	udp := []byte{0x9c, 0x40, 0, 53, 0, 12, 0, 0, 'd', 'n', 's', '?'}
	tcp := make([]byte, TCPLen)
	TCP(tcp).Encode(&TCPFields{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: TCPSyn, Window: 65535, HeaderLen: TCPLen})
	nine := chain(ProtoHopByHop)
	for i := 0; i < 9; i++ {
		nine = append(ext(ProtoDestOpts, 0), nine...)
	}
	nine[len(nine)-9] = ProtoUDP // the last header's next: unreachable anyway
	tests := []struct {
		name    string
		frame   []byte
		trusted bool
		err     error
		check   func(*testing.T, *Parsed)
	}{
		{"icmpv6 echo", frame6(nil, ProtoICMPv6, echo, true), false, nil, func(t *testing.T, p *Parsed) {
			if p.Src != nsIP6 || p.Dst != gwIP6 || p.Proto != ProtoICMPv6 || p.ICMP.Type() != ICMPv6EchoRequest || p.IP != nil || len(p.IP6) != IPv6Len+len(echo) {
				t.Fatalf("decoded %v > %v proto %d icmp %v", p.Src, p.Dst, p.Proto, p.ICMP)
			}
		}},
		{"icmpv6 bad checksum", frame6(nil, ProtoICMPv6, echo, false), false, ErrL4Checksum, nil},
		{"icmpv6 short", frame6(nil, ProtoICMPv6, echo[:3], false), false, ErrL4Short, nil},
		{"udp", frame6(nil, ProtoUDP, udp, true), false, nil, func(t *testing.T, p *Parsed) {
			if p.UDP.DstPort() != 53 || string(p.Payload) != "dns?" {
				t.Fatalf("UDP %v payload %q", p.UDP, p.Payload)
			}
		}},
		{"udp zero checksum refused", frame6(nil, ProtoUDP, udp, false), false, ErrL4Checksum, nil},
		{"udp zero checksum, tap", frame6(nil, ProtoUDP, udp, false), true, nil, nil},
		{"tcp", frame6(nil, ProtoTCP, tcp, true), false, nil, func(t *testing.T, p *Parsed) {
			if p.TCP.DstPort() != 80 || p.TCP.Flags() != TCPSyn {
				t.Fatalf("TCP %v", p.TCP)
			}
		}},
		{"hop-by-hop and destination options", frame6(chain(ProtoHopByHop, ext(ProtoDestOpts, 0), ext(ProtoUDP, 1)), ProtoUDP, udp, true), false, nil, func(t *testing.T, p *Parsed) {
			if p.Proto != ProtoUDP || string(p.Payload) != "dns?" {
				t.Fatalf("through extension headers: proto %d payload %q", p.Proto, p.Payload)
			}
		}},
		{"fragment", frame6(chain(ProtoFragment, ext(ProtoUDP, 0)), ProtoUDP, udp, true), false, ErrFragment, nil},
		{"nine extension headers", frame6(nine, ProtoUDP, udp, true), false, ErrExtHeader, nil},
		{"extension header past the end", frame6(chain(ProtoRouting, ext(ProtoUDP, 200)[:8]), ProtoUDP, udp, true), false, ErrExtHeader, nil},
		{"extension header cut short", frame6(chain(ProtoRouting), ProtoUDP, []byte{ProtoUDP, 0, 0}, false), false, ErrExtHeader, nil},
		{"payload length beyond the frame", func() []byte {
			f := frame6(nil, ProtoUDP, udp, true)
			f[EtherLen+ipv6PayloadLen+1]++
			return f
		}(), false, ErrIPv6Len, nil},
		{"padding after the packet trimmed", append(frame6(nil, ProtoICMPv6, echo, true), 0, 0, 0, 0), false, nil, func(t *testing.T, p *Parsed) {
			if len(p.ICMP) != len(echo) {
				t.Fatalf("ICMPv6 view %d bytes, want %d", len(p.ICMP), len(echo))
			}
		}},
		{"version 4 in an IPv6 frame", func() []byte {
			f := frame6(nil, ProtoUDP, udp, true)
			f[EtherLen] = 0x40
			return f
		}(), false, ErrIPVersion, nil},
		{"short header", frame6(nil, ProtoUDP, udp, true)[:EtherLen+IPv6Len-1], false, ErrShort, nil},
		{"icmpv4 inside ipv6", frame6(nil, ProtoICMP, echo, false), false, ErrUnsupported, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			var err error
			if tt.trusted {
				err = p.DecodeTrusted(tt.frame)
			} else {
				err = p.Decode(tt.frame)
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if err == nil && tt.check != nil {
				tt.check(t, &p)
			}
		})
	}
}

func TestDecodeIPv6NoAlloc(t *testing.T) {
	tcp := make([]byte, TCPLen+100)
	TCP(tcp).Encode(&TCPFields{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: TCPAck, Window: 65535, HeaderLen: TCPLen})
	f := frame6(chain(ProtoHopByHop, ext(ProtoTCP, 0)), ProtoTCP, tcp, true)
	var p Parsed
	if n := testing.AllocsPerRun(100, func() {
		if err := p.DecodeTrusted(f); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("IPv6 decode allocates %.1f times", n)
	}
}

func TestEncodeIP(t *testing.T) {
	b := make([]byte, IPv6Len)
	if n := EncodeIP(b, &IPFields{Protocol: ProtoTCP, Src: gwIP6, Dst: nsIP6, L4Len: 1000}); n != IPv6Len {
		t.Fatalf("IPv6 header %d bytes", n)
	}
	ip := IPv6(b)
	if b[0]>>4 != 6 || ip.PayloadLen() != 1000 || ip.NextHeader() != ProtoTCP || ip.HopLimit() != 64 || ip.Src() != gwIP6 || ip.Dst() != nsIP6 {
		t.Fatalf("IPv6 header % x", b)
	}
	if n := EncodeIP(b, &IPFields{Protocol: ProtoUDP, Src: v4(10, 0, 2, 2), Dst: v4(10, 0, 2, 100), L4Len: 8}); n != IPv4Len || IPv4(b).TotalLen() != 28 || Checksum(b[:IPv4Len], 0) != 0 {
		t.Fatalf("IPv4 header % x", b[:IPv4Len])
	}
}

func TestNDPHelpers(t *testing.T) {
	if got, want := SolicitedNode(nsIP6), Addr(netip.MustParseAddr("ff02::1:ff12:3456").As16()); got != want {
		t.Fatalf("solicited-node %v, want %v", got, want)
	}
	if got := MulticastMAC(Addr(netip.MustParseAddr("ff02::1").As16())); got != (MAC{0x33, 0x33, 0, 0, 0, 1}) {
		t.Fatalf("multicast MAC %v", got)
	}
	// Options: a valid source link-layer address, then the walk's refusals.
	msg := make(ICMP, NDPNeighborLen+8)
	w := NDPWriter{B: msg, N: NDPNeighborLen}
	w.LinkLayer(NDPOptSourceLL, MAC{2, 1, 2, 3, 4, 5})
	if mac, ok := msg.SourceLL(NDPNeighborLen); !ok || mac != (MAC{2, 1, 2, 3, 4, 5}) {
		t.Fatalf("source LL %v %v", mac, ok)
	}
	msg[NDPNeighborLen+1] = 0 // length 0: the whole message is dropped
	if _, ok := msg.SourceLL(NDPNeighborLen); ok {
		t.Fatal("an option of length 0 accepted")
	}
	msg[NDPNeighborLen+1] = 2 // 16 bytes, past the end
	if msg.NDPOptions(NDPNeighborLen, func(uint8, []byte) {}) {
		t.Fatal("an option past the end accepted")
	}
	if msg.NDPOptions(len(msg)+1, func(uint8, []byte) {}) {
		t.Fatal("options past the message accepted")
	}
}
