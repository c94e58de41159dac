package packet

import (
	"net/netip"
)

// Addr is an IP address in the data path: 16 bytes, an IPv4 address in its
// IPv4-mapped form (::ffff:a.b.c.d), as netip.Addr.As16 gives it. Unlike
// netip.Addr it holds no pointer, so flow keys made of it are pointer-free
// and the garbage collector never scans the flow tables' maps; and one type
// holds both families. The zero Addr (::) means "none".
type Addr [16]byte

// v4Prefix is the first twelve bytes of an IPv4-mapped address.
var v4Prefix = [12]byte{10: 0xff, 11: 0xff}

// AddrFrom4 returns the IPv4 address b.
func AddrFrom4(b [4]byte) Addr {
	var a Addr
	copy(a[:12], v4Prefix[:])
	copy(a[12:], b[:])
	return a
}

// AddrFromNetip converts a netip.Addr (IPv4 or IPv6; the zone is dropped).
// An invalid netip.Addr gives the zero Addr.
func AddrFromNetip(a netip.Addr) Addr {
	if !a.IsValid() {
		return Addr{}
	}
	return Addr(a.As16())
}

// Netip converts a to a netip.Addr: an IPv4 address comes back unmapped.
func (a Addr) Netip() netip.Addr { return netip.AddrFrom16(a).Unmap() }

// Is4 reports whether a is an IPv4 address.
func (a Addr) Is4() bool { return [12]byte(a[:12]) == v4Prefix }

// As4 returns the IPv4 address of a; a must satisfy Is4.
func (a Addr) As4() [4]byte { return [4]byte(a[12:]) }

// IsZero reports whether a is the zero Addr, "none".
func (a Addr) IsZero() bool { return a == Addr{} }

// IsUnspecified reports whether a is 0.0.0.0 or ::.
func (a Addr) IsUnspecified() bool { return a.IsZero() || a == AddrFrom4([4]byte{}) }

// String formats a as netip.Addr does ("10.0.2.2", "2001:db8::1").
func (a Addr) String() string {
	if a.IsZero() {
		return "::"
	}
	return a.Netip().String()
}

// IPv4Broadcast is 255.255.255.255.
var IPv4Broadcast = AddrFrom4([4]byte{255, 255, 255, 255})
