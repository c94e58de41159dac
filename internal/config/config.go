// Package config parses and validates nsgate's command line, which is a
// superset of slirp4netns's: the same options, defaults and error texts (each
// error also names the offending value), so that rootlesskit and podman can
// run nsgate in slirp4netns's place.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nsgate/nsgate/internal/getopt"
	"github.com/nsgate/nsgate/internal/publish"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/policy"
	"golang.org/x/sys/unix"
)

// MaxAPISocketPath is the longest path a unix socket can be bound to
// (sun_path, without its terminating NUL).
const MaxAPISocketPath = 107

// CheckUnixPath reports whether path can be bound as a unix socket: not
// empty and short enough for its address. opt names the option for the
// message.
func CheckUnixPath(opt, path string) error {
	if path == "" {
		return fmt.Errorf("%s: empty path", opt)
	}
	if len(path) > MaxAPISocketPath {
		return fmt.Errorf("%s %q: path too long for a unix socket (%d bytes, at most %d)", opt, path, len(path), MaxAPISocketPath)
	}
	return nil
}

// CheckAPISocket reports whether path can be the API socket.
func CheckAPISocket(path string) error { return CheckUnixPath("--api-socket", path) }

// Defaults, as slirp4netns has them.
const (
	DefaultMTU = 1500
	// SpawnMTU is the MTU of nsgate -- CMD without --mtu: as pasta's spawn
	// mode; with no caller to match, the fast one.
	SpawnMTU       = 65520
	MaxMTU         = 65521
	DefaultTapName = "tap0"
	DefaultCIDR    = "10.0.2.0/24"
	DefaultCIDR6   = "fd00::/64"
)

// ErrUsage marks an incomplete command line: the caller prints the usage text
// and exits 2.
var ErrUsage = errors.New("missing target: give PID|PATH [TAPNAME], --netns PATH, or -- CMD")

// MaxBusyPoll bounds --busy-poll: polling longer than an answer takes
// only burns the CPU.
const MaxBusyPoll = time.Millisecond

// Config is the parsed command line.
type Config struct {
	Configure           bool
	ExitFD              int // -1 when not given
	ReadyFD             int // -1 when not given
	MTU                 int
	MTUSet              bool // -m given: spawn mode keeps it
	EnableIPv6          bool
	DisableHostLoopback bool
	DisableDNS          bool
	// DNS, if valid (--dns), is the nameserver the namespace is told to use
	// (DHCP, and spawn mode's resolv.conf) in place of the DNS address.
	DNS           netip.Addr
	MAC           packet.MAC
	MACSet        bool
	TapName       string
	APISocket     string         // -a: the slirp4netns API socket path
	OutboundAddr  netip.Addr     // --outbound-addr: source of outbound TCP and UDP (invalid: any)
	OutboundAddr6 netip.Addr     // --outbound-addr6: source of outbound IPv6 TCP and UDP
	EnableSandbox bool           // mount namespace with /etc and /run only, capabilities dropped
	EnableSeccomp bool           // system calls limited to nsgate's own
	Publish       []publish.Rule // -p: static port forwards (GuestAddr unset)
	// MaxFlows (--max-flows) caps the flows of all protocols together; 0:
	// derived from RLIMIT_NOFILE (flow.Derive).
	MaxFlows int
	Egress   []policy.Rule // --deny, --allow, --block-host, in order
	Pcap     string        // --pcap: record the tap's frames to this file
	PcapMax  int64         // --pcap-max: its size cap in bytes (0: pcap.DefaultMax)
	// BusyPoll (--busy-poll) is how long the loop polls before it sleeps
	// during request/response traffic: 0 the default, negative never
	// (--busy-poll=0), as engine.Config.BusyPoll.
	BusyPoll time.Duration

	// Target: exactly one of PID, NetnsPath (path mode) or Spawn is used.
	PID        int
	NetnsPath  string // /proc/PID/ns/net in pid mode
	UsernsPath string // empty: do not join a user namespace
	netnsType  string
	usernsSet  bool

	// Spawn mode: nsgate -- CMD [ARG]...
	Spawn   bool
	Command []string

	// VM mode: a VM's frames over a unix stream socket (qemu's stream
	// netdev) in place of a tap. Socket is the path to listen on
	// (--socket), SocketFD an already connected socket (--fd, -1: none).
	Socket   string
	SocketFD int
	OneOff   bool   // --one-off: exit when the VM disconnects
	PIDFile  string // --pid-file: written before serving, removed on exit

	Net  Network
	Net6 Network6 // --cidr6: served with -6

	// Pasta is what differs when nsgate runs as pasta; nil otherwise.
	Pasta *Pasta

	Help    bool
	Version bool
}

