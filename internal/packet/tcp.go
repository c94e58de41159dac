package packet

import (
	"encoding/binary"
	"strings"
)

// TCPLen is the length of a TCP header without options.
const TCPLen = 20

// Offsets of the TCP header's fields.
const (
	tcpSrcPort    = 0
	tcpDstPort    = 2
	tcpSeq        = 4
	tcpAck        = 8
	tcpDataOffset = 12
	tcpFlags      = 13
	tcpWindow     = 14
	tcpChecksum   = 16
	tcpUrgent     = 18
)

// TCPChecksumOffset is where the checksum sits in a TCP header: the csum
// offset of a partial checksum (vnet header).
const TCPChecksumOffset = tcpChecksum

// TCPFlags is the flags byte of a TCP header.
type TCPFlags uint8

// TCP flags.
const (
	TCPFin TCPFlags = 0x01
	TCPSyn TCPFlags = 0x02
	TCPRst TCPFlags = 0x04
	TCPPsh TCPFlags = 0x08
	TCPAck TCPFlags = 0x10
)

// Has reports whether all of want are set.
func (f TCPFlags) Has(want TCPFlags) bool { return f&want == want }

// Any reports whether any of want is set.
func (f TCPFlags) Any(want TCPFlags) bool { return f&want != 0 }

// String lists the flags set, as tcpdump does ("S.", "F.", "R").
func (f TCPFlags) String() string {
	var b strings.Builder
	for _, x := range [...]struct {
		f TCPFlags
		c byte
	}{{TCPSyn, 'S'}, {TCPFin, 'F'}, {TCPRst, 'R'}, {TCPPsh, 'P'}, {TCPAck, '.'}} {
		if f&x.f != 0 {
			b.WriteByte(x.c)
		}
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// TCP option kinds nsgate reads or writes.
const (
	tcpOptEnd      = 0
	tcpOptNop      = 1
	tcpOptMSS      = 2
	tcpOptWScale   = 3
	tcpOptSACKPerm = 4
	tcpOptSACK     = 5
)

// TCPMaxWScale is the largest window scale (RFC 7323 2.3); larger offers are
// read as this.
const TCPMaxWScale = 14

// TCPDefaultMSS is the MSS assumed when a SYN carries none (RFC 9293 3.7.1).
const TCPDefaultMSS = 536

// TCP is a view of a TCP header and payload. Decode checks the data offset.
type TCP []byte

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[tcpSrcPort:]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[tcpDstPort:]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[tcpSeq:]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[tcpAck:]) }

// HeaderLen returns the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[tcpDataOffset]>>4) * 4 }

// Flags returns the flag bits.
func (t TCP) Flags() TCPFlags { return TCPFlags(t[tcpFlags]) }

// Window returns the raw (unscaled) window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[tcpWindow:]) }

// Payload returns the bytes after the header.
func (t TCP) Payload() []byte { return t[t.HeaderLen():] }

// SynOptions are the options of a SYN that nsgate reads and writes.
type SynOptions struct {
	MSS       uint16 // valid if HasMSS
	HasMSS    bool
	WScale    uint8 // valid if HasWScale; at most TCPMaxWScale
	HasWScale bool
	SACKPerm  bool
}

// MSSOr returns the MSS offered, or def if none was.
func (o SynOptions) MSSOr(def uint16) uint16 {
	if o.HasMSS {
		return o.MSS
	}
	return def
}

// SynOptions parses the MSS, window scale and SACK-permitted options.
// Options are parsed defensively: a length that runs past the header, or a
// malformed known option, ends parsing (RFC 9293 3.1 says to ignore what
// one cannot parse, not to trust it).
func (t TCP) SynOptions() (o SynOptions) {
	opts := t[TCPLen:t.HeaderLen()]
	for len(opts) > 0 {
		kind := opts[0]
		if kind == tcpOptEnd {
			break
		}
		if kind == tcpOptNop {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			break
		}
		n := int(opts[1])
		switch {
		case kind == tcpOptMSS && n == 4:
			o.MSS, o.HasMSS = binary.BigEndian.Uint16(opts[2:4]), true
		case kind == tcpOptWScale && n == 3:
			o.WScale, o.HasWScale = min(opts[2], TCPMaxWScale), true
		case kind == tcpOptSACKPerm && n == 2:
			o.SACKPerm = true
		}
		opts = opts[n:]
	}
	return o
}

