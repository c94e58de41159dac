package packet

import "encoding/binary"

// ARPLen is the length of an Ethernet/IPv4 ARP packet.
const ARPLen = 28

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is a view of an ARP packet for Ethernet and IPv4. Call Valid first.
type ARP []byte

// Valid reports whether a is long enough and describes Ethernet/IPv4
// addresses, the only kind nsgate answers.
func (a ARP) Valid() bool {
	return len(a) >= ARPLen &&
		binary.BigEndian.Uint16(a[0:2]) == 1 && // hardware type Ethernet
		binary.BigEndian.Uint16(a[2:4]) == EtherTypeIPv4 &&
		a[4] == 6 && a[5] == 4
}

// Op returns the operation (ARPRequest, ARPReply).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:8]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() (m MAC) { copy(m[:], a[8:14]); return }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() (ip IPv4Addr) { copy(ip[:], a[14:18]); return }

// TargetMAC returns the target hardware address.
func (a ARP) TargetMAC() (m MAC) { copy(m[:], a[18:24]); return }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() (ip IPv4Addr) { copy(ip[:], a[24:28]); return }

// Set writes a complete Ethernet/IPv4 ARP packet into a[:ARPLen].
func (a ARP) Set(op uint16, sha MAC, spa IPv4Addr, tha MAC, tpa IPv4Addr) {
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sha[:])
	copy(a[14:18], spa[:])
	copy(a[18:24], tha[:])
	copy(a[24:28], tpa[:])
}
