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
func (a ARP) SenderIP() Addr { return AddrFrom4([4]byte(a[14:18])) }

// TargetMAC returns the target hardware address.
func (a ARP) TargetMAC() (m MAC) { copy(m[:], a[18:24]); return }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() Addr { return AddrFrom4([4]byte(a[24:28])) }

// ARPFields is what Encode writes into an ARP packet.
type ARPFields struct {
	Op                   uint16
	SenderMAC, TargetMAC MAC
	SenderIP, TargetIP   Addr // IPv4 addresses
}

// Encode writes a complete Ethernet/IPv4 ARP packet into a[:ARPLen].
func (a ARP) Encode(f *ARPFields) {
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], f.Op)
	copy(a[8:14], f.SenderMAC[:])
	copy(a[14:18], f.SenderIP[12:])
	copy(a[18:24], f.TargetMAC[:])
	copy(a[24:28], f.TargetIP[12:])
}