// Network holds the addresses derived from --cidr.
type Network struct {
	Prefix    netip.Prefix
	Mask      netip.Addr
	Broadcast netip.Addr
	Gateway   netip.Addr // network+2: nsgate itself, and the host
	DNS       netip.Addr // network+3
	Guest     netip.Addr // network+100: the address --configure sets (a VM: DHCPStart)
	DHCPStart netip.Addr // network+15: the first address DHCP leases
}

// NewNetwork derives the fixed addresses of a network, validating it as
// slirp4netns does.
func NewNetwork(cidr string) (Network, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return Network{}, fmt.Errorf("--cidr %q: invalid CIDR", cidr)
	}
	if p.Bits() < 1 || p.Bits() > 25 {
		return Network{}, fmt.Errorf("--cidr %q: prefix length needs to be 1-25", cidr)
	}
	if p.Masked() != p {
		return Network{}, fmt.Errorf("--cidr %q: CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24", cidr)
	}
	n, mask, bcast := span(p)
	return Network{
		Prefix:    p,
		Mask:      mask,
		Broadcast: bcast,
		Gateway:   u32(n + 2),
		DNS:       u32(n + 3),
		Guest:     u32(n + 100),
		DHCPStart: u32(n + 15),
	}, nil
}

// HostNetwork is the Network of pasta's addressing: guest is an address of
// a real network (by default the host's own), gateway its router, dns the
// --dns-forward address (invalid: none). DHCP offers guest itself.
func HostNetwork(guest netip.Prefix, gateway, dns netip.Addr) Network {
	p := guest.Masked()
	_, mask, bcast := span(p)
	return Network{Prefix: p, Mask: mask, Broadcast: bcast, Gateway: gateway, DNS: dns,
		Guest: guest.Addr(), DHCPStart: guest.Addr()}
}

// span returns an IPv4 prefix's network address as a number, its mask and
// its broadcast address.
func span(p netip.Prefix) (base uint32, mask, bcast netip.Addr) {
	b := p.Addr().As4()
	base = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	m := ^uint32(0) << (32 - p.Bits())
	return base, u32(m), u32(base | ^m)
}

// Network6 holds the IPv6 addresses derived from --cidr6, as slirp4netns
// fixes them in fd00::/64.
type Network6 struct {
	Prefix    netip.Prefix // a /64: SLAAC needs one
	Gateway   netip.Addr   // prefix::2: nsgate itself, and the host's ::1
	DNS       netip.Addr   // prefix::3
	LinkLocal netip.Addr   // fe80::2: the router, the source of its advertisements
	// Guest, if valid, is the namespace's address (pasta's); invalid: the
	// one it forms from its MAC by autoconfiguration.
	Guest netip.Addr
}

// Pasta is what nsgate does differently when invoked as pasta
// (internal/pasta parses that command line into a Config).
//
// Addressing is the host's: Net.Guest and Net6.Guest are an address of
// the host's own network (by default the host's own address), so nsgate
// answers ARP and NDP for every other address there, and only the
// namespace's own address is not reached through it.
type Pasta struct {
	PlainGateway bool // --no-map-gw: the gateway is the real router
	// MapHostLoopback (--map-host-loopback), if valid, is the address that
	// reaches the host's loopback in place of the gateway, which is then
	// the real router.
	MapHostLoopback  netip.Addr
	MapHostLoopback6 netip.Addr
	MapGuest         netip.Addr // --map-guest-addr: reaches HostAddr
	MapGuest6        netip.Addr
	HostAddr         netip.Addr // the host's own address, where MapGuest leads
	HostAddr6        netip.Addr
	NoIPv4           bool // -6: the namespace gets no IPv4 configuration
	// AutoTCP and AutoUDP (-t auto, -u auto) forward the ports the
	// namespace binds, followed twice a second.
	AutoTCP, AutoUDP bool
	// WatchNetns ends nsgate when the --netns file is deleted (podman
	// deletes it to tear down).
	WatchNetns bool
	// Daemon: a parent waits on the ready fd and exits; the server then
	// detaches from its standard streams (to LogFile, if set).
	Daemon  bool
	LogFile string
	Stderr  bool // -e: the daemon keeps standard error
	Quiet   bool // -q: nothing printed on success
}

