package packet

import "encoding/binary"

// TCPLen is the length of a TCP header without options.
const TCPLen = 20

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// TCP option kinds nsgate reads or writes.
const (
	tcpOptEnd      = 0
	tcpOptNop      = 1
	tcpOptMSS      = 2
	tcpOptWScale   = 3
	tcpOptSACKPerm = 4
	tcpOptSACK     = 5
)

// TCP is a view of a TCP header and payload. Decode checks the data offset.
type TCP []byte

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:8]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:12]) }

// HeaderLen returns the data offset in bytes.
func (t TCP) HeaderLen() int { return int(t[12]>>4) * 4 }

// Flags returns the flag bits (FIN, SYN, RST, PSH, ACK, ...).
func (t TCP) Flags() uint8 { return t[13] }

// Window returns the raw (unscaled) window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:16]) }

// SynOptions returns the MSS, window scale and SACK-permitted options of a
// SYN, with ok flags. Options are parsed defensively: a length that runs past
// the header, or a malformed known option, ends parsing (RFC 9293 3.1 says to
// ignore what one cannot parse, not to trust it).
func (t TCP) SynOptions() (mss uint16, hasMSS bool, wscale uint8, hasWScale bool, sackPerm bool) {
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
			mss, hasMSS = binary.BigEndian.Uint16(opts[2:4]), true
		case kind == tcpOptWScale && n == 3:
			wscale, hasWScale = opts[2], true
			if wscale > 14 { // RFC 7323 2.3
				wscale = 14
			}
		case kind == tcpOptSACKPerm && n == 2:
			sackPerm = true
		}
		opts = opts[n:]
	}
	return
}

// TCPSynOptLen is the length of the options SetSynOptions writes.
const TCPSynOptLen = 12

// SetSynOptions writes into t[20:32] the options of a SYN-ACK: MSS(4),
// NOP WS(3) if wscale >= 0, NOP NOP SACK-permitted(2) if sackPerm, padded
// with NOPs to TCPSynOptLen.
func (t TCP) SetSynOptions(mss uint16, wscale int, sackPerm bool) {
	o := t[TCPLen : TCPLen+TCPSynOptLen]
	o[0], o[1] = tcpOptMSS, 4
	binary.BigEndian.PutUint16(o[2:4], mss)
	for i := 4; i < len(o); i++ {
		o[i] = tcpOptNop
	}
	if wscale >= 0 {
		o[5], o[6], o[7] = tcpOptWScale, 3, byte(wscale)
	}
	if sackPerm {
		o[10], o[11] = tcpOptSACKPerm, 2
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

// SetHeader writes the fixed header with data offset hdrLen (options, if
// any, are already in place) and leaves the checksum zero.
func (t TCP) SetHeader(srcPort, dstPort uint16, seq, ack uint32, flags uint8, window uint16, hdrLen int) {
	binary.BigEndian.PutUint16(t[0:2], srcPort)
	binary.BigEndian.PutUint16(t[2:4], dstPort)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = byte(hdrLen/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:16], window)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
}

// SetChecksum computes the checksum over t (header and payload) with the
// pseudo header of src and dst.
func (t TCP) SetChecksum(src, dst IPv4Addr) {
	t[16], t[17] = 0, 0
	binary.BigEndian.PutUint16(t[16:18], Checksum(t, PseudoHeaderSum(src, dst, ProtoTCP, len(t))))
}
