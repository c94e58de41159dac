package tapdev

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nsgate/nsgate/internal/packet"
)

// VirtioNetHdr is struct virtio_net_hdr_v1 (include/uapi/linux/virtio_net.h),
// the header before every frame on a tap opened with IFF_VNET_HDR, as
// wireguard-go's tun/offload_linux.go names it. Its fields are
// little-endian: virtio 1.0's order, and the host's on the architectures
// nsgate builds for.
type VirtioNetHdr struct {
	Flags      uint8  // VirtioNetHdrFNeedsCsum, VirtioNetHdrFDataValid
	GSOType    uint8  // a packet.GSOType, possibly with VirtioNetHdrGSOECN
	HdrLen     uint16 // GSO: length of the headers
	GSOSize    uint16 // GSO: payload bytes per segment
	CsumStart  uint16 // NEEDS_CSUM: where the sum starts, from the Ethernet header
	CsumOffset uint16 // NEEDS_CSUM: where the checksum field is, from CsumStart
	NumBuffers uint16 // mergeable receive buffers (unused on a tap)
}

// Header flags, and the ECN bit of the GSO type.
const (
	VirtioNetHdrFNeedsCsum = 1    // the checksum is partial: only the pseudo-header sum is in place
	VirtioNetHdrFDataValid = 2    // the checksum was verified (a receiver's hint, ignored)
	VirtioNetHdrGSOECN     = 0x80 // the segments carry CWR: never offered (no TUN_F_TSO_ECN)
)

// Errors of a hostile or inconsistent header from the namespace: values, so
// that dropping a frame allocates nothing.
var (
	ErrVnetFlags   = errors.New("vnet header: unknown flags")
	ErrVnetCsum    = errors.New("vnet header: partial checksum outside the frame")
	ErrVnetGSOType = errors.New("vnet header: unknown or unoffered GSO type")
	ErrVnetGSOSize = errors.New("vnet header: GSO size 0 or larger than the frame")
	ErrVnetHdrLen  = errors.New("vnet header: header length past the frame's end")
)

// Decode reads the header from b, which must hold VnetHdrLen bytes: the
// header comes from the namespace or a guest, so its length is checked,
// not assumed.
func (h *VirtioNetHdr) Decode(b []byte) error {
	if len(b) < VnetHdrLen {
		return fmt.Errorf("virtio net header: %d bytes, want %d", len(b), VnetHdrLen)
	}
	h.Flags, h.GSOType = b[0], b[1]
	h.HdrLen = binary.LittleEndian.Uint16(b[2:])
	h.GSOSize = binary.LittleEndian.Uint16(b[4:])
	h.CsumStart = binary.LittleEndian.Uint16(b[6:])
	h.CsumOffset = binary.LittleEndian.Uint16(b[8:])
	h.NumBuffers = binary.LittleEndian.Uint16(b[10:])
	return nil
}

// Encode writes the header into b[:VnetHdrLen].
func (h *VirtioNetHdr) Encode(b []byte) error {
	if len(b) < VnetHdrLen {
		return fmt.Errorf("virtio net header: %d bytes of room, want %d", len(b), VnetHdrLen)
	}
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
	return nil
}

// Offload checks the header of a frame of frameLen bytes read from the
// namespace and says what it asks. Every field is hostile until checked:
// flags nsgate does not know, a checksum outside the frame, a GSO type the
// tap was not offered, a segment size of 0 or past the frame, and headers
// longer than the frame are errors, and the frame is to be dropped.
func (h *VirtioNetHdr) Offload(frameLen int) (packet.Offload, error) {
	var o packet.Offload
	if h.Flags&^(VirtioNetHdrFNeedsCsum|VirtioNetHdrFDataValid) != 0 {
		return o, ErrVnetFlags
	}
	if h.Flags&VirtioNetHdrFNeedsCsum != 0 {
		if h.CsumStart < packet.EtherLen || int(h.CsumStart)+int(h.CsumOffset)+2 > frameLen {
			return o, ErrVnetCsum
		}
		o.CsumStart, o.CsumOffset = h.CsumStart, h.CsumOffset
	}
	switch g := packet.GSOType(h.GSOType); g {
	case packet.GSONone:
		return o, nil
	case packet.GSOTCPv4, packet.GSOTCPv6, packet.GSOUDPL4:
		o.GSO = g
	default:
		return o, ErrVnetGSOType
	}
	if h.GSOSize == 0 || int(h.GSOSize) > frameLen {
		return o, ErrVnetGSOSize
	}
	if int(h.HdrLen) > frameLen {
		return o, ErrVnetHdrLen
	}
	o.GSOSize, o.HdrLen = h.GSOSize, h.HdrLen
	return o, nil
}

// vnetHdr is the header that asks the namespace's kernel for o.
func vnetHdr(o packet.Offload) VirtioNetHdr {
	h := VirtioNetHdr{GSOType: uint8(o.GSO), HdrLen: o.HdrLen, GSOSize: o.GSOSize}
	if o.CsumStart > 0 {
		h.Flags, h.CsumStart, h.CsumOffset = VirtioNetHdrFNeedsCsum, o.CsumStart, o.CsumOffset
	}
	return h
}