// NewNetwork6 derives the fixed IPv6 addresses of prefix.
func NewNetwork6(cidr string) (Network6, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		return Network6{}, fmt.Errorf("--cidr6 %q: invalid IPv6 prefix", cidr)
	}
	if p.Bits() != 64 {
		return Network6{}, fmt.Errorf("--cidr6 %q: prefix length needs to be 64 (stateless autoconfiguration takes a /64)", cidr)
	}
	if p.Masked() != p {
		return Network6{}, fmt.Errorf("--cidr6 %q: needs to be a prefix like fd00::/64, not an address in one", cidr)
	}
	if a := p.Addr(); !a.IsGlobalUnicast() && !a.IsPrivate() || a.IsLinkLocalUnicast() {
		return Network6{}, fmt.Errorf("--cidr6 %q: needs to be a unicast prefix (ULA like fd00::/64, or global)", cidr)
	}
	b := p.Addr().As16()
	host := func(n byte) netip.Addr { c := b; c[15] = n; return netip.AddrFrom16(c) }
	return Network6{
		Prefix:    p,
		Gateway:   host(2),
		DNS:       host(3),
		LinkLocal: netip.MustParseAddr("fe80::2"),
	}, nil
}

func u32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func fdArg(name string, dst func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("--%s %q: %s must be a non-negative integer", name, v, name)
		}
		*dst(c) = n
		return nil
	}
}

// opt is one entry of options.
func opt(long string, short byte, hasArg bool, handler func(c *Config, val string) error) getopt.Option[Config] {
	return getopt.Option[Config]{Long: long, Short: short, HasArg: hasArg, Handler: handler}
}

