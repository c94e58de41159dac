package packet

import "encoding/binary"

// IPv4Len is the length of an IPv4 header without options.
const IPv4Len = 20

// IP protocol numbers.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// Offsets of the IPv4 header's fields.
const (
	ipv4VersIHL   = 0
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
)

// ipv4DF is the don't-fragment bit of the flags and fragment offset field.
const ipv4DF = 0x4000

// IPv4 is a view of an IPv4 packet. Decode checks it before use.
type IPv4 []byte

// IHL returns the header length in bytes.
func (p IPv4) IHL() int { return int(p[ipv4VersIHL]&0x0f) * 4 }

// TotalLen returns the total length field.
func (p IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(p[ipv4TotalLen:])) }

// ID returns the identification field.
func (p IPv4) ID() uint16 { return binary.BigEndian.Uint16(p[ipv4ID:]) }

// IsFragment reports whether p is a fragment (more fragments set, or a
// non-zero offset). nsgate does not reassemble: the namespace's kernel does
// not fragment when the MTU is honoured.
func (p IPv4) IsFragment() bool { return binary.BigEndian.Uint16(p[ipv4FlagsFrag:])&0x3fff != 0 }

// TTL returns the time to live.
func (p IPv4) TTL() uint8 { return p[ipv4TTL] }

// Protocol returns the payload protocol number.
func (p IPv4) Protocol() uint8 { return p[ipv4Protocol] }

// Src returns the source address.
func (p IPv4) Src() Addr { return AddrFrom4([4]byte(p[ipv4Src:])) }

// Dst returns the destination address.
func (p IPv4) Dst() Addr { return AddrFrom4([4]byte(p[ipv4Dst:])) }

// IPv4Fields is what Encode writes into an IPv4 header.
type IPv4Fields struct {
	TotalLen int // header and payload
	ID       uint16
	TTL      uint8 // 0: 64
	Protocol uint8
	Src, Dst Addr // IPv4 addresses
}

// Encode writes a 20-byte header without options, with DF set, and its
// checksum.
func (p IPv4) Encode(f *IPv4Fields) {
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	p[ipv4VersIHL] = 0x45
	p[1] = 0
	binary.BigEndian.PutUint16(p[ipv4TotalLen:], uint16(f.TotalLen))
	binary.BigEndian.PutUint16(p[ipv4ID:], f.ID)
	binary.BigEndian.PutUint16(p[ipv4FlagsFrag:], ipv4DF)
	p[ipv4TTL] = ttl
	p[ipv4Protocol] = f.Protocol
	p[ipv4Checksum], p[ipv4Checksum+1] = 0, 0
	copy(p[ipv4Src:ipv4Src+4], f.Src[12:])
	copy(p[ipv4Dst:ipv4Dst+4], f.Dst[12:])
	binary.BigEndian.PutUint16(p[ipv4Checksum:], Checksum(p[:IPv4Len], 0))
}
