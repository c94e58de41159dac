// Package pasta reads pasta(1)'s command line, which nsgate answers to when
// it is invoked as "pasta" (podman 5/6, rootlesskit 2/3 and Docker rootless
// run a binary of that name). It only parses and checks: the caller turns
// Options into nsgate's configuration, with pasta's semantics (addresses
// copied from the host, the gateway mapped to the host, ports by -t/-u).
//
// Every option podman and rootlesskit pass is implemented. Options of pasta
// that nsgate does not implement are refused with an error that says so,
// never ignored; so is an option pasta itself does not have, such as
// --host-lo-to-ns-lo, which rootlesskit probes for.
package pasta

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nsgate/nsgate/internal/getopt"
)

// Options is pasta's command line, parsed.
type Options struct {
	// Addressing; invalid or zero means "as on the host".
	Addr4, Addr6             netip.Addr // -a, once per family
	PrefixLen4               int        // -n; 0: the host's
	Gateway4, Gateway6       netip.Addr // -g
	DNSForward4, DNSForward6 netip.Addr // --dns-forward
	MapHostLoopback4         netip.Addr // --map-host-loopback: reaches the host's 127.0.0.1
	MapHostLoopback6         netip.Addr
	MapGuestAddr4            netip.Addr // --map-guest-addr: reaches the host's own address
	MapGuestAddr6            netip.Addr
	NoMapGW                  bool         // --no-map-gw
	DNS                      []netip.Addr // -D: the nameserver the namespace is told (DHCP)
	Outbound4, Outbound6     netip.Addr   // -o
	IPv4Only, IPv6Only       bool         // -4, -6
	MTU                      int          // -m; 0: 65520
	IfName                   string       // -I; "": the host's interface's name
	ConfigNet                bool         // --config-net

	TCP, UDP     Ports // -t, -u: host ports to the namespace
	TCPNS, UDPNS Ports // -T, -U: namespace ports to the host

	Foreground bool   // -f
	Quiet      bool   // -q
	Debug      bool   // -d, --trace
	Stderr     bool   // -e
	LogFile    string // -l
	PIDFile    string // -P, --pid
	Pcap       string // -p
	NoSandbox  bool   // --no-sandbox (nsgate's own; pasta's is always on)

	// Target: a PID, --netns PATH (with --userns), or a command.
	PID     int
	Netns   string
	Userns  string
	Command []string

	Help, Version bool
}

// DefaultMTU is pasta's: the largest 802.3 frame's payload, rounded down to
// 32-bit words.
const DefaultMTU = 65520

func addrOpt(name string, set func(o *Options, a netip.Addr) error) func(*Options, string) error {
	return func(o *Options, v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("invalid address for %s: %s", name, v)
		}
		return set(o, a.Unmap())
	}
}

// perFamily stores a into the IPv4 or IPv6 slot; a second address of the
// same family is an error, as in pasta ("can be specified zero to two
// times").
func perFamily(name string, v4, v6 func(o *Options) *netip.Addr) func(o *Options, a netip.Addr) error {
	return func(o *Options, a netip.Addr) error {
		dst := v4(o)
		if a.Is6() {
			dst = v6(o)
		}
		if dst.IsValid() {
			return fmt.Errorf("%s given twice for one address family: %s and %s", name, *dst, a)
		}
		*dst = a
		return nil
	}
}

func portsOpt(name string, dst func(o *Options) *Ports) func(*Options, string) error {
	return func(o *Options, v string) error { return dst(o).Add(name, v) }
}

func flag(set func(o *Options)) func(*Options, string) error {
	return func(o *Options, _ string) error { set(o); return nil }
}

// unsupported refuses a pasta option nsgate does not implement. short and
// hasArg are pasta's, so that the option is recognised as pasta would.
func unsupported(name string, short byte, hasArg bool, why string) getopt.Option[Options] {
	return getopt.Option[Options]{Long: name, Short: short, HasArg: hasArg, Handler: func(*Options, string) error {
		return fmt.Errorf("option '--%s' is not supported by nsgate's pasta mode: %s", name, why)
	}}
}

