package packet

import "encoding/binary"

// EtherLen is the length of an Ethernet II header without VLAN tags.
const EtherLen = 14

// EtherType values nsgate understands.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// MAC is an Ethernet hardware address. It is an array, not a slice, so that
// it can live in flow keys and leases without pointers.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// IsMulticast reports whether m has the group bit set (broadcast included).
func (m MAC) IsMulticast() bool { return m[0]&1 == 1 }

// String formats m as aa:bb:cc:dd:ee:ff.
func (m MAC) String() string {
	const hexdigits = "0123456789abcdef"
	var b [17]byte
	for i, v := range m {
		if i > 0 {
			b[i*3-1] = ':'
		}
		b[i*3] = hexdigits[v>>4]
		b[i*3+1] = hexdigits[v&0xf]
	}
	return string(b[:])
}

// Ether is a view of an Ethernet II frame. Callers check len >= EtherLen.
type Ether []byte

// Dst returns the destination MAC.
func (e Ether) Dst() (m MAC) { copy(m[:], e[0:6]); return }

// Src returns the source MAC.
func (e Ether) Src() (m MAC) { copy(m[:], e[6:12]); return }

// Type returns the EtherType.
func (e Ether) Type() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetHeader writes dst, src and EtherType.
func (e Ether) SetHeader(dst, src MAC, typ uint16) {
	copy(e[0:6], dst[:])
	copy(e[6:12], src[:])
	binary.BigEndian.PutUint16(e[12:14], typ)
}

// Payload returns the bytes after the Ethernet header.
func (e Ether) Payload() []byte { return e[EtherLen:] }