var options = []getopt.Option[Config]{
	opt("configure", 'c', false, func(c *Config, _ string) error { c.Configure = true; return nil }),
	opt("exit-fd", 'e', true, fdArg("exit-fd", func(c *Config) *int { return &c.ExitFD })),
	opt("ready-fd", 'r', true, fdArg("ready-fd", func(c *Config) *int { return &c.ReadyFD })),
	opt("mtu", 'm', true, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxMTU {
			return fmt.Errorf("--mtu %q: MTU must be a positive integer (< %d)", v, MaxMTU+1)
		}
		c.MTU, c.MTUSet = n, true
		return nil
	}),
	opt("enable-ipv6", '6', false, func(c *Config, _ string) error { c.EnableIPv6 = true; return nil }),
	opt("api-socket", 'a', true, func(c *Config, v string) error {
		c.APISocket = v
		return CheckAPISocket(v)
	}),
	opt("publish", 'p', true, func(c *Config, v string) error {
		rules, err := publish.Parse(v)
		c.Publish = append(c.Publish, rules...)
		return err
	}),
	opt("cidr", 0, true, func(c *Config, v string) error {
		n, err := NewNetwork(v)
		c.Net = n
		return err
	}),
	opt("cidr6", 0, true, func(c *Config, v string) error {
		n, err := NewNetwork6(v)
		c.Net6 = n
		return err
	}),
	opt("disable-host-loopback", 0, false, func(c *Config, _ string) error { c.DisableHostLoopback = true; return nil }),
	opt("netns-type", 0, true, func(c *Config, v string) error {
		if v != "pid" && v != "path" {
			return fmt.Errorf("--netns-type %q: must be pid or path", v)
		}
		c.netnsType = v
		return nil
	}),
	opt("netns", 0, true, func(c *Config, v string) error { c.NetnsPath, c.netnsType = v, "path"; return nil }),
	opt("userns-path", 0, true, func(c *Config, v string) error { c.UsernsPath, c.usernsSet = v, true; return nil }),
	opt("userns", 0, true, func(c *Config, v string) error { c.UsernsPath, c.usernsSet = v, true; return nil }),
	opt("enable-sandbox", 0, false, func(c *Config, _ string) error { c.EnableSandbox = true; return nil }),
	opt("enable-seccomp", 0, false, func(c *Config, _ string) error { c.EnableSeccomp = true; return nil }),
	opt("outbound-addr", 0, true, func(c *Config, v string) error {
		a, err := OutboundAddr("outbound-addr", v, false)
		c.OutboundAddr = a
		return err
	}),
	opt("outbound-addr6", 0, true, func(c *Config, v string) error {
		a, err := OutboundAddr("outbound-addr6", v, true)
		c.OutboundAddr6 = a
		return err
	}),
	opt("disable-dns", 0, false, func(c *Config, _ string) error { c.DisableDNS = true; return nil }),
	opt("dns", 0, true, func(c *Config, v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() || a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("--dns %q: has to be an IPv4 unicast address (IPv6 clients are told nsgate's own DNS address, fd00::3 by default)", v)
		}
		c.DNS = a
		return nil
	}),
	opt("macaddress", 0, true, func(c *Config, v string) error {
		m, err := ParseMAC(v)
		if err != nil {
			return fmt.Errorf("--macaddress %q: %w", v, err)
		}
		c.MAC, c.MACSet = m, true
		return nil
	}),
	opt("target-type", 0, true, func(c *Config, v string) error {
		if v != "netns" {
			return fmt.Errorf("--target-type %q: only netns is supported", v)
		}
		return nil
	}),
	opt("socket", 's', true, func(c *Config, v string) error {
		if err := CheckUnixPath("--socket", v); err != nil {
			return err
		}
		c.Socket = v
		return nil
	}),
	opt("fd", 'F', true, fdArg("fd", func(c *Config) *int { return &c.SocketFD })),
	opt("one-off", '1', false, func(c *Config, _ string) error { c.OneOff = true; return nil }),
	opt("pid-file", 'P', true, func(c *Config, v string) error {
		if v == "" {
			return errors.New("--pid-file: empty path")
		}
		c.PIDFile = v
		return nil
	}),
	opt("max-flows", 0, true, func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("--max-flows %q: must be a positive integer", v)
		}
		c.MaxFlows = n
		return nil
	}),
	opt("busy-poll", 0, true, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if v == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || d > MaxBusyPoll {
			return fmt.Errorf("--busy-poll %q: must be a duration from 0 (off) to %v, such as 100us", v, MaxBusyPoll)
		}
		c.BusyPoll = d
		if d == 0 {
			c.BusyPoll = -1
		}
		return nil
	}),
	opt("deny", 0, true, egressRule("--deny", true)),
	opt("allow", 0, true, egressRule("--allow", false)),
	opt("block-host", 0, false, func(c *Config, _ string) error {
		c.Egress = append(c.Egress, policy.Rule{Deny: true, Host: true})
		return nil
	}),
	opt("pcap", 0, true, func(c *Config, v string) error {
		if v == "" {
			return errors.New("--pcap: empty path")
		}
		c.Pcap = v
		return nil
	}),
	opt("pcap-max", 0, true, func(c *Config, v string) error {
		n, err := ParseSize(v)
		if err != nil || n < 24 {
			return fmt.Errorf("--pcap-max %q: a size of at least 24 bytes (the file header), as N, NK, NM or NG", v)
		}
		c.PcapMax = n
		return nil
	}),
	opt("help", 'h', false, func(c *Config, _ string) error { c.Help = true; return nil }),
	opt("version", 'v', false, func(c *Config, _ string) error { c.Version = true; return nil }),
}

func egressRule(opt string, deny bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		r, err := policy.Parse(opt, deny, v)
		c.Egress = append(c.Egress, r)
		return err
	}
}

// ParseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024).
func ParseSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, v[:len(v)-1]
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, v[:len(v)-1]
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: not a byte count", v)
	}
	return n * mult, nil
}

