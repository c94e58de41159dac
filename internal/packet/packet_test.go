package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"strconv"
	"testing"
)

// refChecksum is RFC 1071 written the obvious way, 16 bits at a time with
// end-around carry: the independent implementation Checksum is held to.
func refChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
		s = (s & 0xffff) + s>>16
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
		s = (s & 0xffff) + s>>16
	}
	return ^uint16(s)
}

func TestChecksumKnownVectors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want uint16
	}{
		// An IPv4 header with its checksum field zeroed; the sum is the
		// textbook example's 0xb861.
		{"ipv4 header", []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}, 0xb861},
		// RFC 1071 section 3's example words 0001 f203 f4f5 f6f7 sum to ddf2.
		{"rfc1071", []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, ^uint16(0xddf2)},
		{"empty", nil, 0xffff},
		{"odd", []byte{0xab}, ^uint16(0xab00)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Checksum(tt.b, 0); got != tt.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tt.want)
			}
		})
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for n := 0; n < 2000; n++ {
		size := r.Intn(200)
		if n%100 == 0 {
			size = 65535 + r.Intn(20) // big enough to stress the carries
		}
		b := make([]byte, size)
		r.Read(b)
		if n%7 == 0 {
			for i := range b {
				b[i] = 0xff
			}
		}
		if got, want := Checksum(b, 0), refChecksum(b); got != want {
			t.Fatalf("len %d: Checksum = %#04x, reference = %#04x", size, got, want)
		}
		// With a running sum (a pseudo header's, or any 32-bit partial
		// sum): the reference adds it folded.
		acc := r.Uint32()
		want := ^Fold(uint32(^refChecksum(b)) + uint32(Fold(acc)))
		if got := Checksum(b, acc); got != want {
			t.Fatalf("len %d, initial %#x: Checksum = %#04x, reference = %#04x", size, acc, got, want)
		}
	}
	// Every tail length (the 32-byte steps, the 8-byte steps, the
	// zero-padded rest) at every alignment.
	buf := make([]byte, 80)
	r.Read(buf)
	for off := 0; off < 8; off++ {
		for n := 0; n <= 70; n++ {
			b := buf[off : off+n]
			if got, want := Checksum(b, 0), refChecksum(b); got != want {
				t.Fatalf("offset %d len %d: Checksum = %#04x, reference = %#04x", off, n, got, want)
			}
		}
	}
}

