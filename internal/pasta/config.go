package pasta

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/publish"
	"golang.org/x/sys/unix"
)

// linkLocalRouter is the router's address when neither the command line
// nor the host gives an IPv6 gateway on the link.
var linkLocalRouter = netip.MustParseAddr("fe80::2")

// Config turns o into nsgate's configuration, with pasta's semantics.
// upstream finds what the host has for a family (HostUpstream; tests give
// their own).
func (o *Options) Config(upstream func(family int) (Upstream, error)) (*config.Config, error) {
	c := config.New()
	c.MTU, c.MTUSet = DefaultMTU, true
	if o.MTU != 0 {
		c.MTU = o.MTU
	}
	c.Configure = o.ConfigNet
	p := &config.Pasta{PlainGateway: o.NoMapGW, Quiet: o.Quiet, LogFile: o.LogFile, Stderr: o.Stderr,
		MapHostLoopback: o.MapHostLoopback4, MapHostLoopback6: o.MapHostLoopback6}
	c.Pasta = p

	var up4, up6 Upstream
	err4, err6 := ErrNoRoute, ErrNoRoute
	if !o.IPv6Only {
		up4, err4 = upstream(unix.AF_INET)
	}
	if !o.IPv4Only {
		up6, err6 = upstream(unix.AF_INET6)
	}
	for _, err := range []error{err4, err6} {
		if err != nil && !errors.Is(err, ErrNoRoute) {
			return nil, err
		}
	}
	v4 := !o.IPv6Only && (o.Addr4.IsValid() || err4 == nil)
	v6 := !o.IPv4Only && (o.Addr6.IsValid() || err6 == nil)
	if !v4 && !v6 {
		return nil, errors.New("no routable interface: the host has no default route, and no --address was given")
	}
	if err := o.ipv4(c, v4, up4, err4 == nil); err != nil {
		return nil, err
	}
	if v6 {
		if err := o.ipv6(c, up6, err6 == nil); err != nil {
			return nil, err
		}
	}

	switch {
	case o.IfName != "":
		c.TapName = o.IfName
	case err4 == nil:
		c.TapName = up4.Iface
	case err6 == nil:
		c.TapName = up6.Iface
	}
	if len(o.DNS) > 0 && o.DNS[0].Is4() {
		c.DNS = o.DNS[0]
	}
	var err error
	if o.Outbound4.IsValid() {
		if c.OutboundAddr, err = config.OutboundAddr("outbound", o.Outbound4.String(), false); err != nil {
			return nil, err
		}
	}
	if o.Outbound6.IsValid() {
		if c.OutboundAddr6, err = config.OutboundAddr("outbound", o.Outbound6.String(), true); err != nil {
			return nil, err
		}
	}
	c.Pcap, c.PIDFile = o.Pcap, o.PIDFile
	if err := o.ports(c); err != nil {
		return nil, err
	}
	return c, o.targetConfig(c)
}

// ipv4 sets the IPv4 network: given, or copied from the host's upstream.
// Without one (pasta -6, or no IPv4 route) the namespace gets no IPv4
// configuration, and slirp4netns's network stands in for the engine.
func (o *Options) ipv4(c *config.Config, on bool, up Upstream, haveUp bool) error {
	if !on {
		c.Pasta.NoIPv4 = true
		return nil
	}
	addr, bits, gw := o.Addr4, o.PrefixLen4, o.Gateway4
	if haveUp {
		c.Pasta.HostAddr = up.Addr.Addr()
	} else {
		c.Pasta.HostAddr = addr
	}
	if !addr.IsValid() {
		addr = up.Addr.Addr()
	}
	if bits == 0 {
		bits = 24
		if haveUp {
			bits = up.Addr.Bits()
		}
	}
	if !gw.IsValid() {
		if !haveUp {
			return fmt.Errorf("no IPv4 gateway: the host has no default route; give --gateway with --address %s", addr)
		}
		gw = up.Gateway
	}
	if !addr.Is4() || !gw.Is4() || addr == gw {
		return fmt.Errorf("IPv4 address %s and gateway %s: need two different IPv4 addresses", addr, gw)
	}
	prefix := netip.PrefixFrom(addr, bits).Masked()
	mask := ^uint32(0) << (32 - bits)
	b := prefix.Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	c.Net = config.Network{
		Prefix:    prefix,
		Mask:      u32(mask),
		Broadcast: u32(base | ^mask),
		Gateway:   gw,
		DNS:       o.DNSForward4, // invalid: no relay
		Guest:     addr,
		DHCPStart: addr, // DHCP offers the one address
	}
	c.Pasta.MapGuest = o.MapGuestAddr4
	return nil
}

