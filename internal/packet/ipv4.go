package packet

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// IPv4Len is the length of an IPv4 header without options.
const IPv4Len = 20

// IP protocol numbers.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// IPv4Addr is an IPv4 address as four bytes: comparable and pointer-free,
// unlike netip.Addr, so it can be part of a flow key.
type IPv4Addr [4]byte

// AddrFrom converts a netip.Addr holding an IPv4 address.
func AddrFrom(a netip.Addr) IPv4Addr { return a.As4() }

// Netip converts a to a netip.Addr.
func (a IPv4Addr) Netip() netip.Addr { return netip.AddrFrom4(a) }

// IsZero reports whether a is 0.0.0.0.
func (a IPv4Addr) IsZero() bool { return a == IPv4Addr{} }

// String formats a in dotted-quad form.
func (a IPv4Addr) String() string {
	b := make([]byte, 0, 15)
	for i, v := range a {
		if i > 0 {
			b = append(b, '.')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return string(b)
}

// IPv4 is a view of an IPv4 packet. Decode checks it before use.
type IPv4 []byte

// IHL returns the header length in bytes.
func (p IPv4) IHL() int { return int(p[0]&0x0f) * 4 }

// TotalLen returns the total length field.
func (p IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(p[2:4])) }

// ID returns the identification field.
func (p IPv4) ID() uint16 { return binary.BigEndian.Uint16(p[4:6]) }

// IsFragment reports whether p is a fragment (more fragments set, or a
// non-zero offset). nsgate does not reassemble: the namespace's kernel does
// not fragment when the MTU is honoured.
func (p IPv4) IsFragment() bool { return binary.BigEndian.Uint16(p[6:8])&0x3fff != 0 }

// TTL returns the time to live.
func (p IPv4) TTL() uint8 { return p[8] }

// Protocol returns the payload protocol number.
func (p IPv4) Protocol() uint8 { return p[9] }

// Src returns the source address.
func (p IPv4) Src() (a IPv4Addr) { copy(a[:], p[12:16]); return }

// Dst returns the destination address.
func (p IPv4) Dst() (a IPv4Addr) { copy(a[:], p[16:20]); return }

// SetHeader writes a 20-byte header without options, with DF set, and its
// checksum. totalLen includes the header.
func (p IPv4) SetHeader(totalLen int, id uint16, ttl, proto uint8, src, dst IPv4Addr) {
	p[0] = 0x45
	p[1] = 0
	binary.BigEndian.PutUint16(p[2:4], uint16(totalLen))
	binary.BigEndian.PutUint16(p[4:6], id)
	binary.BigEndian.PutUint16(p[6:8], 0x4000)
	p[8] = ttl
	p[9] = proto
	p[10], p[11] = 0, 0
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:12], Checksum(p[:IPv4Len], 0))
}