// Summing in pieces of even length is summing the whole.
func TestSumPieces(t *testing.T) {
	b := make([]byte, 1000)
	rand.New(rand.NewSource(2)).Read(b)
	for cut := 0; cut <= len(b); cut += 2 {
		if got, want := Fold(Sum(b[cut:], Sum(b[:cut], 0))), Fold(Sum(b, 0)); got != want {
			t.Fatalf("cut at %d: %#04x, whole: %#04x", cut, got, want)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	src, dst := v4(10, 0, 2, 15), v4(10, 0, 2, 2)
	udp := []byte{0x00, 0x44, 0x00, 0x43, 0x00, 0x0a, 0x00, 0x00, 0xde, 0xad}
	// The reference: checksum over an explicit pseudo header followed by the segment.
	ph := append([]byte{10, 0, 2, 15, 10, 0, 2, 2, 0, ProtoUDP, 0, byte(len(udp))}, udp...)
	if got, want := Checksum(udp, PseudoHeaderSum(src, dst, ProtoUDP, len(udp))), refChecksum(ph); got != want {
		t.Fatalf("pseudo header checksum = %#04x, want %#04x", got, want)
	}
}

// frames builds test frames with valid checksums.
func ipv4Frame(proto uint8, l4 []byte) []byte {
	f := make([]byte, EtherLen+IPv4Len+len(l4))
	Ether(f).SetHeader(MAC{0x52, 0x55, 10, 0, 2, 2}, MAC{2, 0, 0, 0, 0, 1}, EtherTypeIPv4)
	copy(f[EtherLen+IPv4Len:], l4)
	IPv4(f[EtherLen:]).Encode(&IPv4Fields{TotalLen: IPv4Len + len(l4), ID: 7, Protocol: proto, Src: v4(10, 0, 2, 100), Dst: v4(10, 0, 2, 2)})
	return f
}

func icmpEcho() []byte {
	m := make([]byte, ICMPEchoLen+4)
	binary.BigEndian.PutUint16(m[4:], 0x1234)
	binary.BigEndian.PutUint16(m[6:], 1)
	copy(m[8:], "ping")
	ICMP(m).SetTypeCode(ICMPEchoRequest, 0)
	return ipv4Frame(ProtoICMP, m)
}

func udpFrame(payload string) []byte {
	u := make([]byte, UDPLen+len(payload))
	copy(u[UDPLen:], payload)
	f := ipv4Frame(ProtoUDP, u)
	h := UDP(f[EtherLen+IPv4Len:])
	h.Encode(&UDPFields{SrcPort: 68, DstPort: 67, Length: len(u)})
	h.SetChecksum(v4(10, 0, 2, 100), v4(10, 0, 2, 2))
	return f
}

func arpFrame() []byte {
	f := make([]byte, EtherLen+ARPLen)
	Ether(f).SetHeader(BroadcastMAC, MAC{2, 0, 0, 0, 0, 1}, EtherTypeARP)
	ARP(f[EtherLen:]).Encode(&ARPFields{Op: ARPRequest, SenderMAC: MAC{2, 0, 0, 0, 0, 1}, SenderIP: v4(10, 0, 2, 100), TargetIP: v4(10, 0, 2, 2)})
	return f
}

// v4 is the IPv4 address a.b.c.d.
func v4(a, b, c, d byte) Addr { return AddrFrom4([4]byte{a, b, c, d}) }

// tcpFrame is a segment from 10.0.2.100:40000 to 10.0.2.2:80 with a valid
// checksum; a SYN carries MSS 1460, window scale 7 and SACK-permitted.
func tcpFrame(flags TCPFlags, payload string) []byte {
	th := TCPLen
	if flags.Has(TCPSyn) {
		th += TCPSynOptLen
	}
	seg := make([]byte, th+len(payload))
	if flags.Has(TCPSyn) {
		TCP(seg).SetSynOptions(SynOptions{MSS: 1460, HasWScale: true, WScale: 7, SACKPerm: true})
	}
	copy(seg[th:], payload)
	TCP(seg).Encode(&TCPFields{SrcPort: 40000, DstPort: 80, Seq: 1, Ack: 2, Flags: flags, Window: 65535, HeaderLen: th})
	f := ipv4Frame(ProtoTCP, seg)
	TCP(f[EtherLen+IPv4Len:]).SetChecksum(v4(10, 0, 2, 100), v4(10, 0, 2, 2))
	return f
}

// fixIPChecksum recomputes the IPv4 header checksum after a test edits it.
func fixIPChecksum(f []byte) []byte {
	ip := f[EtherLen:]
	ihl := int(ip[0]&0xf) * 4
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:ihl], 0))
	return f
}

