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
	switch {
	case len(o.DNS) > 1:
		return nil, fmt.Errorf("-D given %d times: nsgate's DHCP announces one nameserver", len(o.DNS))
	case len(o.DNS) == 1 && !o.DNS[0].Is4():
		return nil, fmt.Errorf("-D %s: only an IPv4 nameserver can be announced; IPv6 clients are told the --dns-forward address", o.DNS[0])
	case len(o.DNS) == 1:
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
	host, addr, gw, err := pick("IPv4", o.Addr4, o.Gateway4, up, haveUp)
	if err != nil {
		return err
	}
	bits := o.PrefixLen4
	if bits == 0 {
		bits = 24
		if haveUp {
			bits = up.Addr.Bits()
		}
	}
	c.Net = config.HostNetwork(netip.PrefixFrom(addr, bits), gw, o.DNSForward4)
	c.Pasta.HostAddr, c.Pasta.MapGuest = host, o.MapGuestAddr4
	return nil
}

// ipv6 sets the IPv6 network, as ipv4 does. The prefix is the address's
// /64, which router advertisements and DHCPv6 work in.
func (o *Options) ipv6(c *config.Config, up Upstream, haveUp bool) error {
	host, addr, gw, err := pick("IPv6", o.Addr6, o.Gateway6, up, haveUp)
	if err != nil {
		return err
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
	c.Pasta.HostAddr6, c.Pasta.MapGuest6 = host, o.MapGuestAddr6
	return nil
}

// pick chooses one family's addresses: the host's own (where
// --map-guest-addr leads), and the namespace's address and gateway, given
// or the upstream's.
func pick(family string, addr, gw netip.Addr, up Upstream, haveUp bool) (host, a, g netip.Addr, err error) {
	host = addr
	if haveUp {
		host = up.Addr.Addr()
	}
	if !addr.IsValid() {
		addr = up.Addr.Addr()
	}
	if !gw.IsValid() {
		if !haveUp {
			return host, addr, gw, fmt.Errorf("no %s gateway: the host has no %s default route; give --gateway with --address %s", family, family, addr)
		}
		gw = up.Gateway
	}
	if addr.Is4() != (family == "IPv4") || gw.Is4() != (family == "IPv4") || addr == gw {
		return host, addr, gw, fmt.Errorf("%s address %s and gateway %s: need two different %s addresses", family, addr, gw, family)
	}
	return host, addr, gw, nil
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
		if o.Userns != "" { // pasta: the PID's own unless --userns
			c.UsernsPath = o.Userns
		}
	case o.Netns != "":
		if _, err := os.Stat(o.Netns); err != nil {
			return fmt.Errorf("--netns %s: %w", o.Netns, err)
		}
		c.NetnsPath, c.UsernsPath = o.Netns, o.Userns
		c.Pasta.WatchNetns = true
	default:
		c.Spawn, c.Configure = true, true
		o.commandConfig(c)
		return nil
	}
	if o.Userns != "" {
		if _, err := os.Stat(o.Userns); err != nil {
			return fmt.Errorf("--userns %s: %w", o.Userns, err)
		}
	}
	c.Pasta.Daemon = !o.Foreground
	c.EnableSandbox, c.EnableSeccomp = !o.NoSandbox, !o.NoSandbox
	return nil
}

// commandConfig runs a command in new namespaces (nsgate -- CMD): in the
// foreground and unsandboxed, as nsgate's own spawn mode; no command is a
// shell, as pasta starts.
func (o *Options) commandConfig(c *config.Config) {
	c.Command = o.Command
	if len(c.Command) == 0 {
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		c.Command = []string{sh}
	}
}
