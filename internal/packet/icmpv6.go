package packet

import "encoding/binary"

// ICMPv6 types (RFC 4443, RFC 4861).
const (
	ICMPv6Unreachable  = 1
	ICMPv6TooBig       = 2
	ICMPv6TimeExceeded = 3
	ICMPv6EchoRequest  = 128
	ICMPv6EchoReply    = 129
	ICMPv6RouterSol    = 133
	ICMPv6RouterAdv    = 134
	ICMPv6NeighborSol  = 135
	ICMPv6NeighborAdv  = 136
)

// ICMPv6 destination-unreachable codes nsgate sends.
const (
	ICMPv6NoRoute         = 0
	ICMPv6AdminProhibited = 1
	ICMPv6AddrUnreachable = 3
	ICMPv6PortUnreachable = 4
)

// NDP message lengths before their options.
const (
	NDPRouterSolLen = 8  // type, code, checksum, reserved
	NDPRouterAdvLen = 16 // ... hop limit, flags, lifetime, reachable, retransmit
	NDPNeighborLen  = 24 // ... flags/reserved, target address
)

// NDP option types (RFC 4861, RFC 8106).
const (
	NDPOptSourceLL = 1
	NDPOptTargetLL = 2
	NDPOptPrefix   = 3
	NDPOptMTU      = 5
	NDPOptRDNSS    = 25
)

// Flags of a router advertisement and a neighbour advertisement.
const (
	RAManaged  = 0x80 // M: addresses from DHCPv6
	RAOther    = 0x40 // O: other configuration from DHCPv6
	NARouter   = 0x80
	NASolicit  = 0x40
	NAOverride = 0x20
)

// NDPHopLimit is the hop limit every NDP message carries, and must arrive
// with: proof that it was not forwarded (RFC 4861 6.1).
const NDPHopLimit = 255

// ndpTarget is where an NS or NA carries its target address.
const ndpTarget = 8

// NDPTarget returns the target address of a neighbour solicitation or
// advertisement; c must be at least NDPNeighborLen long.
func (c ICMP) NDPTarget() Addr { return Addr(c[ndpTarget : ndpTarget+16]) }

// NDPOptions walks the options of an NDP message that start at off,
// calling fn with each option's type and body (after type and length). It
// reports false, having stopped, if an option has length 0 or runs past
// the end: RFC 4861 says to drop such a message whole.
func (c ICMP) NDPOptions(off int, fn func(typ uint8, body []byte)) bool {
	if off > len(c) {
		return false
	}
	b := c[off:]
	for len(b) > 0 {
		if len(b) < 2 || b[1] == 0 || int(b[1])*8 > len(b) {
			return false
		}
		l := int(b[1]) * 8
		fn(b[0], b[2:l])
		b = b[l:]
	}
	return true
}

// SourceLL returns the source link-layer address option of an NDP
// message whose options start at off, if it has a valid one.
func (c ICMP) SourceLL(off int) (mac MAC, ok bool) {
	valid := c.NDPOptions(off, func(typ uint8, body []byte) {
		if typ == NDPOptSourceLL && len(body) >= 6 {
			mac, ok = MAC(body[:6]), true
		}
	})
	return mac, ok && valid
}

// SetICMPv6Checksum computes the checksum of ICMPv6 message c from src to dst.
func (c ICMP) SetICMPv6Checksum(src, dst Addr) {
	c[icmpChecksum], c[icmpChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(c[icmpChecksum:], Checksum(c, PseudoHeaderSum(src, dst, ProtoICMPv6, len(c))))
}

// NDPWriter appends NDP options to a message under construction.
type NDPWriter struct {
	B []byte // the message's buffer, at least as long as what is written
	N int    // bytes written so far
}

// Option appends an option of type typ whose body is n bytes (a multiple of
// 8 minus 2) and returns the body to fill, zeroed.
func (w *NDPWriter) Option(typ uint8, n int) []byte {
	b := w.B[w.N : w.N+2+n]
	b[0], b[1] = typ, uint8((2+n)/8)
	clear(b[2:])
	w.N += 2 + n
	return b[2:]
}

// LinkLayer appends a source (NDPOptSourceLL) or target (NDPOptTargetLL)
// link-layer address option.
func (w *NDPWriter) LinkLayer(typ uint8, mac MAC) { copy(w.Option(typ, 6), mac[:]) }

// PrefixInfo appends a prefix information option: on-link and autonomous.
func (w *NDPWriter) PrefixInfo(prefix Addr, bits uint8, valid, preferred uint32) {
	b := w.Option(NDPOptPrefix, 30)
	b[0], b[1] = bits, 0xc0 // L, A
	binary.BigEndian.PutUint32(b[2:], valid)
	binary.BigEndian.PutUint32(b[6:], preferred)
	copy(b[14:], prefix[:])
}

// MTU appends an MTU option.
func (w *NDPWriter) MTU(mtu uint32) { binary.BigEndian.PutUint32(w.Option(NDPOptMTU, 6)[2:], mtu) }

// RDNSS appends a recursive DNS server option with one address (RFC 8106).
func (w *NDPWriter) RDNSS(addr Addr, lifetime uint32) {
	b := w.Option(NDPOptRDNSS, 22)
	binary.BigEndian.PutUint32(b[2:], lifetime)
	copy(b[6:], addr[:])
}
