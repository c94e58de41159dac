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
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Addr.Bits(), 32),
	}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("configure: add address %s to %q: %w", p.Addr, p.Link, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("configure: set %q up: %w", p.Link, err)
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("configure: set lo up: %w", err)
		}
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Gw:        p.Gateway.AsSlice(),
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	}
	if err := netlink.RouteReplace(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("configure: default route via %s dev %q: %w", p.Gateway, p.Link, err)
	}
	return nil
}
