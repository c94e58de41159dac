package packet

import "encoding/binary"

// Checksum returns the Internet checksum (RFC 1071) of b, folded with an
// initial partial sum (for example PseudoHeaderSum), complemented and ready
// to store. Summing a header that includes its own valid checksum gives 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^Fold(Sum(b, initial))
}

// Sum adds b to the running one's-complement sum acc without folding.
// Eight bytes are summed per step into a 64-bit accumulator, so a 64 KiB
// frame cannot overflow it.
func Sum(b []byte, acc uint32) uint32 {
	s := uint64(acc)
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		s += v >> 32
		s += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s>>32 != 0 {
		s = (s & 0xffffffff) + s>>32
	}
	return uint32(s)
}

// Fold folds a 32-bit partial sum to 16 bits.
func Fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = (s & 0xffff) + s>>16
	}
	return uint16(s)
}

// PseudoHeaderSum returns the partial sum of the pseudo header that TCP, UDP
// (and ICMPv6) checksums cover: IPv4's (RFC 793) when both addresses are
// IPv4, IPv6's (RFC 8200 8.1) otherwise. length is the L4 length (header and
// payload).
func PseudoHeaderSum(src, dst Addr, proto uint8, length int) uint32 {
	s := uint32(proto) + uint32(length>>16) + uint32(length&0xffff)
	if src.Is4() && dst.Is4() {
		// Every segment passes here: four words, added directly.
		return s + uint32(binary.BigEndian.Uint16(src[12:])) + uint32(binary.BigEndian.Uint16(src[14:])) +
			uint32(binary.BigEndian.Uint16(dst[12:])) + uint32(binary.BigEndian.Uint16(dst[14:]))
	}
	return Sum(dst[:], Sum(src[:], s))
}
