package packet

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
