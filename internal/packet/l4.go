package packet

import "encoding/binary"

// UDPLen is the length of a UDP header.
const UDPLen = 8

// ICMPv4 echo header length (type, code, checksum, id, sequence).
const ICMPEchoLen = 8

// ICMPv4 types.
const (
	ICMPEchoReply   = 0
	ICMPUnreachable = 3
	ICMPEchoRequest = 8
)

// UDP is a view of a UDP header and payload.
type UDP []byte

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length returns the length field (header and payload).
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[4:6])) }

// SetHeader writes ports and length, and the checksum over the pseudo
// header of src/dst and u[:length]. u must hold length bytes.
func (u UDP) SetHeader(srcPort, dstPort uint16, length int, src, dst IPv4Addr) {
	binary.BigEndian.PutUint16(u[0:2], srcPort)
	binary.BigEndian.PutUint16(u[2:4], dstPort)
	binary.BigEndian.PutUint16(u[4:6], uint16(length))
	u[6], u[7] = 0, 0
	sum := Checksum(u[:length], PseudoHeaderSum(src, dst, ProtoUDP, length))
	if sum == 0 {
		sum = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(u[6:8], sum)
}

// ICMP is a view of an ICMPv4 message.
type ICMP []byte

// Type returns the ICMP type.
func (c ICMP) Type() uint8 { return c[0] }

// Code returns the ICMP code.
func (c ICMP) Code() uint8 { return c[1] }

// EchoID returns the identifier of an echo request or reply.
func (c ICMP) EchoID() uint16 { return binary.BigEndian.Uint16(c[4:6]) }

// EchoSeq returns the sequence number of an echo request or reply.
func (c ICMP) EchoSeq() uint16 { return binary.BigEndian.Uint16(c[6:8]) }

// SetTypeCode writes type and code and recomputes the checksum over all of c.
func (c ICMP) SetTypeCode(typ, code uint8) {
	c[0], c[1] = typ, code
	c[2], c[3] = 0, 0
	binary.BigEndian.PutUint16(c[2:4], Checksum(c, 0))
}
