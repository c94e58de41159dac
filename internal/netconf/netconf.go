// Package netconf configures the namespace side of the tap through netlink
// (--configure): MTU, MAC, address, link up, loopback up, default route. It
// acts on the network namespace of the calling process, so nsgate runs it in
// the helper that has joined the target namespace, never in the main process.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Params is what --configure sets.
type Params struct {
	Link    string
	MTU     int
	Addr    netip.Prefix     // e.g. 10.0.2.100/24
	Gateway netip.Addr       // e.g. 10.0.2.2
	MAC     net.HardwareAddr // nil: keep the kernel's
	// Prefix6, if valid (-6), gives the link the address the namespace's
	// stateless autoconfiguration would form in it from the link's MAC,
	// and a default route via Router6, at once: no wait for duplicate
	// address detection or a router advertisement.
	Prefix6 netip.Prefix
	Router6 netip.Addr
	// Addr6, if valid, is the IPv6 address to give the link in place of
	// the one autoconfiguration would form (pasta's --address).
	Addr6 netip.Prefix
}

// Configure applies p. It is idempotent, so attaching to a tap that is
// already configured (nsgate restarted on rootlesskit's tap0) succeeds.
func Configure(p Params) error {
	link, err := netlink.LinkByName(p.Link)
	if err != nil {
		return fmt.Errorf("configure: find link %q: %w", p.Link, err)
	}
	if err := netlink.LinkSetMTU(link, p.MTU); err != nil {
		return fmt.Errorf("configure: set MTU %d on %q: %w", p.MTU, p.Link, err)
	}
	if p.MAC != nil {
		if err := netlink.LinkSetHardwareAddr(link, p.MAC); err != nil {
			return fmt.Errorf("configure: set MAC %s on %q: %w", p.MAC, p.Link, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("configure: set %q up: %w", p.Link, err)
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("configure: set lo up: %w", err)
		}
	}
	if p.Addr.IsValid() { // pasta's -6 gives none
		if err := configure4(p, link); err != nil {
			return err
		}
	}
	if p.Prefix6.IsValid() {
		return configure6(p, link)
	}
	return nil
}

// configure4 adds the IPv4 address and default route of p.
func configure4(p Params, link netlink.Link) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Addr.Bits(), 32),
	}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("configure: add address %s to %q: %w", p.Addr, p.Link, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Gw:        p.Gateway.AsSlice(),
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	}
	if !p.Addr.Masked().Contains(p.Gateway) {
		// A host with a /32 and a router outside it (as cloud VMs have):
		// pasta copies both, and the router is then on-link by fiat.
		route.Flags = int(netlink.FLAG_ONLINK)
	}
	if err := netlink.RouteReplace(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("configure: default route via %s dev %q: %w", p.Gateway, p.Link, err)
	}
	return nil
}

// configure6 adds the IPv6 address and default route of p.
func configure6(p Params, link netlink.Link) error {
	link, err := netlink.LinkByIndex(link.Attrs().Index) // its MAC now
	if err != nil {
		return fmt.Errorf("configure: find link %q again: %w", p.Link, err)
	}
	a := p.Addr6.Addr()
	if !p.Addr6.IsValid() {
		if a, err = SLAAC(p.Prefix6, link.Attrs().HardwareAddr); err != nil {
			return fmt.Errorf("configure: link %q: %w", p.Link, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("configure: add address %s/64 to %q: %w", a, p.Link, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Gw:        p.Router6.AsSlice(),
		Dst:       &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
	if err := netlink.RouteReplace(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("configure: IPv6 default route via %s dev %q: %w", p.Router6, p.Link, err)
	}
	return nil
}

// SLAAC returns the address a link with MAC mac forms in the /64 prefix
// (packet.SLAAC): what --configure assigns, so that it and the namespace's
// own autoconfiguration agree on one address.
func SLAAC(prefix netip.Prefix, mac net.HardwareAddr) (netip.Addr, error) {
	if len(mac) != 6 {
		return netip.Addr{}, fmt.Errorf("MAC %v is not an Ethernet address", mac)
	}
	return packet.SLAAC(packet.AddrFromNetip(prefix.Masked().Addr()), packet.MAC(mac)).Netip(), nil
}
