package pasta

import (
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nsgate/nsgate/internal/publish"
	"golang.org/x/sys/unix"
)

// upstream is a host like the integration tests' world: default routes via
// 198.51.100.254 and 2001:db8:1::fe on veth0.
func upstream(family int) (Upstream, error) {
	if family == unix.AF_INET {
		return Upstream{Iface: "veth0", Addr: netip.MustParsePrefix("198.51.100.1/24"), Gateway: netip.MustParseAddr("198.51.100.254")}, nil
	}
	return Upstream{Iface: "veth0", Addr: netip.MustParsePrefix("2001:db8:1::1/64"), Gateway: netip.MustParseAddr("fe80::1")}, nil
}

func noIPv6(family int) (Upstream, error) {
	if family == unix.AF_INET6 {
		return Upstream{}, ErrNoRoute
	}
	return upstream(family)
}

// self is a netns file that exists wherever the tests run.
const self = "/proc/self/ns/net"

// TestRootlesskit parses the command lines rootlesskit v3's pasta driver
// builds (pkg/network/pasta), with and without --disable-host-loopback,
// --ipv6 and the implicit port driver.
func TestRootlesskit(t *testing.T) {
	pid := os.Getpid()
	base := []string{"--ns-ifname=tap0", "--mtu=65520", "--config-net", "--address=10.0.2.100", "--netmask=24", "--gateway=10.0.2.2", "--dns-forward=10.0.2.3"}
	tests := []struct {
		name  string
		extra []string
		check func(t *testing.T, o *Options)
	}{
		{"default", []string{"--ipv4-only", "--tcp-ports=none", "--udp-ports=none"}, func(t *testing.T, o *Options) {
			c, err := o.Config(upstream)
			if err != nil {
				t.Fatal(err)
			}
			if c.TapName != "tap0" || c.MTU != 65520 || !c.Configure || c.EnableIPv6 || c.Net.Guest.String() != "10.0.2.100" ||
				c.Net.Prefix.String() != "10.0.2.0/24" || c.Net.Gateway.String() != "10.0.2.2" || c.Net.DNS.String() != "10.0.2.3" {
				t.Errorf("config %+v, net %+v", c, c.Net)
			}
			if c.Pasta.PlainGateway || c.Pasta.AutoTCP || c.Pasta.AutoUDP || len(c.Publish) != 0 || c.PID != pid || !c.EnableSandbox || !c.EnableSeccomp || !c.Pasta.Daemon {
				t.Errorf("pasta %+v, publish %v, pid %d, sandbox %v", c.Pasta, c.Publish, c.PID, c.EnableSandbox)
			}
			if c.Pasta.HostAddr.String() != "198.51.100.1" {
				t.Errorf("host address %s, want the host's 198.51.100.1", c.Pasta.HostAddr)
			}
		}},
		{"disable-host-loopback, ipv6, implicit ports", []string{"--no-map-gw", "--tcp-ns=none", "--udp-ns=none",
			"--address=fd00::100", "--gateway=fd00::2", "--dns-forward=fd00::3", "--tcp-ports=auto", "--udp-ports=auto"}, func(t *testing.T, o *Options) {
			c, err := o.Config(upstream)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Pasta.PlainGateway || !c.Pasta.AutoTCP || !c.Pasta.AutoUDP || !c.EnableIPv6 {
				t.Errorf("pasta %+v, ipv6 %v", c.Pasta, c.EnableIPv6)
			}
			n := c.Net6
			if n.Guest.String() != "fd00::100" || n.Gateway.String() != "fd00::2" || n.DNS.String() != "fd00::3" || n.Prefix.String() != "fd00::/64" || n.LinkLocal.String() != "fe80::2" {
				t.Errorf("net6 %+v", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(slices.Clone(base), tt.extra...)
			o, err := Parse(append(args, strconv.Itoa(pid)))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, o)
			// The detached-netns form: --userns and --netns for the PID.
			o, err = Parse(append(args, "--userns=/proc/"+strconv.Itoa(pid)+"/ns/user", "--netns="+self))
			if err != nil {
				t.Fatal(err)
			}
			c, err := o.Config(upstream)
			if err != nil || c.NetnsPath != self || c.UsernsPath != "/proc/"+strconv.Itoa(pid)+"/ns/user" || !c.Pasta.WatchNetns {
				t.Errorf("--netns form: %v %+v", err, c)
			}
		})
	}
}

// TestProbes: rootlesskit probes features with "--OPTION --version", and
// must see the ones nsgate lacks fail.
func TestProbes(t *testing.T) {
	if o, err := Parse([]string{"--version"}); err != nil || !o.Version {
		t.Errorf("--version: %v", err)
	}
	for _, probe := range [][]string{{"--host-lo-to-ns-lo", "--version"}, {"--conf-path=/dev/null", "--version"}} {
		if _, err := Parse(probe); err == nil {
			t.Errorf("%v succeeded: rootlesskit would pass an option nsgate does not implement", probe)
		}
	}
	// pasta acts on --version where it stands: a bad option after it is
	// never reached.
	if o, err := Parse([]string{"--version", "--bogus"}); err != nil || !o.Version {
		t.Errorf("--version --bogus: %v", err)
	}
}

// TestPodman parses podman's command line (container-libs libnetwork/pasta)
// for -p 127.0.0.1:8085:80 -p 8086:80.
func TestPodman(t *testing.T) {
	o, err := Parse([]string{"--config-net", "-t", "127.0.0.1/8085-8085:80-80", "-t", "8086-8086:80-80", "--dns-forward", "169.254.1.1",
		"-u", "none", "-T", "none", "-U", "none", "--no-map-gw", "--quiet", "--netns", self, "--map-guest-addr", "169.254.1.2"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.Config(upstream)
	if err != nil {
		t.Fatal(err)
	}
	if c.Net.Guest.String() != "198.51.100.1" || c.Net.Prefix.String() != "198.51.100.0/24" || c.Net.Gateway.String() != "198.51.100.254" || c.TapName != "veth0" {
		t.Errorf("IPv4 not copied from the host: %+v, tap %s", c.Net, c.TapName)
	}
	if c.Net6.Guest.String() != "2001:db8:1::1" || c.Net6.Gateway.String() != "fe80::1" || c.Net6.LinkLocal.String() != "fe80::1" {
		t.Errorf("IPv6 not copied from the host: %+v", c.Net6)
	}
	if !c.Pasta.Quiet || !c.Pasta.PlainGateway || c.Pasta.MapGuest.String() != "169.254.1.2" || c.Pasta.AutoTCP || c.Pasta.AutoUDP || !c.Pasta.WatchNetns {
		t.Errorf("pasta %+v", c.Pasta)
	}
	want := []publish.Rule{
		{Proto: "tcp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 8085, GuestPort: 80},
		{Proto: "tcp", HostAddr: netip.IPv4Unspecified(), HostPort: 8086, GuestPort: 80},
		{Proto: "tcp", HostAddr: netip.IPv6Unspecified(), HostPort: 8086, GuestPort: 80},
	}
	if !slices.Equal(c.Publish, want) {
		t.Errorf("forwards %v, want %v", c.Publish, want)
	}
	// Without an IPv6 route, IPv6 is off, and a forward binds IPv4 only.
	c, err = o.Config(noIPv6)
	if err != nil || c.EnableIPv6 || len(c.Publish) != 2 {
		t.Errorf("no IPv6 route: %v, ipv6 %v, forwards %v", err, c.EnableIPv6, c.Publish)
	}
}

func TestPortSpecs(t *testing.T) {
	tests := []struct {
		specs    []string
		mode     PortMode
		ranges   []Range
		excluded [][2]uint16
	}{
		{[]string{"22"}, PortsSpec, []Range{{First: 22, Last: 22, Target: 22}}, nil},
		{[]string{"22:23"}, PortsSpec, []Range{{First: 22, Last: 22, Target: 23}}, nil},
		{[]string{"22,25"}, PortsSpec, []Range{{First: 22, Last: 22, Target: 22}, {First: 25, Last: 25, Target: 25}}, nil},
		{[]string{"22-80:32-90"}, PortsSpec, []Range{{First: 22, Last: 80, Target: 32}}, nil},
		{[]string{"192.0.2.1/22"}, PortsSpec, []Range{{Addr: netip.MustParseAddr("192.0.2.1"), First: 22, Last: 22, Target: 22}}, nil},
		{[]string{"192.0.2.1%eth0/22"}, PortsSpec, []Range{{Addr: netip.MustParseAddr("192.0.2.1"), Iface: "eth0", First: 22, Last: 22, Target: 22}}, nil},
		{[]string{"%eth0/22"}, PortsSpec, []Range{{Iface: "eth0", First: 22, Last: 22, Target: 22}}, nil},
		{[]string{"2001:db8::1/443"}, PortsSpec, []Range{{Addr: netip.MustParseAddr("2001:db8::1"), First: 443, Last: 443, Target: 443}}, nil},
		{[]string{"2000-5000,~3000-3010"}, PortsSpec, []Range{{First: 2000, Last: 5000, Target: 2000}}, [][2]uint16{{3000, 3010}}},
		{[]string{"~25"}, PortsAll, nil, [][2]uint16{{25, 25}}},
		{[]string{"22", "80"}, PortsSpec, []Range{{First: 22, Last: 22, Target: 22}, {First: 80, Last: 80, Target: 80}}, nil},
		{[]string{"none"}, PortsNone, nil, nil},
		{[]string{"auto"}, PortsAuto, nil, nil},
	}
	for _, tt := range tests {
		var p Ports
		for _, s := range tt.specs {
			if err := p.Add("-t", s); err != nil {
				t.Fatalf("%v: %v", tt.specs, err)
			}
		}
		if p.Mode != tt.mode || !slices.Equal(p.Ranges, tt.ranges) || !slices.Equal(p.Excluded, tt.excluded) {
			t.Errorf("%v: %+v, want mode %d ranges %v excluded %v", tt.specs, p, tt.mode, tt.ranges, tt.excluded)
		}
	}
	for _, bad := range [][]string{{""}, {"0"}, {"65536"}, {"80-22"}, {"22-80:1-2"}, {"x"}, {"none", "22"}, {"22", "none"},
		{"auto", "auto"}, {"300.0.0.1/22"}, {"%/22"}, {"22:"}, {"~"}, {"22", "~25"}} {
		var p Ports
		var err error
		for _, s := range bad {
			if err = p.Add("-t", s); err != nil {
				break
			}
		}
		if err == nil || !strings.Contains(err.Error(), "invalid port specifier") {
			t.Errorf("%q: %v, want an invalid port specifier error", bad, err)
		}
	}
}

func TestExpandedPorts(t *testing.T) {
	o, err := Parse([]string{"-t", "2000-2004:3000-3004,~2002", "-u", "198.51.100.1/53", "-4", "--netns", self})
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.Config(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Publish {
		got = append(got, r.Proto+" "+r.HostAddr.String()+":"+strconv.Itoa(int(r.HostPort))+">"+strconv.Itoa(int(r.GuestPort)))
	}
	want := []string{"tcp 0.0.0.0:2000>3000", "tcp 0.0.0.0:2001>3001", "tcp 0.0.0.0:2003>3003", "tcp 0.0.0.0:2004>3004", "udp 198.51.100.1:53>53"}
	if !slices.Equal(got, want) {
		t.Errorf("forwards %v, want %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unrecognized option '--bogus'"},
		{[]string{"--no-dhcp"}, "'--no-dhcp' is not supported"},
		{[]string{"-M", "02:00:00:00:00:01"}, "'--mac-addr' is not supported"},
		{[]string{"-a", "10.0.0.1", "-a", "10.0.0.2"}, "--address given twice"},
		{[]string{"-a", "nonsense"}, "invalid address for --address: nonsense"},
		{[]string{"-n", "255.0.255.0"}, "not contiguous"},
		{[]string{"-m", "20"}, "invalid MTU: 20"},
		{[]string{"-4", "-6"}, "mutually exclusive"},
		{[]string{"--userns", "/proc/self/ns/user"}, "--userns needs a PID or --netns"},
		{[]string{"--netns", self, "1"}, "both a PID and --netns"},
		{[]string{"--netns", self, "sh", "-c", "x"}, "both --netns and a command"},
		{[]string{"-t"}, "requires an argument"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.args)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
	cfgErrors := []struct {
		args []string
		want string
	}{
		{[]string{"-T", "8080", "--netns", self}, "-T: forwarding namespace ports to the host is not supported"},
		{[]string{"-U", "auto", "--netns", self}, "-U: forwarding namespace ports"},
		{[]string{"-t", "all", "--netns", self}, "-t all: not supported"},
		{[]string{"-t", "2001:db8::1/80", "-4", "--netns", self}, "IPv6 is off"},
		{[]string{"--netns", "/nonexistent/netns"}, "--netns /nonexistent/netns"},
		{[]string{"-a", "10.0.0.1", "-g", "10.0.0.1", "-4", "--netns", self}, "need two different IPv4 addresses"},
		{[]string{"-D", "2001:db8::53", "--netns", self}, "only an IPv4 nameserver"},
		{[]string{"-D", "192.0.2.53", "-D", "192.0.2.54", "--netns", self}, "-D given 2 times"},
	}
	for _, tt := range cfgErrors {
		o, err := Parse(tt.args)
		if err == nil {
			_, err = o.Config(upstream)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
	o, _ := Parse([]string{"--netns", self})
	none := func(int) (Upstream, error) { return Upstream{}, ErrNoRoute }
	if _, err := o.Config(none); err == nil || !strings.Contains(err.Error(), "no routable interface") {
		t.Errorf("no routes: %v", err)
	}
}

// TestCommand: without PID or --netns, pasta runs a command, or a shell.
func TestCommand(t *testing.T) {
	o, err := Parse([]string{"-q", "--config-net", "sh", "-c", "ip addr"})
	if err != nil || !slices.Equal(o.Command, []string{"sh", "-c", "ip addr"}) {
		t.Fatalf("%v %q", err, o.Command)
	}
	c, err := o.Config(upstream)
	if err != nil || !c.Spawn || c.EnableSandbox || c.Pasta.Daemon || c.Pasta.AutoTCP {
		t.Errorf("%v %+v %+v", err, c, c.Pasta)
	}
	o, _ = Parse([]string{"--", "42"})
	if !slices.Equal(o.Command, []string{"42"}) || o.PID != 0 {
		t.Errorf("-- 42 is a command, not a PID: %+v", o)
	}
}

// procNetTCP is a real /proc/net/tcp (the kernel's format): listeners on
// 0.0.0.0:8080 and 127.0.0.1:631 (loopback: left out), a connection from
// port 41000, and a listener on 10.0.2.100:9000.
const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31338 1 0000000000000000 100 0 0 10 0
   2: 6402000A:A028 0202000A:0050 01 00000000:00000000 00:00000000 00000000  1000        0 31339 1 0000000000000000 20 4 30 10 -1
   3: 6402000A:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31340 1 0000000000000000 100 0 0 10 0
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0019 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
`

const procNetUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0000000000000000 0
  101: 6402000A:D431 0302000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 4 2 0000000000000000 0
  102: 6402000A:A000 0302000A:0035 07 00000000:00000000 00:00000000 00000000     0        0 5 2 0000000000000000 0
`

func TestBoundPorts(t *testing.T) {
	tcp := map[uint16]bool{}
	BoundPorts([]byte(procNetTCP), false, tcp)
	BoundPorts([]byte(procNetTCP6), false, tcp)
	if want := map[uint16]bool{8080: true, 9000: true, 443: true}; !mapsEqual(tcp, want) {
		t.Errorf("TCP ports %v, want %v (not 631 or 25 on loopback, nor a connection)", tcp, want)
	}
	udp := map[uint16]bool{}
	BoundPorts([]byte(procNetUDP), true, udp)
	if want := map[uint16]bool{5353: true}; !mapsEqual(udp, want) {
		t.Errorf("UDP ports %v, want %v (not connected sockets)", udp, want)
	}
	// The file of a real namespace: this process's own.
	b, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	BoundPorts(b, false, map[uint16]bool{})
}

func mapsEqual(a, b map[uint16]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// FuzzParse: no command line makes Parse or Config panic, and what they
// accept is consistent.
func FuzzParse(f *testing.F) {
	f.Add("--ns-ifname=tap0\x00--mtu=65520\x00--config-net\x00--address=10.0.2.100\x00--netmask=24\x00--gateway=10.0.2.2\x00--dns-forward=10.0.2.3\x00--ipv4-only\x00--tcp-ports=auto\x00--udp-ports=auto\x001")
	f.Add("--config-net\x00-t\x00127.0.0.1/8085-8085:80-80\x00--dns-forward\x00169.254.1.1\x00-u\x00none\x00-T\x00none\x00-U\x00none\x00--no-map-gw\x00--quiet\x00--netns\x00/proc/self/ns/net\x00--map-guest-addr\x00169.254.1.2")
	f.Add("-t\x002000-5000,~3000-3010\x00-u\x00%lo/53\x00-qf\x00--\x00sh")
	f.Add("-a\x00fd00::100\x00-g\x00fd00::2\x00-6\x00--netns=x")
	f.Fuzz(func(t *testing.T, joined string) {
		o, err := Parse(strings.Split(joined, "\x00"))
		if err != nil || o.Help || o.Version {
			return
		}
		c, err := o.Config(upstream)
		if err != nil {
			return
		}
		if c.MTU < 68 || c.MTU > DefaultMTU || c.Pasta == nil {
			t.Fatalf("accepted MTU %d, pasta %v", c.MTU, c.Pasta)
		}
		for _, r := range c.Publish {
			if r.HostPort == 0 || r.GuestPort == 0 || !r.HostAddr.IsValid() || r.HostAddr.Is6() && !c.EnableIPv6 {
				t.Fatalf("accepted forward %+v (IPv6 %v)", r, c.EnableIPv6)
			}
		}
		if !c.Pasta.NoIPv4 && (!c.Net.Prefix.Contains(c.Net.Guest) || c.Net.Guest == c.Net.Gateway) {
			t.Fatalf("accepted network %+v", c.Net)
		}
	})
}

// FuzzBoundPorts: whatever a namespace's /proc/net files say, reading them
// neither panics nor yields port 0.
func FuzzBoundPorts(f *testing.F) {
	f.Add([]byte(procNetTCP), false)
	f.Add([]byte(procNetTCP6), false)
	f.Add([]byte(procNetUDP), true)
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		ports := map[uint16]bool{}
		BoundPorts(b, udp, ports)
		if ports[0] {
			t.Fatal("port 0 reported bound")
		}
	})
}

// TestMappedAddresses: --map-host-loopback names the host's loopback
// without moving the namespace's route; -6 leaves IPv4 unconfigured.
func TestMappedAddresses(t *testing.T) {
	o, err := Parse([]string{"--map-host-loopback", "169.254.1.3", "-e", "--netns", self})
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.Config(upstream)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pasta.MapHostLoopback.String() != "169.254.1.3" || c.Net.Gateway.String() != "198.51.100.254" || !c.Pasta.Stderr {
		t.Errorf("map-host-loopback %s, gateway %s, stderr %v", c.Pasta.MapHostLoopback, c.Net.Gateway, c.Pasta.Stderr)
	}
	o, _ = Parse([]string{"-6", "--netns", self})
	if c, err = o.Config(upstream); err != nil || !c.Pasta.NoIPv4 || !c.EnableIPv6 || c.Net6.Guest.String() != "2001:db8:1::1" {
		t.Errorf("-6: %v, %+v", err, c.Pasta)
	}
}
