package packet

import "errors"

// Decode errors. They are values, not formatted strings, so that rejecting a
// hostile frame allocates nothing.
var (
	ErrShort       = errors.New("frame too short")
	ErrEtherType   = errors.New("unsupported EtherType")
	ErrARP         = errors.New("malformed or non-Ethernet/IPv4 ARP")
	ErrIPVersion   = errors.New("IPv4 header with wrong version")
	ErrIHL         = errors.New("IPv4 header length out of range")
	ErrTotalLen    = errors.New("IPv4 total length out of range")
	ErrIPChecksum  = errors.New("IPv4 header checksum mismatch")
	ErrFragment    = errors.New("IP fragment")
	ErrIPv6Len     = errors.New("IPv6 payload length out of range")
	ErrExtHeader   = errors.New("IPv6 extension header malformed or too many")
	ErrL4Short     = errors.New("transport header truncated")
	ErrUDPLength   = errors.New("UDP length out of range")
	ErrTCPOffset   = errors.New("TCP data offset out of range")
	ErrL4Checksum  = errors.New("transport checksum mismatch")
	ErrUnsupported = errors.New("unsupported IP protocol")
)

// Parsed is the result of decoding one frame: the views the protocol handlers
// need, found in one pass. It holds slices into the frame, so it is valid
// only while the frame buffer is.
type Parsed struct {
	Ether   Ether
	SrcMAC  MAC
	DstMAC  MAC
	Type    uint16 // EtherType
	ARP     ARP    // set when Type == EtherTypeARP
	IP      IPv4   // IPv4 header and payload, trimmed to TotalLen
	IP6     IPv6   // IPv6 header and payload, trimmed to its payload length
	Src     Addr
	Dst     Addr
	Proto   uint8
	L4      []byte // transport header and payload, trimmed
	UDP     UDP    // set when Proto == ProtoUDP
	TCP     TCP    // set when Proto == ProtoTCP: header and payload
	ICMP    ICMP   // set when Proto == ProtoICMP or ProtoICMPv6
	Payload []byte // UDP or TCP payload
	// Offload is what the frame's vnet header said, checked: set by the
	// reader of the frame, not by Decode, which clears it.
	Offload Offload
}

// Decode parses frame into p, checking every length and the checksums that
// the kernel always fills in (IPv4 header, ICMP, UDP when non-zero). It
// neither allocates nor keeps frame beyond p. On error, p is partially
// filled and must not be used.
func (p *Parsed) Decode(frame []byte) error { return p.decode(frame, true) }

// DecodeTrusted is Decode without verifying UDP checksums: for frames read
// from the tap, a memory channel with no wire to corrupt them, where summing
// every datagram would cost more than anything it could catch (a hostile
// namespace computes a valid checksum as easily as an invalid one). Every
// length is still checked, and so is the IPv4 header checksum.
func (p *Parsed) DecodeTrusted(frame []byte) error { return p.decode(frame, false) }

func (p *Parsed) decode(frame []byte, verifyUDP bool) error {
	*p = Parsed{}
	if len(frame) < EtherLen {
		return ErrShort
	}
	p.Ether = Ether(frame)
	p.DstMAC, p.SrcMAC, p.Type = p.Ether.Dst(), p.Ether.Src(), p.Ether.Type()
	switch p.Type {
	case EtherTypeARP:
		a := ARP(p.Ether.Payload())
		if !a.Valid() {
			return ErrARP
		}
		p.ARP = a[:ARPLen]
		return nil
	case EtherTypeIPv4:
		return p.decodeIPv4(p.Ether.Payload(), verifyUDP)
	case EtherTypeIPv6:
		return p.decodeIPv6(p.Ether.Payload(), verifyUDP)
	default:
		return ErrEtherType
	}
}