func TestDecode(t *testing.T) {
	edit := func(f []byte, fn func([]byte)) []byte { fn(f); return f }
	tests := []struct {
		name  string
		frame []byte
		err   error
		check func(t *testing.T, p *Parsed)
	}{
		{"arp request", arpFrame(), nil, func(t *testing.T, p *Parsed) {
			if p.ARP.Op() != ARPRequest || p.ARP.TargetIP() != v4(10, 0, 2, 2) || p.ARP.SenderMAC() != (MAC{2, 0, 0, 0, 0, 1}) {
				t.Errorf("ARP fields wrong: op %d target %v sender %v", p.ARP.Op(), p.ARP.TargetIP(), p.ARP.SenderMAC())
			}
		}},
		{"icmp echo", icmpEcho(), nil, func(t *testing.T, p *Parsed) {
			if p.Proto != ProtoICMP || p.ICMP.Type() != ICMPEchoRequest || p.ICMP.EchoID() != 0x1234 || p.ICMP.EchoSeq() != 1 {
				t.Errorf("ICMP fields wrong: %+v", p.ICMP)
			}
			if p.Src != v4(10, 0, 2, 100) || p.Dst != v4(10, 0, 2, 2) {
				t.Errorf("addresses %v -> %v", p.Src, p.Dst)
			}
		}},
		{"udp", udpFrame("hello"), nil, func(t *testing.T, p *Parsed) {
			if p.UDP.SrcPort() != 68 || p.UDP.DstPort() != 67 || string(p.Payload) != "hello" {
				t.Errorf("UDP fields wrong: %d->%d %q", p.UDP.SrcPort(), p.UDP.DstPort(), p.Payload)
			}
		}},
		{"udp with ethernet padding", append(udpFrame("x"), make([]byte, 20)...), nil, func(t *testing.T, p *Parsed) {
			if string(p.Payload) != "x" || len(p.IP) != IPv4Len+UDPLen+1 {
				t.Errorf("padding not trimmed: payload %q, ip len %d", p.Payload, len(p.IP))
			}
		}},
		{"udp zero checksum accepted", edit(udpFrame("x"), func(f []byte) { f[EtherLen+IPv4Len+6], f[EtherLen+IPv4Len+7] = 0, 0 }), nil, nil},
		{"lldp ignored", edit(arpFrame(), func(f []byte) { binary.BigEndian.PutUint16(f[12:], 0x88cc) }), ErrEtherType, nil},
		{"empty", nil, ErrShort, nil},
		{"ethernet only", arpFrame()[:EtherLen], ErrARP, nil},
		{"short arp", arpFrame()[:EtherLen+ARPLen-1], ErrARP, nil},
		{"arp wrong hlen", edit(arpFrame(), func(f []byte) { f[EtherLen+4] = 8 }), ErrARP, nil},
		{"short ip", icmpEcho()[:EtherLen+IPv4Len-1], ErrShort, nil},
		{"ip version 6", fixIPChecksum(edit(icmpEcho(), func(f []byte) { f[EtherLen] = 0x65 })), ErrIPVersion, nil},
		{"ihl below 5", fixIPChecksum(edit(icmpEcho(), func(f []byte) { f[EtherLen] = 0x44 })), ErrIHL, nil},
		{"ihl past frame", edit(icmpEcho()[:EtherLen+IPv4Len+4], func(f []byte) { f[EtherLen] = 0x4f }), ErrIHL, nil},
		{"total length past frame", fixIPChecksum(edit(icmpEcho(), func(f []byte) { binary.BigEndian.PutUint16(f[EtherLen+2:], 1500) })), ErrTotalLen, nil},
		{"total length below header", fixIPChecksum(edit(icmpEcho(), func(f []byte) { binary.BigEndian.PutUint16(f[EtherLen+2:], 10) })), ErrTotalLen, nil},
		{"bad ip checksum", edit(icmpEcho(), func(f []byte) { f[EtherLen+10] ^= 0xff }), ErrIPChecksum, nil},
		{"fragment", fixIPChecksum(edit(icmpEcho(), func(f []byte) { f[EtherLen+6] = 0x20 })), ErrFragment, nil},
		{"truncated icmp", fixIPChecksum(edit(icmpEcho()[:EtherLen+IPv4Len+4], func(f []byte) { binary.BigEndian.PutUint16(f[EtherLen+2:], IPv4Len+4) })), ErrL4Short, nil},
		{"bad icmp checksum", edit(icmpEcho(), func(f []byte) { f[len(f)-1] ^= 1 }), ErrL4Checksum, nil},
		{"udp length too big", edit(udpFrame("abc"), func(f []byte) { binary.BigEndian.PutUint16(f[EtherLen+IPv4Len+4:], 200) }), ErrUDPLength, nil},
		{"udp length too small", edit(udpFrame("abc"), func(f []byte) { binary.BigEndian.PutUint16(f[EtherLen+IPv4Len+4:], 7) }), ErrUDPLength, nil},
		{"bad udp checksum", edit(udpFrame("abc"), func(f []byte) { f[len(f)-1] ^= 1 }), ErrL4Checksum, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			err := p.Decode(tt.frame)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Decode error = %v, want %v", err, tt.err)
			}
			if err == nil && tt.check != nil {
				tt.check(t, &p)
			}
		})
	}
}

