// Package nat maps the destinations the namespace sees to host addresses.
// Traffic to any other address leaves through a host socket connected to
// that address, so the host kernel picks the source: NAT by construction.
// What needs deciding is only which destinations may leave at all.
package nat

import (
	"net/netip"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/policy"
)

// Mapper decides where a destination goes.
type Mapper struct {
	Gateway             packet.Addr  // the host's 127.0.0.1, unless DisableHostLoopback
	Network             netip.Prefix // the virtual network: nothing else is there
	Gateway6            packet.Addr  // the host's ::1, unless DisableHostLoopback; zero without IPv6
	Network6            netip.Prefix // the virtual IPv6 network (invalid without IPv6)
	DisableHostLoopback bool
	// AllowHost, if set, must approve every host address (tests in the
	// machine's own namespace allow only the loopback).
	AllowHost func(addr packet.Addr) bool
	// Policy is the egress policy (--deny, --allow, --block-host); nil
	// allows all.
	Policy *policy.Policy
	// PlainGateway (pasta's --no-map-gw) makes the gateways ordinary
	// addresses: traffic to them leaves for the real router.
	PlainGateway bool
	// GuestMap and GuestMap6 (pasta's --map-guest-addr), if not zero, reach
	// GuestTo and GuestTo6: the host's own address, as the namespace would
	// reach the host were it not sharing that address.
	GuestMap, GuestMap6, GuestTo, GuestTo6 packet.Addr
}

// Allowed reports whether the egress policy lets a flow go to host
// address host, port port (0 for ICMP). Host gave host.
func (m *Mapper) Allowed(host packet.Addr, port uint16) bool { return m.Policy.Allowed(host, port) }

// hostLoopback and hostLoopback6 are the addresses the gateways map to.
var (
	hostLoopback  = packet.AddrFrom4([4]byte{127, 0, 0, 1})
	hostLoopback6 = packet.Addr{15: 1}
)

// isGateway reports whether dst is the gateway of its family, mapped to
// the host.
func (m *Mapper) isGateway(dst packet.Addr) bool {
	return !m.PlainGateway && (dst == m.Gateway || (!m.Gateway6.IsZero() && dst == m.Gateway6))
}

// Host returns the host address for dst, or false if traffic to dst must not
// leave: the gateway with --disable-host-loopback, other addresses of the
// virtual network, loopback, multicast, broadcast and unspecified addresses.
func (m *Mapper) Host(dst packet.Addr) (packet.Addr, bool) {
	out := dst
	switch a := dst.Netip(); {
	case !m.GuestMap.IsZero() && dst == m.GuestMap:
		out = m.GuestTo
	case !m.GuestMap6.IsZero() && dst == m.GuestMap6:
		out = m.GuestTo6
	case m.isGateway(dst):
		if m.DisableHostLoopback {
			return packet.Addr{}, false
		}
		out = hostLoopback
		if !dst.Is4() {
			out = hostLoopback6
		}
	case m.Network.Contains(a) || m.Network6.Contains(a) || a.IsLoopback() || !a.IsGlobalUnicast() && !a.IsPrivate():
		return packet.Addr{}, false
	}
	if m.AllowHost != nil && !m.AllowHost(out) {
		return packet.Addr{}, false
	}
	return out, true
}

// Router returns the gateway of a's family: the source of the errors nsgate
// sends as the namespace's router.
func (m *Mapper) Router(a packet.Addr) packet.Addr {
	if a.Is4() {
		return m.Gateway
	}
	return m.Gateway6
}

// HostLoopbackDisabled reports whether dst is the gateway and
// --disable-host-loopback refuses it: slirp4netns then answers with ICMP
// network unreachable, for TCP and UDP alike.
func (m *Mapper) HostLoopbackDisabled(dst packet.Addr) bool {
	return m.DisableHostLoopback && m.isGateway(dst)
}

// Client returns the address the namespace sees for a client of a port
// forward at host address addr: the client itself, except that the host's
// loopback, and anything inside the virtual network (which would collide
// with the namespace's own neighbours), appear as the gateway, the way
// slirp4netns shows them.
func (m *Mapper) Client(addr packet.Addr) packet.Addr {
	a := addr.Netip()
	if !a.Is4() && !m.Gateway6.IsZero() {
		if a.IsLoopback() || a.IsUnspecified() || m.Network6.Contains(a) {
			return m.Gateway6
		}
		return addr
	}
	if a.IsLoopback() || a.IsUnspecified() || m.Network.Contains(a) {
		return m.Gateway
	}
	return addr
}
