package packet

import "encoding/binary"

// IPv6Len is the length of the fixed IPv6 header.
const IPv6Len = 40

// IPv6 next-header values nsgate recognises: the extension headers it
// steps over, the one it refuses (fragments), and ICMPv6.
const (
	ProtoHopByHop  = 0
	ProtoRouting   = 43
	ProtoFragment  = 44
	ProtoICMPv6    = 58
	ProtoNoNext    = 59
	ProtoDestOpts  = 60
	maxExtHeaders  = 8 // more is a crafted chain, not a packet
	ipv6ExtMinLen  = 8
	ipv6DefaultHop = 64
)

// Offsets of the IPv6 header's fields.
const (
	ipv6VersTC     = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
)

// IPv6 is a view of an IPv6 packet. Decode checks it before use.
type IPv6 []byte

// PayloadLen returns the payload length field (extension headers included).
func (p IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(p[ipv6PayloadLen:])) }

// NextHeader returns the next-header field of the fixed header.
func (p IPv6) NextHeader() uint8 { return p[ipv6NextHeader] }

// HopLimit returns the hop limit.
func (p IPv6) HopLimit() uint8 { return p[ipv6HopLimit] }

// Src returns the source address.
func (p IPv6) Src() Addr { return Addr(p[ipv6Src : ipv6Src+16]) }

// Dst returns the destination address.
func (p IPv6) Dst() Addr { return Addr(p[ipv6Dst : ipv6Dst+16]) }

// IPv6Fields is what Encode writes into an IPv6 header.
type IPv6Fields struct {
	PayloadLen int
	NextHeader uint8
	HopLimit   uint8 // 0: 64
	Src, Dst   Addr
}

// Encode writes the fixed header, with traffic class and flow label zero.
func (p IPv6) Encode(f *IPv6Fields) {
	hop := f.HopLimit
	if hop == 0 {
		hop = ipv6DefaultHop
	}
	binary.BigEndian.PutUint32(p[ipv6VersTC:], 6<<28)
	binary.BigEndian.PutUint16(p[ipv6PayloadLen:], uint16(f.PayloadLen))
	p[ipv6NextHeader] = f.NextHeader
	p[ipv6HopLimit] = hop
	copy(p[ipv6Src:ipv6Src+16], f.Src[:])
	copy(p[ipv6Dst:ipv6Dst+16], f.Dst[:])
}

// IPHeaderLen returns the length of the IP header nsgate writes for a
// packet from src: 20 bytes for IPv4, 40 for IPv6.
func IPHeaderLen(src Addr) int {
	if src.Is4() {
		return IPv4Len
	}
	return IPv6Len
}

// EtherTypeOf returns the EtherType of packets from src.
func EtherTypeOf(src Addr) uint16 {
	if src.Is4() {
		return EtherTypeIPv4
	}
	return EtherTypeIPv6
}

// IPFields is what EncodeIP writes: an IPv4 or IPv6 header, by the family
// of Src.
type IPFields struct {
	Protocol uint8
	Src, Dst Addr
	L4Len    int    // transport header and payload
	ID       uint16 // IPv4 only
	TTL      uint8  // TTL or hop limit; 0: 64
}

// EncodeIP writes the IP header of f at the start of b and returns its
// length (IPHeaderLen(f.Src)).
func EncodeIP(b []byte, f *IPFields) int {
	if f.Src.Is4() {
		IPv4(b).Encode(&IPv4Fields{TotalLen: IPv4Len + f.L4Len, ID: f.ID, TTL: f.TTL, Protocol: f.Protocol, Src: f.Src, Dst: f.Dst})
		return IPv4Len
	}
	IPv6(b).Encode(&IPv6Fields{PayloadLen: f.L4Len, NextHeader: f.Protocol, HopLimit: f.TTL, Src: f.Src, Dst: f.Dst})
	return IPv6Len
}

// Is6LinkLocal reports whether a is an IPv6 link-local unicast address
// (fe80::/10).
func (a Addr) Is6LinkLocal() bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }

// Is6Multicast reports whether a is an IPv6 multicast address (ff00::/8).
func (a Addr) Is6Multicast() bool { return a[0] == 0xff }

// SolicitedNode returns the solicited-node multicast address of a
// (ff02::1:ffXX:XXXX, RFC 4291).
func SolicitedNode(a Addr) Addr {
	m := Addr{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff}
	copy(m[13:], a[13:])
	return m
}

// MulticastMAC returns the Ethernet address of IPv6 multicast group a
// (33:33 and its last four bytes, RFC 2464).
func MulticastMAC(a Addr) MAC { return MAC{0x33, 0x33, a[12], a[13], a[14], a[15]} }

// SLAAC returns the address a host with mac forms in the /64 prefix by
// modified EUI-64 (RFC 4291 appendix A), Linux's default: what --configure
// assigns, and where a forward to the namespace's IPv6 address goes.
func SLAAC(prefix Addr, mac MAC) Addr {
	a := prefix
	a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return a
}
