package pasta

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Upstream is what pasta copies from the host for one address family: the
// interface with the default route, its address and the router.
type Upstream struct {
	Iface   string
	Addr    netip.Prefix
	Gateway netip.Addr
}

// ErrNoRoute means the host has no default route for a family, or none
// with a global address: pasta then leaves that family out.
var ErrNoRoute = errors.New("no default route")

// HostUpstream finds the host's upstream for family (unix.AF_INET or
// AF_INET6), through netlink in nsgate's own network namespace.
func HostUpstream(family int) (Upstream, error) {
	name := "IPv4"
	if family == unix.AF_INET6 {
		name = "IPv6"
	}
	routes, err := netlink.RouteList(nil, family)
	if err != nil {
		return Upstream{}, fmt.Errorf("list %s routes: %w", name, err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Gw == nil || r.LinkIndex == 0 {
			continue
		}
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		gw, _ := netip.AddrFromSlice(r.Gw)
		up := Upstream{Iface: link.Attrs().Name, Gateway: gw.Unmap()}
		addrs, err := netlink.AddrList(link, family)
		if err != nil {
			return Upstream{}, fmt.Errorf("list %s addresses of %s: %w", name, up.Iface, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED|unix.IFA_F_DEPRECATED) != 0 {
				continue
			}
			ones, _ := a.Mask.Size()
			up.Addr = netip.PrefixFrom(ip.Unmap(), ones)
			return up, nil
		}
		// pasta leaves such a family out, as it does without a route.
		return Upstream{}, fmt.Errorf("%s: the default route's interface %s has no global address: %w", name, up.Iface, ErrNoRoute)
	}
	return Upstream{}, fmt.Errorf("%s: %w", name, ErrNoRoute)
}