// TestDecodeOptionsIHL checks that IPv4 options are skipped by IHL.
func TestDecodeOptionsIHL(t *testing.T) {
	f := icmpEcho()
	// Insert 4 bytes of options (NOP NOP NOP EOL) after the base header.
	opt := append(append(append([]byte{}, f[:EtherLen+IPv4Len]...), 1, 1, 1, 0), f[EtherLen+IPv4Len:]...)
	opt[EtherLen] = 0x46
	binary.BigEndian.PutUint16(opt[EtherLen+2:], uint16(len(opt)-EtherLen))
	fixIPChecksum(opt)
	var p Parsed
	if err := p.Decode(opt); err != nil {
		t.Fatal(err)
	}
	if p.ICMP.EchoID() != 0x1234 {
		t.Fatalf("ICMP read at the wrong offset: id %#x", p.ICMP.EchoID())
	}
}

// TestDecodeGolden decodes one frame of each kind with Decode and
// DecodeTrusted and compares a summary of what was found with the golden
// line, as tailscale's net/packet tests do; each decode must not allocate.
func TestDecodeGolden(t *testing.T) {
	summary := func(p *Parsed) string {
		s := fmt.Sprintf("%v>%v type %#04x", p.SrcMAC, p.DstMAC, p.Type)
		if p.ARP != nil {
			s += fmt.Sprintf(" arp op %d %v>%v", p.ARP.Op(), p.ARP.SenderIP(), p.ARP.TargetIP())
		}
		if p.IP != nil {
			s += fmt.Sprintf(" ip %v>%v proto %d len %d", p.Src, p.Dst, p.Proto, len(p.IP))
		}
		switch {
		case p.TCP != nil:
			o := p.TCP.SynOptions()
			s += fmt.Sprintf(" tcp %d>%d seq %d ack %d [%v] win %d hdr %d opts %+v", p.TCP.SrcPort(), p.TCP.DstPort(),
				p.TCP.Seq(), p.TCP.Ack(), p.TCP.Flags(), p.TCP.Window(), p.TCP.HeaderLen(), o)
		case p.UDP != nil:
			s += fmt.Sprintf(" udp %d>%d len %d", p.UDP.SrcPort(), p.UDP.DstPort(), p.UDP.Length())
		case p.ICMP != nil:
			s += fmt.Sprintf(" icmp type %d id %#x seq %d", p.ICMP.Type(), p.ICMP.EchoID(), p.ICMP.EchoSeq())
		}
		return s + fmt.Sprintf(" payload %q", p.Payload)
	}
	const macs = "02:00:00:00:00:01>52:55:0a:00:02:02"
	golden := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"tcp syn", tcpFrame(TCPSyn, ""), macs + " type 0x0800 ip 10.0.2.100>10.0.2.2 proto 6 len 52 tcp 40000>80 seq 1 ack 2 [S] win 65535 hdr 32 opts {MSS:1460 HasMSS:true WScale:7 HasWScale:true SACKPerm:true} payload \"\""},
		{"tcp data", tcpFrame(TCPAck|TCPPsh, "hello"), macs + " type 0x0800 ip 10.0.2.100>10.0.2.2 proto 6 len 45 tcp 40000>80 seq 1 ack 2 [P.] win 65535 hdr 20 opts {MSS:0 HasMSS:false WScale:0 HasWScale:false SACKPerm:false} payload \"hello\""},
		{"udp", udpFrame("hi"), macs + " type 0x0800 ip 10.0.2.100>10.0.2.2 proto 17 len 30 udp 68>67 len 10 payload \"hi\""},
		{"icmp echo", icmpEcho(), macs + " type 0x0800 ip 10.0.2.100>10.0.2.2 proto 1 len 32 icmp type 8 id 0x1234 seq 1 payload \"\""},
		{"arp", arpFrame(), "02:00:00:00:00:01>ff:ff:ff:ff:ff:ff type 0x0806 arp op 1 10.0.2.100>10.0.2.2 payload \"\""},
	}
	for _, g := range golden {
		for _, trusted := range []bool{false, true} {
			var p Parsed
			decode := p.Decode
			if trusted {
				decode = p.DecodeTrusted
			}
			if err := decode(g.frame); err != nil {
				t.Fatalf("%s (trusted %v): %v", g.name, trusted, err)
			}
			if got := summary(&p); got != g.want {
				t.Errorf("%s (trusted %v):\n got %s\nwant %s", g.name, trusted, got, g.want)
			}
			if n := testing.AllocsPerRun(100, func() { _ = decode(g.frame) }); n != 0 {
				t.Errorf("%s (trusted %v): decode allocates %v times", g.name, trusted, n)
			}
		}
	}
}