func (p *Parsed) decodeIPv4(b []byte, verifyUDP bool) error {
	if len(b) < IPv4Len {
		return ErrShort
	}
	ip := IPv4(b)
	if b[0]>>4 != 4 {
		return ErrIPVersion
	}
	ihl := ip.IHL()
	if ihl < IPv4Len || ihl > len(b) {
		return ErrIHL
	}
	total := ip.TotalLen()
	// Ethernet pads short frames, so the buffer may be longer than the packet,
	// never shorter.
	if total < ihl || total > len(b) {
		return ErrTotalLen
	}
	if Checksum(b[:ihl], 0) != 0 {
		return ErrIPChecksum
	}
	ip = ip[:total]
	p.IP, p.Src, p.Dst, p.Proto = ip, ip.Src(), ip.Dst(), ip.Protocol()
	if ip.IsFragment() {
		return ErrFragment
	}
	p.L4 = ip[ihl:]
	return p.decodeL4(verifyUDP)
}

// decodeIPv6 checks the fixed header and steps over hop-by-hop, routing
// and destination-options headers to the transport header. Fragments are
// refused, as for IPv4: the namespace's kernel does not fragment within
// the MTU, and reassembly would be state a hostile namespace could fill.
func (p *Parsed) decodeIPv6(b []byte, verifyUDP bool) error {
	if len(b) < IPv6Len {
		return ErrShort
	}
	if b[0]>>4 != 6 {
		return ErrIPVersion
	}
	ip := IPv6(b)
	n := ip.PayloadLen()
	if n > len(b)-IPv6Len {
		return ErrIPv6Len // jumbograms (0 with a hop-by-hop option) too
	}
	ip = ip[:IPv6Len+n]
	p.IP6, p.Src, p.Dst = ip, ip.Src(), ip.Dst()
	next, rest := ip.NextHeader(), []byte(ip[IPv6Len:])
	for i := 0; ; i++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDestOpts:
			if i == maxExtHeaders || len(rest) < ipv6ExtMinLen {
				return ErrExtHeader
			}
			l := (int(rest[1]) + 1) * 8
			if l > len(rest) {
				return ErrExtHeader
			}
			next, rest = rest[0], rest[l:]
			continue
		case ProtoFragment:
			p.Proto = next
			return ErrFragment
		}
		break
	}
	p.Proto, p.L4 = next, rest
	return p.decodeL4(verifyUDP)
}

// decodeL4 checks the transport header in p.L4, of protocol p.Proto.
func (p *Parsed) decodeL4(verifyUDP bool) error {
	six := p.IP6 != nil
	switch p.Proto {
	case ProtoUDP:
		if len(p.L4) < UDPLen {
			return ErrL4Short
		}
		u := UDP(p.L4)
		n := u.Length()
		if n < UDPLen || n > len(p.L4) {
			return ErrUDPLength
		}
		u = u[:n]
		// IPv6 has no "no checksum" zero (RFC 8200 8.1).
		if verifyUDP && (u.Checksum() != 0 || six) && Checksum(u, PseudoHeaderSum(p.Src, p.Dst, ProtoUDP, n)) != 0 {
			return ErrL4Checksum
		}
		p.UDP, p.Payload = u, u[UDPLen:]
	case ProtoTCP:
		// The TCP checksum is not verified: the tap is a memory channel
		// with no wire to corrupt frames, a hostile namespace can compute a
		// valid checksum as easily as an invalid one, and with checksum
		// offload the namespace does not fill it in at all.
		if len(p.L4) < TCPLen {
			return ErrL4Short
		}
		t := TCP(p.L4)
		if off := t.HeaderLen(); off < TCPLen || off > len(t) {
			return ErrTCPOffset
		}
		p.TCP, p.Payload = t, t.Payload()
	case ProtoICMP:
		if six {
			return ErrUnsupported // ICMPv4 inside IPv6
		}
		if len(p.L4) < ICMPEchoLen {
			return ErrL4Short
		}
		if Checksum(p.L4, 0) != 0 {
			return ErrL4Checksum
		}
		p.ICMP = ICMP(p.L4)
	case ProtoICMPv6:
		if !six {
			return ErrUnsupported // ICMPv6 inside IPv4
		}
		// The 4-byte header every ICMPv6 message has; each type's
		// handler checks its own length. Unlike ICMPv4's, the checksum
		// covers a pseudo header.
		if len(p.L4) < 4 {
			return ErrL4Short
		}
		if Checksum(p.L4, PseudoHeaderSum(p.Src, p.Dst, ProtoICMPv6, len(p.L4))) != 0 {
			return ErrL4Checksum
		}
		p.ICMP = ICMP(p.L4)
	}
	return nil
}
