package tapdev

import (
	"encoding/binary"
	"fmt"
)

// VirtioNetHdr is struct virtio_net_hdr_v1 (include/uapi/linux/virtio_net.h),
// the header before every frame on a tap opened with IFF_VNET_HDR, as
// wireguard-go's tun/offload_linux.go names it. Its fields are
// little-endian: virtio 1.0's order, and the host's on the architectures
// nsgate builds for.
type VirtioNetHdr struct {
	Flags      uint8  // VirtioNetHdrFNeedsCsum, ...
	GSOType    uint8  // VirtioNetHdrGSONone, ... (no offloads yet: always none)
	HdrLen     uint16 // GSO: length of the headers
	GSOSize    uint16 // GSO: payload bytes per segment
	CsumStart  uint16 // NEEDS_CSUM: where the sum starts, from the Ethernet header
	CsumOffset uint16 // NEEDS_CSUM: where the checksum field is, from CsumStart
	NumBuffers uint16 // mergeable receive buffers (unused on a tap)
}

// Header flags and GSO types.
const (
	VirtioNetHdrFNeedsCsum = 1 // the checksum is partial: only the pseudo-header sum is in place
	VirtioNetHdrGSONone    = 0
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