// TestTCPFlagsAndEncode: the typed flags print and test as they should,
// and a header written by Encode reads back field by field.
func TestTCPFlagsAndEncode(t *testing.T) {
	if f := TCPSyn | TCPAck; !f.Has(TCPSyn) || f.Has(TCPSyn|TCPFin) || !f.Any(TCPFin|TCPAck) || f.String() != "S." {
		t.Fatalf("flags %v: Has/Any/String wrong", f)
	}
	seg := TCP(make([]byte, TCPLen+3))
	seg.Encode(&TCPFields{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: TCPFin | TCPAck, Window: 5, HeaderLen: TCPLen})
	if seg.SrcPort() != 1 || seg.DstPort() != 2 || seg.Seq() != 3 || seg.Ack() != 4 || seg.Flags() != TCPFin|TCPAck ||
		seg.Window() != 5 || seg.HeaderLen() != TCPLen || len(seg.Payload()) != 3 {
		t.Fatalf("Encode/read back: % x", seg)
	}
	// A partial checksum completed over the segment equals the full one.
	src, dst := v4(10, 0, 2, 2), v4(10, 0, 2, 100)
	seg.SetChecksum(src, dst)
	full := seg.Checksum()
	seg.SetPartialChecksum(src, dst)
	seg.completeChecksum()
	if seg.Checksum() != full {
		t.Fatalf("partial checksum completed to %#04x, full %#04x", seg.Checksum(), full)
	}
}

func TestDecodeAllocs(t *testing.T) {
	frames := [][]byte{arpFrame(), icmpEcho(), udpFrame("payload"), udpFrame("x")[:20]}
	var p Parsed
	for _, f := range frames {
		if n := testing.AllocsPerRun(100, func() { _ = p.Decode(f) }); n != 0 {
			t.Errorf("Decode of a %d-byte frame allocates %v times", len(f), n)
		}
	}
}

func TestMACString(t *testing.T) {
	if s := (MAC{0x52, 0x55, 0x0a, 0, 2, 0xff}).String(); s != "52:55:0a:00:02:ff" {
		t.Fatalf("MAC.String = %q", s)
	}
	if s := v4(10, 0, 2, 100).String(); s != "10.0.2.100" {
		t.Fatalf("Addr.String = %q", s)
	}
}

func FuzzDecode(f *testing.F) {
	for _, fr := range [][]byte{arpFrame(), icmpEcho(), udpFrame("seed"), tcpFrame(TCPSyn, ""),
		frame6(nil, ProtoICMPv6, []byte{ICMPv6EchoRequest, 0, 0, 0, 0, 1, 0, 1}, true),
		frame6(chain(ProtoHopByHop, ext(ProtoDestOpts, 0), ext(ProtoUDP, 1)), ProtoUDP, []byte{0, 1, 0, 53, 0, 8, 0, 0}, true)} {
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Parsed
		if err := p.Decode(frame); err != nil {
			return
		}
		// Whatever decodes must be internally consistent and in bounds.
		if p.IP != nil {
			if p.IP.TotalLen() != len(p.IP) || p.IP.IHL() < IPv4Len || Checksum(p.IP[:p.IP.IHL()], 0) != 0 {
				t.Fatalf("inconsistent IPv4 view: total %d len %d ihl %d", p.IP.TotalLen(), len(p.IP), p.IP.IHL())
			}
		}
		if p.IP6 != nil {
			if p.IP6.PayloadLen() != len(p.IP6)-IPv6Len || p.IP != nil || len(p.L4) > len(p.IP6)-IPv6Len {
				t.Fatalf("inconsistent IPv6 view: payload %d len %d L4 %d", p.IP6.PayloadLen(), len(p.IP6), len(p.L4))
			}
		}
		if p.UDP != nil && p.UDP.Length() != len(p.UDP) {
			t.Fatalf("UDP length %d but view %d", p.UDP.Length(), len(p.UDP))
		}
		if p.ARP != nil && len(p.ARP) != ARPLen {
			t.Fatalf("ARP view of %d bytes", len(p.ARP))
		}
		if p.TCP != nil {
			if p.TCP.HeaderLen() < TCPLen || p.TCP.HeaderLen() > len(p.TCP) {
				t.Fatalf("TCP header length %d of %d", p.TCP.HeaderLen(), len(p.TCP))
			}
			if o := p.TCP.SynOptions(); o.HasWScale && o.WScale > TCPMaxWScale {
				t.Fatalf("window scale %d accepted", o.WScale)
			}
		}
	})
}

