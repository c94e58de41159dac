package packet

import (
	"encoding/binary"
	"fmt"
)

// GSOType says how a super-frame is to be cut into segments: the kinds a
// tap's vnet header names (their values are virtio_net_hdr's gso_type).
type GSOType uint8

// The segmentation kinds nsgate reads or writes.
const (
	GSONone  GSOType = 0 // one frame, one packet
	GSOTCPv4 GSOType = 1 // TCP over IPv4, cut at GSOSize payload bytes (TSO)
	GSOTCPv6 GSOType = 4 // TCP over IPv6
	GSOUDPL4 GSOType = 5 // UDP datagrams of GSOSize bytes each (USO)
)

// Offload is what a frame's vnet header says, in either direction: a
// partial checksum for the receiver to complete, and whether the frame is
// a super-frame for the receiver to segment. The zero value is a plain
// frame with every checksum in place.
type Offload struct {
	// CsumStart > 0: the L4 checksum is partial (only the pseudo-header
	// sum is in place). It counts from the Ethernet header.
	CsumStart uint16
	// CsumOffset is where the checksum field is, from CsumStart.
	CsumOffset uint16
	// GSO is the kind of super-frame, GSONone for a plain frame.
	GSO GSOType
	// GSOSize is the payload bytes of each segment (GSO != GSONone).
	GSOSize uint16
	// HdrLen is the bytes of headers, Ethernet to L4, before the payload
	// that is cut (GSO != GSONone).
	HdrLen uint16
}

// Complete turns the partial checksum o says frame holds (the
// pseudo-header sum at CsumStart+CsumOffset) into the full L4 checksum
// over frame[CsumStart:], as a NIC or the kernel would. A frame with no
// partial checksum is left as it is; a field past the frame's end is an
// error.
func (o Offload) Complete(frame []byte) error {
	if o.CsumStart == 0 {
		return nil
	}
	start, off := int(o.CsumStart), int(o.CsumOffset)
	if start+off+2 > len(frame) {
		return fmt.Errorf("partial checksum at %d+%d is past the frame's end (%d bytes)", start, off, len(frame))
	}
	sum := Checksum(frame[start:], 0)
	if sum == 0 && off == UDPChecksumOffset {
		sum = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(frame[start+off:], sum)
	return nil
}