var options = []getopt.Option[Options]{
	{Long: "address", Short: 'a', HasArg: true, Handler: addrOpt("--address", perFamily("--address",
		func(o *Options) *netip.Addr { return &o.Addr4 }, func(o *Options) *netip.Addr { return &o.Addr6 }))},
	{Long: "netmask", Short: 'n', HasArg: true, Handler: func(o *Options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			m, perr := netip.ParseAddr(v)
			if perr != nil || !m.Is4() {
				return fmt.Errorf("invalid netmask: %s (dot-decimal or a prefix length)", v)
			}
			var size int
			if n, size = net.IPMask(m.AsSlice()).Size(); size == 0 {
				return fmt.Errorf("invalid netmask: %s (not contiguous)", v)
			}
		}
		if n < 1 || n > 32 {
			return fmt.Errorf("invalid netmask: %s (prefix length 1-32)", v)
		}
		o.PrefixLen4 = n
		return nil
	}},
	{Long: "gateway", Short: 'g', HasArg: true, Handler: addrOpt("--gateway", perFamily("--gateway",
		func(o *Options) *netip.Addr { return &o.Gateway4 }, func(o *Options) *netip.Addr { return &o.Gateway6 }))},
	{Long: "dns-forward", HasArg: true, Handler: addrOpt("--dns-forward", perFamily("--dns-forward",
		func(o *Options) *netip.Addr { return &o.DNSForward4 }, func(o *Options) *netip.Addr { return &o.DNSForward6 }))},
	{Long: "map-host-loopback", HasArg: true, Handler: addrOpt("--map-host-loopback", perFamily("--map-host-loopback",
		func(o *Options) *netip.Addr { return &o.MapHostLoopback4 }, func(o *Options) *netip.Addr { return &o.MapHostLoopback6 }))},
	{Long: "map-guest-addr", HasArg: true, Handler: addrOpt("--map-guest-addr", perFamily("--map-guest-addr",
		func(o *Options) *netip.Addr { return &o.MapGuestAddr4 }, func(o *Options) *netip.Addr { return &o.MapGuestAddr6 }))},
	{Long: "outbound", Short: 'o', HasArg: true, Handler: addrOpt("--outbound", perFamily("--outbound",
		func(o *Options) *netip.Addr { return &o.Outbound4 }, func(o *Options) *netip.Addr { return &o.Outbound6 }))},
	{Long: "dns", Short: 'D', HasArg: true, Handler: func(o *Options, v string) error {
		if v == "none" || v == "" {
			o.DNS = nil
			return nil
		}
		return addrOpt("--dns", func(o *Options, a netip.Addr) error { o.DNS = append(o.DNS, a); return nil })(o, v)
	}},
	{Long: "no-map-gw", Handler: flag(func(o *Options) { o.NoMapGW = true })},
	{Long: "ipv4-only", Short: '4', Handler: flag(func(o *Options) { o.IPv4Only = true })},
	{Long: "ipv6-only", Short: '6', Handler: flag(func(o *Options) { o.IPv6Only = true })},
	{Long: "mtu", Short: 'm', HasArg: true, Handler: func(o *Options, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 68 || n > DefaultMTU {
			return fmt.Errorf("invalid MTU: %s (68-%d)", v, DefaultMTU)
		}
		o.MTU = n
		return nil
	}},
	{Long: "ns-ifname", Short: 'I', HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" || len(v) > 15 || strings.ContainsAny(v, "/: \t\n") {
			return fmt.Errorf("invalid interface name: %q", v)
		}
		o.IfName = v
		return nil
	}},
	{Long: "config-net", Handler: flag(func(o *Options) { o.ConfigNet = true })},
	{Long: "tcp-ports", Short: 't', HasArg: true, Handler: portsOpt("-t", func(o *Options) *Ports { return &o.TCP })},
	{Long: "udp-ports", Short: 'u', HasArg: true, Handler: portsOpt("-u", func(o *Options) *Ports { return &o.UDP })},
	{Long: "tcp-ns", Short: 'T', HasArg: true, Handler: portsOpt("-T", func(o *Options) *Ports { return &o.TCPNS })},
	{Long: "udp-ns", Short: 'U', HasArg: true, Handler: portsOpt("-U", func(o *Options) *Ports { return &o.UDPNS })},
	{Long: "foreground", Short: 'f', Handler: flag(func(o *Options) { o.Foreground = true })},
	{Long: "quiet", Short: 'q', Handler: flag(func(o *Options) { o.Quiet = true })},
	{Long: "debug", Short: 'd', Handler: flag(func(o *Options) { o.Debug = true })},
	{Long: "trace", Handler: flag(func(o *Options) { o.Debug = true })},
	{Long: "stderr", Short: 'e', Handler: flag(func(o *Options) { o.Stderr = true })},
	{Long: "log-file", Short: 'l', HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" {
			return errors.New("invalid log file: empty path")
		}
		o.LogFile = v
		return nil
	}},
	{Long: "pid", Short: 'P', HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" {
			return errors.New("invalid PID file: empty path")
		}
		o.PIDFile = v
		return nil
	}},
	{Long: "pcap", Short: 'p', HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" {
			return errors.New("invalid pcap file: empty path")
		}
		o.Pcap = v
		return nil
	}},
	{Long: "no-sandbox", Handler: flag(func(o *Options) { o.NoSandbox = true })},
	{Long: "netns", HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" {
			return errors.New("invalid --netns: empty")
		}
		if !strings.Contains(v, "/") {
			v = "/run/netns/" + v // a name, as ip netns gives it
		}
		o.Netns = v
		return nil
	}},
	{Long: "userns", HasArg: true, Handler: func(o *Options, v string) error {
		if v == "" {
			return errors.New("invalid --userns: empty")
		}
		o.Userns = v
		return nil
	}},
	{Long: "help", Short: 'h', Handler: flag(func(o *Options) { o.Help = true })},
	{Long: "version", Handler: flag(func(o *Options) { o.Version = true })},
	unsupported("mac-addr", 'M', true, "the namespace keeps its tap's own MAC"),
	unsupported("interface", 'i', true, "addresses and routes come from the interface with the default route"),
	unsupported("outbound-if4", 0, true, "use --outbound ADDR"),
	unsupported("outbound-if6", 0, true, "use --outbound ADDR"),
	unsupported("search", 'S', true, "the namespace keeps its resolv.conf's search list"),
	unsupported("dhcp-dns", 0, false, "DHCP always passes --dns, or the --dns-forward address"),
	unsupported("dhcp-search", 0, false, "no search list is passed"),
	unsupported("no-tcp", 0, false, "TCP is always served"),
	unsupported("no-udp", 0, false, "UDP is always served"),
	unsupported("no-icmp", 0, false, "ICMP is always served"),
	unsupported("no-dhcp", 0, false, "DHCP is always served"),
	unsupported("no-ndp", 0, false, "NDP is always served"),
	unsupported("no-dhcpv6", 0, false, "DHCPv6 is always served"),
	unsupported("no-ra", 0, false, "router advertisements are always sent"),
	unsupported("no-netns-quit", 0, false, "nsgate ends when the namespace file is deleted"),
	unsupported("runas", 0, true, "nsgate runs as the user that starts it"),
	unsupported("log-size", 0, true, "the log file is not rotated"),
	unsupported("fd", 'F', true, "use nsgate --fd for a VM's socket"),
	unsupported("splice-only", 0, false, "nsgate has no splice path"),
	unsupported("no-splice", 0, false, "nsgate has no splice path"),
	unsupported("no-copy-routes", 0, false, "only the default route is copied"),
	unsupported("no-copy-addrs", 0, false, "only one address per family is copied"),
	unsupported("freebind", 0, false, "forwards bind host addresses as given"),
	unsupported("repair-path", 0, true, "there is no migration"),
	unsupported("conf-path", 0, true, "there is no configuration socket (rootlesskit's pesto port driver)"),
}

