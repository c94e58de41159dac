package packet

import "encoding/binary"

// UDPLen is the length of a UDP header.
const UDPLen = 8

// Offsets of the UDP header's fields.
const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6
)

// UDPChecksumOffset is where the checksum sits in a UDP header: the csum
// offset of a partial checksum (vnet header).
const UDPChecksumOffset = udpChecksum

// ICMPEchoLen is the length of an ICMPv4 echo header (type, code, checksum,
// id, sequence), and of the fixed part of every ICMPv4 error.
const ICMPEchoLen = 8

// ICMPv4 types.
const (
	ICMPEchoReply   = 0
	ICMPUnreachable = 3
	ICMPEchoRequest = 8
)

// ICMPv4 destination-unreachable codes nsgate sends.
const (
	ICMPNetUnreachable  = 0
	ICMPHostUnreachable = 1
	ICMPPortUnreachable = 3
	ICMPFragNeeded      = 4
	ICMPAdminProhibited = 13
)

// Offsets of the ICMPv4 header's fields.
const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpEchoID   = 4
	icmpEchoSeq  = 6
	icmpNextMTU  = 6 // fragmentation needed: next-hop MTU
)

// UDP is a view of a UDP header and payload.
type UDP []byte

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[udpSrcPort:]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[udpDstPort:]) }

// Length returns the length field (header and payload).
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[udpLength:])) }

// Checksum returns the checksum field.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[udpChecksum:]) }

// UDPFields is what Encode writes into a UDP header.
type UDPFields struct {
	SrcPort, DstPort uint16
	Length           int // header and payload
}

// Encode writes ports and length, and zeroes the checksum.
func (u UDP) Encode(f *UDPFields) {
	binary.BigEndian.PutUint16(u[udpSrcPort:], f.SrcPort)
	binary.BigEndian.PutUint16(u[udpDstPort:], f.DstPort)
	binary.BigEndian.PutUint16(u[udpLength:], uint16(f.Length))
	u[udpChecksum], u[udpChecksum+1] = 0, 0
}

// SetChecksum computes the checksum over u[:Length()] with the pseudo
// header of src and dst.
func (u UDP) SetChecksum(src, dst Addr) {
	n := u.Length()
	u[udpChecksum], u[udpChecksum+1] = 0, 0
	sum := Checksum(u[:n], PseudoHeaderSum(src, dst, ProtoUDP, n))
	if sum == 0 {
		sum = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(u[udpChecksum:], sum)
}

// SetPartialChecksum stores only the pseudo-header sum, for a frame sent
// with a partial checksum (CHECKSUM_PARTIAL): the namespace's kernel takes
// it as a virtio guest's and never sums the payload for local delivery.
func (u UDP) SetPartialChecksum(src, dst Addr) {
	n := u.Length()
	binary.BigEndian.PutUint16(u[udpChecksum:], Fold(PseudoHeaderSum(src, dst, ProtoUDP, n)))
}

// ICMP is a view of an ICMPv4 message.
type ICMP []byte

// Type returns the ICMP type.
func (c ICMP) Type() uint8 { return c[icmpType] }

// Code returns the ICMP code.
func (c ICMP) Code() uint8 { return c[icmpCode] }

// EchoID returns the identifier of an echo request or reply.
func (c ICMP) EchoID() uint16 { return binary.BigEndian.Uint16(c[icmpEchoID:]) }

// EchoSeq returns the sequence number of an echo request or reply.
func (c ICMP) EchoSeq() uint16 { return binary.BigEndian.Uint16(c[icmpEchoSeq:]) }

// SetEchoID rewrites the identifier (the checksum is not updated).
func (c ICMP) SetEchoID(id uint16) { binary.BigEndian.PutUint16(c[icmpEchoID:], id) }

// SetError writes the fixed part of an ICMPv4 error, zero but for the next-hop
// MTU of "fragmentation needed" (RFC 1191); the quoted packet follows.
func (c ICMP) SetError(nextMTU uint16) {
	clear(c[:ICMPEchoLen])
	binary.BigEndian.PutUint16(c[icmpNextMTU:], nextMTU)
}

// SetTypeCode writes type and code and recomputes the checksum over all of c.
func (c ICMP) SetTypeCode(typ, code uint8) {
	c[icmpType], c[icmpCode] = typ, code
	c[icmpChecksum], c[icmpChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(c[icmpChecksum:], Checksum(c, 0))
}