// ipv6 sets the IPv6 network, as ipv4 does. The prefix is the address's
// /64, which router advertisements and DHCPv6 work in.
func (o *Options) ipv6(c *config.Config, up Upstream, haveUp bool) error {
	addr, gw := o.Addr6, o.Gateway6
	if haveUp {
		c.Pasta.HostAddr6 = up.Addr.Addr()
	} else {
		c.Pasta.HostAddr6 = addr
	}
	if !addr.IsValid() {
		addr = up.Addr.Addr()
	}
	if !gw.IsValid() {
		if !haveUp {
			return fmt.Errorf("no IPv6 gateway: the host has no IPv6 default route; give --gateway with --address %s, or -4", addr)
		}
		gw = up.Gateway
	}
	if !addr.Is6() || !gw.Is6() || addr == gw {
		return fmt.Errorf("IPv6 address %s and gateway %s: need two different IPv6 addresses", addr, gw)
	}
	c.EnableIPv6 = true
	c.Net6 = config.Network6{
		Prefix:    netip.PrefixFrom(addr, 64).Masked(),
		Gateway:   gw,
		DNS:       o.DNSForward6,
		LinkLocal: linkLocalRouter,
		Guest:     addr,
	}
	if gw.IsLinkLocalUnicast() {
		c.Net6.LinkLocal = gw // the host's router, as the host sees it
	}
	c.Pasta.MapGuest6 = o.MapGuestAddr6
	return nil
}

func u32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ports turns -t and -u into forwards (or auto-following), and checks -T
// and -U, which nsgate supports only as none.
func (o *Options) ports(c *config.Config) error {
	for _, x := range []struct {
		opt   string
		ports *Ports
	}{{"-T", &o.TCPNS}, {"-U", &o.UDPNS}} {
		if m := x.ports.Mode; m != PortsUnset && m != PortsNone {
			return fmt.Errorf("%s: forwarding namespace ports to the host is not supported by nsgate's pasta mode (only none): the namespace reaches the host's loopback through the gateway address, unless --no-map-gw", x.opt)
		}
	}
	for _, x := range []struct {
		opt, proto string
		ports      *Ports
		auto       *bool
	}{{"-t", "tcp", &o.TCP, &c.Pasta.AutoTCP}, {"-u", "udp", &o.UDP, &c.Pasta.AutoUDP}} {
		switch x.ports.Mode {
		case PortsUnset, PortsAuto: // pasta's default is auto
			*x.auto = o.PID > 0 || o.Netns != ""
		case PortsAll:
			return fmt.Errorf("%s all: not supported by nsgate's pasta mode, which would hold a socket per port; give the ports, or auto", x.opt)
		case PortsSpec:
			for _, r := range x.ports.Ranges {
				for i := 0; i <= int(r.Last-r.First); i++ {
					hp := r.First + uint16(i)
					if x.ports.Excludes(hp) {
						continue
					}
					rule := publish.Rule{Proto: x.proto, HostAddr: r.Addr, HostPort: hp, GuestPort: r.Target + uint16(i), Iface: r.Iface}
					if r.Addr.IsValid() {
						if r.Addr.Is6() && !c.EnableIPv6 {
							return fmt.Errorf("%s %s/%d: an IPv6 forward, but IPv6 is off (-4, or no IPv6 route)", x.opt, r.Addr, hp)
						}
						c.Publish = append(c.Publish, rule)
						continue
					}
					// No address: both families, as pasta binds.
					if !c.Pasta.NoIPv4 {
						rule.HostAddr = netip.IPv4Unspecified()
						c.Publish = append(c.Publish, rule)
					}
					if c.EnableIPv6 {
						rule.HostAddr = netip.IPv6Unspecified()
						c.Publish = append(c.Publish, rule)
					}
				}
			}
		}
	}
	return nil
}

// targetConfig sets the namespace to serve: a PID's, a --netns file
// (watched: pasta ends when it is deleted), or a new one for a command.
func (o *Options) targetConfig(c *config.Config) error {
	switch {
	case o.PID > 0:
		if _, err := os.Stat("/proc/" + strconv.Itoa(o.PID)); err != nil {
			return fmt.Errorf("target PID %d: no such process", o.PID)
		}
		c.PID = o.PID
		c.NetnsPath = fmt.Sprintf("/proc/%d/ns/net", o.PID)
		c.UsernsPath = fmt.Sprintf("/proc/%d/ns/user", o.PID)
	case o.Netns != "":
		if _, err := os.Stat(o.Netns); err != nil {
			return fmt.Errorf("--netns %s: %w", o.Netns, err)
		}
		if o.Userns != "" {
			if _, err := os.Stat(o.Userns); err != nil {
				return fmt.Errorf("--userns %s: %w", o.Userns, err)
			}
		}
		c.NetnsPath, c.UsernsPath = o.Netns, o.Userns
		c.Pasta.WatchNetns = true
	default:
		c.Spawn, c.Configure = true, true
		c.Command = o.Command
		if len(c.Command) == 0 {
			sh := os.Getenv("SHELL")
			if sh == "" {
				sh = "/bin/sh"
			}
			c.Command = []string{sh}
		}
		return nil // the command runs in the foreground, unsandboxed
	}
	c.Pasta.Daemon = !o.Foreground
	c.EnableSandbox, c.EnableSeccomp = !o.NoSandbox, !o.NoSandbox
	return nil
}