// TCPSynOptLen is the length of the options SetSynOptions writes.
const TCPSynOptLen = 12

// SetSynOptions writes into t[20:32] the options of a SYN or SYN-ACK:
// MSS(4), NOP WS(3) if o.HasWScale, NOP NOP SACK-permitted(2) if
// o.SACKPerm, padded with NOPs to TCPSynOptLen. o.HasMSS is implied.
func (t TCP) SetSynOptions(o SynOptions) {
	b := t[TCPLen : TCPLen+TCPSynOptLen]
	b[0], b[1] = tcpOptMSS, 4
	binary.BigEndian.PutUint16(b[2:4], o.MSS)
	for i := 4; i < len(b); i++ {
		b[i] = tcpOptNop
	}
	if o.HasWScale {
		b[5], b[6], b[7] = tcpOptWScale, 3, o.WScale
	}
	if o.SACKPerm {
		b[10], b[11] = tcpOptSACKPerm, 2
	}
}

// SACKBlock is a range of sequence numbers received beyond a gap.
type SACKBlock struct{ Left, Right uint32 }

// SACKOptLen returns the option bytes for n SACK blocks (with two NOPs to
// keep the blocks aligned).
func SACKOptLen(n int) int { return 4 + 8*n }

// SetSACK writes NOP NOP SACK(blocks) at t[20:], up to 4 blocks.
func (t TCP) SetSACK(blocks []SACKBlock) {
	o := t[TCPLen : TCPLen+SACKOptLen(len(blocks))]
	o[0], o[1], o[2], o[3] = tcpOptNop, tcpOptNop, tcpOptSACK, byte(2+8*len(blocks))
	for i, b := range blocks {
		binary.BigEndian.PutUint32(o[4+8*i:], b.Left)
		binary.BigEndian.PutUint32(o[8+8*i:], b.Right)
	}
}

// TCPFields is what Encode writes into a TCP header.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	HeaderLen        int // with options, which are already in place
}

// Encode writes the fixed header and zeroes the checksum and urgent
// pointer.
func (t TCP) Encode(f *TCPFields) {
	binary.BigEndian.PutUint16(t[tcpSrcPort:], f.SrcPort)
	binary.BigEndian.PutUint16(t[tcpDstPort:], f.DstPort)
	binary.BigEndian.PutUint32(t[tcpSeq:], f.Seq)
	binary.BigEndian.PutUint32(t[tcpAck:], f.Ack)
	t[tcpDataOffset] = byte(f.HeaderLen/4) << 4
	t[tcpFlags] = byte(f.Flags)
	binary.BigEndian.PutUint16(t[tcpWindow:], f.Window)
	t[tcpChecksum], t[tcpChecksum+1] = 0, 0
	t[tcpUrgent], t[tcpUrgent+1] = 0, 0
}

// SetChecksum computes the checksum over t (header and payload) with the
// pseudo header of src and dst.
func (t TCP) SetChecksum(src, dst Addr) {
	t[tcpChecksum], t[tcpChecksum+1] = 0, 0
	binary.BigEndian.PutUint16(t[tcpChecksum:], Checksum(t, PseudoHeaderSum(src, dst, ProtoTCP, len(t))))
}

// SetPartialChecksum stores only the pseudo-header sum over len(t), for a
// frame sent with a partial checksum (CHECKSUM_PARTIAL): the payload is
// never summed by anyone on the way into the namespace.
func (t TCP) SetPartialChecksum(src, dst Addr) {
	binary.BigEndian.PutUint16(t[tcpChecksum:], Fold(PseudoHeaderSum(src, dst, ProtoTCP, len(t))))
}

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[tcpChecksum:]) }