// OutboundAddr resolves --outbound-addr(6) VALUE, an address or the name
// of an interface (its first address of the family), and checks that it is
// an address of this host, so that a typo fails now rather than every
// connection later.
func OutboundAddr(opt, v string, six bool) (netip.Addr, error) {
	family := "IPv4"
	if six {
		family = "IPv6"
	}
	bad := func(why string) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("--%s %q: has to be a valid %s address or interface name (%s)", opt, v, family, why)
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		ifc, ierr := net.InterfaceByName(v)
		if ierr != nil {
			return bad("no such address or interface")
		}
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			if ipn, ok := ad.(*net.IPNet); ok {
				if c, ok := netip.AddrFromSlice(ipn.IP); ok && c.Unmap().Is4() != six && !(six && c.IsLinkLocalUnicast()) {
					a = c.Unmap()
					break
				}
			}
		}
		if !a.IsValid() {
			return bad("interface has no usable " + family + " address")
		}
	}
	a = a.Unmap()
	if a.Is4() == six || a.Zone() != "" {
		return bad("wrong address family")
	}
	// Binding a socket is the test the kernel will apply to each connection.
	var fam int
	var sa unix.Sockaddr
	if six {
		fam, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: a.As16()}
	} else {
		fam, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: a.As4()}
	}
	fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return bad(err.Error())
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, sa); err != nil {
		return bad("not an address of this host: " + err.Error())
	}
	return a, nil
}

// ParseMAC parses aa:bb:cc:dd:ee:ff. Multicast addresses are refused because
// the kernel will not give one to an interface.
func ParseMAC(s string) (packet.MAC, error) {
	var m packet.MAC
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return m, errors.New("a MAC address is 6 hex bytes separated by ':'")
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 16, 8)
		if err != nil || len(p) == 0 || len(p) > 2 {
			return m, errors.New("a MAC address is 6 hex bytes separated by ':'")
		}
		m[i] = byte(v)
	}
	if m.IsMulticast() {
		return m, errors.New("a multicast MAC address cannot be given to an interface")
	}
	return m, nil
}

// New returns the configuration of an empty command line: slirp4netns's
// defaults, and no target.
func New() *Config {
	c := &Config{ExitFD: -1, ReadyFD: -1, SocketFD: -1, MTU: DefaultMTU, TapName: DefaultTapName}
	var err error
	if c.Net, err = NewNetwork(DefaultCIDR); err != nil {
		panic(err) // the default is a constant
	}
	if c.Net6, err = NewNetwork6(DefaultCIDR6); err != nil {
		panic(err)
	}
	return c
}