func BenchmarkChecksum(b *testing.B) {
	for _, size := range []int{64, 1500, 65535} {
		buf := make([]byte, size)
		rand.New(rand.NewSource(3)).Read(buf)
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				Checksum(buf, 0)
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	f := udpFrame(string(make([]byte, 1400)))
	var p Parsed
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = p.Decode(f)
	}
}

// completeChecksum does what the namespace's kernel does with a partial
// checksum: sums the segment from the field's sum on.
func (t TCP) completeChecksum() {
	c := Checksum(t, 0)
	binary.BigEndian.PutUint16(t[tcpChecksum:], c)
}

// TestPseudoHeaderSumIPv6: the IPv6 pseudo header (RFC 8200 8.1) sums both
// 16-byte addresses, the 32-bit length and the next header.
func TestPseudoHeaderSumIPv6(t *testing.T) {
	src, dst := AddrFromNetip(netip.MustParseAddr("2001:db8::1")), AddrFromNetip(netip.MustParseAddr("2001:db8::2"))
	udp := []byte{0x00, 0x44, 0x00, 0x43, 0x00, 0x0a, 0x00, 0x00, 0xde, 0xad}
	ph := append(append(append([]byte{}, src[:]...), dst[:]...), 0, 0, 0, byte(len(udp)), 0, 0, 0, ProtoUDP)
	ph = append(ph, udp...)
	if got, want := Checksum(udp, PseudoHeaderSum(src, dst, ProtoUDP, len(udp))), refChecksum(ph); got != want {
		t.Fatalf("IPv6 pseudo header checksum = %#04x, want %#04x", got, want)
	}
	if src.Is4() || !v4(10, 0, 2, 2).Is4() || v4(10, 0, 2, 2).Netip() != netip.MustParseAddr("10.0.2.2") || src.String() != "2001:db8::1" {
		t.Fatal("Addr family or conversion wrong")
	}
}

// TestOffloadComplete: a partial checksum completed over a frame verifies,
// for TCP and for UDP; no partial checksum leaves the frame alone; a field
// past the frame's end is an error, not a write out of bounds.
func TestOffloadComplete(t *testing.T) {
	src, dst := v4(10, 0, 2, 2), v4(10, 0, 2, 100)
	const l4At = EtherLen + IPv4Len
	for _, c := range []struct {
		proto uint8
		off   int
	}{{ProtoTCP, TCPChecksumOffset}, {ProtoUDP, UDPChecksumOffset}} {
		frame := make([]byte, l4At+TCPLen+7)
		l4 := frame[l4At:]
		copy(l4[TCPLen:], "payload")
		if c.proto == ProtoTCP {
			TCP(l4).Encode(&TCPFields{SrcPort: 1, DstPort: 2, Flags: TCPAck, HeaderLen: TCPLen})
			TCP(l4).SetPartialChecksum(src, dst)
		} else {
			UDP(l4).Encode(&UDPFields{SrcPort: 1, DstPort: 2, Length: len(l4)})
			UDP(l4).SetPartialChecksum(src, dst)
		}
		before := append([]byte(nil), frame...)
		if err := (Offload{}).Complete(frame); err != nil || string(frame) != string(before) {
			t.Fatalf("proto %d: Complete without a partial checksum: %v, frame changed: %v", c.proto, err, string(frame) != string(before))
		}
		o := Offload{CsumStart: l4At, CsumOffset: uint16(c.off)}
		if err := o.Complete(frame); err != nil {
			t.Fatal(err)
		}
		if s := Checksum(l4, PseudoHeaderSum(src, dst, c.proto, len(l4))); s != 0 {
			t.Fatalf("proto %d: the completed checksum does not verify (residue %#x)", c.proto, s)
		}
		if err := (Offload{CsumStart: l4At, CsumOffset: uint16(len(l4) - 1)}).Complete(frame); err == nil {
			t.Fatalf("proto %d: a field past the frame's end was accepted", c.proto)
		}
	}
}