// Parse parses args (without the program name). As in pasta, the first
// bad option is the error, even before --version (rootlesskit probes for
// features with "--OPTION --version"), and --help or --version before it
// short-cut every other check.
func Parse(args []string) (*Options, error) {
	o := &Options{}
	r, err := getopt.Parse(o, options, args, getopt.Mode{StopAtOperand: true, StopAtError: true})
	if o.Help || o.Version { // seen before any error: parsing stops there
		return o, nil
	}
	if err != nil {
		return nil, err
	}
	return o, o.target(r)
}

// target resolves what follows the options: PID, a command, or nothing
// with --netns.
func (o *Options) target(r getopt.Result) error {
	cmd := r.Command
	if o.IPv4Only && o.IPv6Only {
		return errors.New("options ipv4-only and ipv6-only are mutually exclusive")
	}

	if !r.DashDash && len(cmd) == 1 {
		if pid, err := strconv.Atoi(cmd[0]); err == nil {
			if pid < 1 {
				return fmt.Errorf("invalid PID: %s", cmd[0])
			}
			if o.Netns != "" {
				return errors.New("both a PID and --netns given")
			}
			o.PID = pid
			return nil
		}
	}
	if o.Netns != "" {
		if len(cmd) > 0 {
			return fmt.Errorf("both --netns and a command given: %s", strings.Join(cmd, " "))
		}
		return nil
	}
	if o.Userns != "" {
		return errors.New("--userns needs a PID or --netns: a command gets new namespaces")
	}
	o.Command = cmd
	return nil
}