// Parse parses args (without the program name). Help and Version short-cut
// all other checks, as with slirp4netns. ErrUsage means no target was given.
func Parse(args []string) (*Config, error) {
	c := New()
	r, err := getopt.Parse(c, options, args, getopt.Mode{})
	operands, command := r.Operands, r.Command
	c.Spawn = r.DashDash
	if c.Help || c.Version {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if c.PcapMax > 0 && c.Pcap == "" {
		return nil, errors.New("--pcap-max needs --pcap FILE")
	}
	for _, r := range c.Publish {
		if !r.HostAddr.Is4() && !c.EnableIPv6 {
			return nil, fmt.Errorf("--publish [%s]:%d: an IPv6 forward needs -6 (--enable-ipv6)", r.HostAddr, r.HostPort)
		}
	}
	if c.VM() {
		return c, c.checkVM(operands, command)
	}
	if c.OneOff {
		return nil, errors.New("--one-off needs --socket: it ends nsgate when the VM disconnects")
	}
	if c.MACSet && !c.Configure && !c.Spawn {
		return nil, errors.New("--macaddress needs --configure (-c)")
	}
	if c.Spawn {
		if len(command) == 0 {
			return nil, errors.New("no command after --")
		}
		if c.NetnsPath != "" {
			operands = append(operands, c.NetnsPath)
		}
		if len(operands) > 0 {
			return nil, fmt.Errorf("a target (%s) and a command after -- cannot both be given", strings.Join(operands, " "))
		}
		if c.usernsSet {
			return nil, errors.New("--userns-path cannot be used with -- CMD: nsgate creates the namespaces itself")
		}
		if c.EnableSandbox {
			// The sandbox re-executes nsgate, which would orphan CMD's
			// bookkeeping; CMD's own namespaces are the confinement here.
			return nil, errors.New("--enable-sandbox cannot be used with -- CMD")
		}
		c.Command = command
		c.Configure = true
		if !c.MTUSet {
			c.MTU = SpawnMTU
		}
		return c, nil
	}
	return c, c.resolveTarget(operands)
}

// VM reports whether nsgate serves a VM over a stream socket (--socket or
// --fd) rather than a namespace's tap.
func (c *Config) VM() bool { return c.Socket != "" || c.SocketFD >= 0 }

// VMMTU is the MTU a VM is offered without --mtu, as passt offers it: the
// guest's virtio-net takes 65,520-byte frames, and TCP through nsgate is
// fastest with them.
const VMMTU = 65520

// checkVM validates VM mode: no target and nothing that acts on a
// namespace.
func (c *Config) checkVM(operands, command []string) error {
	switch {
	case c.Socket != "" && c.SocketFD >= 0:
		return errors.New("--socket and --fd cannot both be given: listen on a path, or serve one connected socket")
	case c.Spawn:
		return fmt.Errorf("--socket or --fd, and a command after -- (%s), cannot both be given", strings.Join(command, " "))
	case c.NetnsPath != "" || len(operands) > 0:
		target := c.NetnsPath
		if target == "" {
			target = strings.Join(operands, " ")
		}
		return fmt.Errorf("--socket or --fd serves a VM: a namespace target (%s) cannot be given too", target)
	case c.usernsSet:
		return errors.New("--userns-path cannot be used with --socket or --fd: no namespace is joined")
	case c.Configure:
		return errors.New("--configure cannot be used with --socket or --fd: the VM configures itself by DHCP")
	case c.MACSet:
		return errors.New("--macaddress cannot be used with --socket or --fd: the VM's MAC is qemu's (-device virtio-net-pci,mac=...)")
	case c.SocketFD >= 0 && (c.SocketFD == c.ExitFD || c.SocketFD == c.ReadyFD):
		return fmt.Errorf("--fd %d is also the exit or ready fd", c.SocketFD)
	}
	if !c.MTUSet {
		c.MTU = VMMTU
	}
	// The VM takes its address by DHCP, and the first lease is its: the
	// address forwards go to, as with qemu's own user networking.
	c.Net.Guest = c.Net.DHCPStart
	return nil
}

// resolveTarget turns the operands PID|PATH [TAPNAME] (or [TAPNAME] after
// --netns) into namespace paths.
func (c *Config) resolveTarget(operands []string) error {
	if c.NetnsPath == "" {
		// The target comes from the first operand; after --netns PATH the
		// operands are only [TAPNAME].
		if len(operands) == 0 {
			return ErrUsage
		}
		target := operands[0]
		operands = operands[1:]
		pid, err := strconv.Atoi(target)
		isPID := err == nil
		switch {
		case c.netnsType == "pid" && (!isPID || pid < 1):
			return fmt.Errorf("target %q: PID must be a positive integer", target)
		case c.netnsType == "path" || !isPID:
			c.NetnsPath = target
			if _, err := os.Stat(target); err != nil {
				return fmt.Errorf("network namespace path %q: %w", target, unwrapPathErr(err))
			}
		case pid < 1:
			return fmt.Errorf("target %q: PID must be a positive integer", target)
		default:
			c.PID = pid
			c.NetnsPath = fmt.Sprintf("/proc/%d/ns/net", pid)
			if !c.usernsSet {
				c.UsernsPath = fmt.Sprintf("/proc/%d/ns/user", pid)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
				return fmt.Errorf("target PID %d: no such process", pid)
			}
		}
	} else if _, err := os.Stat(c.NetnsPath); err != nil {
		return fmt.Errorf("--netns %q: %w", c.NetnsPath, unwrapPathErr(err))
	}
	if len(operands) > 0 {
		c.TapName = operands[0]
		operands = operands[1:]
	}
	if len(operands) > 0 {
		return fmt.Errorf("too many arguments: %q", strings.Join(operands, " "))
	}
	if err := ValidTapName(c.TapName); err != nil {
		return err
	}
	if c.usernsSet {
		if _, err := os.Stat(c.UsernsPath); err != nil {
			return fmt.Errorf("--userns-path %q: %w", c.UsernsPath, unwrapPathErr(err))
		}
	}
	return nil
}

// ValidTapName checks an interface name as the kernel would (IFNAMSIZ).
func ValidTapName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == ".." {
		return fmt.Errorf("tap name %q: an interface name is 1-15 characters without '/', ':' or spaces", name)
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
