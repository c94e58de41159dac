package config

import (
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

func TestParseCallers(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	nsPath := "/proc/self/ns/net"
	tests := []struct {
		name string
		args []string
		want func(t *testing.T, c *Config)
	}{
		{"rootlesskit", []string{"--mtu", "65520", "-r", "3", "--disable-host-loopback", self, "tap0"}, func(t *testing.T, c *Config) {
			if c.MTU != 65520 || c.ReadyFD != 3 || !c.DisableHostLoopback || c.PID != os.Getpid() || c.TapName != "tap0" {
				t.Errorf("got %+v", c)
			}
			if c.NetnsPath != "/proc/"+self+"/ns/net" || c.UsernsPath != "/proc/"+self+"/ns/user" {
				t.Errorf("namespace paths %q %q", c.NetnsPath, c.UsernsPath)
			}
		}},
		{"podman", []string{"--disable-host-loopback", "--mtu=65520", "-c", "-e", "3", "-r", "4", "--netns-type=path", nsPath, "tap0"}, func(t *testing.T, c *Config) {
			if !c.Configure || c.ExitFD != 3 || c.ReadyFD != 4 || c.NetnsPath != nsPath || c.UsernsPath != "" || c.PID != 0 {
				t.Errorf("got %+v", c)
			}
		}},
		{"outbound address", []string{"--outbound-addr=127.0.0.1", self}, func(t *testing.T, c *Config) {
			if c.OutboundAddr.String() != "127.0.0.1" {
				t.Errorf("OutboundAddr %v", c.OutboundAddr)
			}
		}},
		{"outbound interface", []string{"--outbound-addr", "lo", self}, func(t *testing.T, c *Config) {
			if c.OutboundAddr.String() != "127.0.0.1" {
				t.Errorf("OutboundAddr %v, want lo's 127.0.0.1", c.OutboundAddr)
			}
		}},
		{"outbound IPv6 address", []string{"-6", "--outbound-addr6=::1", self}, func(t *testing.T, c *Config) {
			if c.OutboundAddr6.String() != "::1" {
				t.Errorf("OutboundAddr6 %v", c.OutboundAddr6)
			}
		}},
		{"outbound IPv6 interface", []string{"-6", "--outbound-addr6", "lo", self}, func(t *testing.T, c *Config) {
			if c.OutboundAddr6.String() != "::1" {
				t.Errorf("OutboundAddr6 %v, want lo's ::1", c.OutboundAddr6)
			}
		}},
		{"publish and api socket", []string{"-p", "8080:80", "--publish=127.0.0.1:53:53/udp", "-a", "/tmp/x.sock", self}, func(t *testing.T, c *Config) {
			if len(c.Publish) != 2 || c.Publish[0].HostPort != 8080 || c.Publish[1].Proto != "udp" || c.APISocket != "/tmp/x.sock" {
				t.Errorf("Publish %+v, APISocket %q", c.Publish, c.APISocket)
			}
		}},
		{"defaults", []string{self}, func(t *testing.T, c *Config) {
			if c.MTU != 1500 || c.TapName != "tap0" || c.ExitFD != -1 || c.ReadyFD != -1 || c.Configure {
				t.Errorf("got %+v", c)
			}
			if c.Net.Gateway != (netip.AddrFrom4([4]byte{10, 0, 2, 2})) || c.Net.DNS != (netip.AddrFrom4([4]byte{10, 0, 2, 3})) ||
				c.Net.Guest != (netip.AddrFrom4([4]byte{10, 0, 2, 100})) || c.Net.DHCPStart != (netip.AddrFrom4([4]byte{10, 0, 2, 15})) ||
				c.Net.Mask != (netip.AddrFrom4([4]byte{255, 255, 255, 0})) || c.Net.Broadcast != (netip.AddrFrom4([4]byte{10, 0, 2, 255})) {
				t.Errorf("network %+v", c.Net)
			}
		}},
		{"vm socket", []string{"--socket", "/tmp/vm.sock", "-p", "2222:22", "--pid-file=/tmp/p", "--cidr", "10.1.0.0/16"}, func(t *testing.T, c *Config) {
			if !c.VM() || c.Socket != "/tmp/vm.sock" || c.SocketFD != -1 || c.OneOff || c.PIDFile != "/tmp/p" || c.MTU != VMMTU {
				t.Errorf("got %+v", c)
			}
			if c.Net.Guest != netip.MustParseAddr("10.1.0.15") {
				t.Errorf("a VM's forwards go to %v, want its first lease 10.1.0.15", c.Net.Guest)
			}
		}},
		{"vm fd, one-off, mtu", []string{"-F", "5", "-1", "-m", "1500"}, func(t *testing.T, c *Config) {
			if !c.VM() || c.SocketFD != 5 || !c.OneOff || c.MTU != 1500 {
				t.Errorf("got %+v", c)
			}
		}},
		{"clustered short options", []string{"-ce3", "-m9000", self, "tap1"}, func(t *testing.T, c *Config) {
			if !c.Configure || c.ExitFD != 3 || c.MTU != 9000 || c.TapName != "tap1" {
				t.Errorf("got %+v", c)
			}
		}},
		{"operands before options", []string{self, "tap0", "-c"}, func(t *testing.T, c *Config) {
			if !c.Configure || c.PID != os.Getpid() {
				t.Errorf("got %+v", c)
			}
		}},
		{"long option prefix", []string{"--conf", self}, func(t *testing.T, c *Config) {
			if !c.Configure {
				t.Errorf("--conf not taken for --configure")
			}
		}},
		{"path operand without netns-type", []string{nsPath}, func(t *testing.T, c *Config) {
			if c.NetnsPath != nsPath || c.PID != 0 || c.UsernsPath != "" {
				t.Errorf("got %+v", c)
			}
		}},
		{"--netns with tap name", []string{"--netns", nsPath, "--userns", "/proc/self/ns/user", "tapx"}, func(t *testing.T, c *Config) {
			if c.NetnsPath != nsPath || c.UsernsPath != "/proc/self/ns/user" || c.TapName != "tapx" {
				t.Errorf("got %+v", c)
			}
		}},
		{"cidr", []string{"--cidr=192.168.5.128/25", self}, func(t *testing.T, c *Config) {
			if c.Net.Gateway != (netip.AddrFrom4([4]byte{192, 168, 5, 130})) || c.Net.Guest != (netip.AddrFrom4([4]byte{192, 168, 5, 228})) ||
				c.Net.DHCPStart != (netip.AddrFrom4([4]byte{192, 168, 5, 143})) || c.Net.Broadcast != (netip.AddrFrom4([4]byte{192, 168, 5, 255})) {
				t.Errorf("network %+v", c.Net)
			}
		}},
		{"macaddress with -c", []string{"-c", "--macaddress", "02:aa:bb:cc:dd:0e", self}, func(t *testing.T, c *Config) {
			if !c.MACSet || c.MAC != (packet.MAC{2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e}) {
				t.Errorf("MAC %v", c.MAC)
			}
		}},
		{"spawn", []string{"-m", "9000", "--", "ip", "-4", "addr"}, func(t *testing.T, c *Config) {
			if !c.Spawn || !c.Configure || strings.Join(c.Command, " ") != "ip -4 addr" || c.MTU != 9000 {
				t.Errorf("got %+v", c)
			}
		}},
		{"spawn keeps command options", []string{"--", "sh", "-c", "--mtu=1"}, func(t *testing.T, c *Config) {
			if strings.Join(c.Command, " ") != "sh -c --mtu=1" || c.MTU != SpawnMTU {
				t.Errorf("got %+v", c)
			}
		}},
		{"spawn keeps an explicit MTU", []string{"-m", "1500", "--", "true"}, func(t *testing.T, c *Config) {
			if c.MTU != 1500 || !c.MTUSet {
				t.Errorf("got MTU %d (set %v), want 1500", c.MTU, c.MTUSet)
			}
		}},
		{"--dns", []string{"--dns", "192.0.2.53", "--", "true"}, func(t *testing.T, c *Config) {
			if c.DNS != netip.MustParseAddr("192.0.2.53") {
				t.Errorf("DNS %v", c.DNS)
			}
		}},
		{"--busy-poll", []string{"--busy-poll=250us", self}, func(t *testing.T, c *Config) {
			if c.BusyPoll != 250*time.Microsecond {
				t.Errorf("BusyPoll %v, want 250µs", c.BusyPoll)
			}
		}},
		{"--busy-poll 0 is off", []string{"--busy-poll", "0", self}, func(t *testing.T, c *Config) {
			if c.BusyPoll >= 0 {
				t.Errorf("BusyPoll %v, want negative (never)", c.BusyPoll)
			}
		}},
		{"busy polling by default", []string{self}, func(t *testing.T, c *Config) {
			if c.BusyPoll != 0 {
				t.Errorf("BusyPoll %v, want 0 (the engine's default)", c.BusyPoll)
			}
		}},
		{"help wins over errors", []string{"--mtu=0", "--help"}, func(t *testing.T, c *Config) {
			if !c.Help {
				t.Errorf("help not set")
			}
		}},
		{"ipv6 accepted", []string{"-6", self}, func(t *testing.T, c *Config) {
			if !c.EnableIPv6 {
				t.Errorf("-6 not set")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.args)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			tt.want(t, c)
		})
	}
}

func TestParseErrors(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	tests := []struct {
		args []string
		want string // the whole message
	}{
		{[]string{"-m", "0", self}, `--mtu "0": MTU must be a positive integer (< 65522)`},
		{[]string{"--mtu=65522", self}, `--mtu "65522": MTU must be a positive integer (< 65522)`},
		{[]string{"--mtu", "abc", self}, `--mtu "abc": MTU must be a positive integer (< 65522)`},
		{[]string{"--cidr", "foo", self}, `--cidr "foo": invalid CIDR`},
		{[]string{"--dns", "fd00::3", self}, `--dns "fd00::3": has to be an IPv4 unicast address (IPv6 clients are told nsgate's own DNS address, fd00::3 by default)`},
		{[]string{"--dns", "dns.example", self}, `--dns "dns.example": has to be an IPv4 unicast address (IPv6 clients are told nsgate's own DNS address, fd00::3 by default)`},
		{[]string{"--cidr", "10.0.2.0/26", self}, `--cidr "10.0.2.0/26": prefix length needs to be 1-25`},
		{[]string{"--cidr", "10.0.0.0/0", self}, `--cidr "10.0.0.0/0": prefix length needs to be 1-25`},
		{[]string{"--cidr", "10.0.2.5/24", self}, `--cidr "10.0.2.5/24": CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24`},
		{[]string{"--cidr", "fd00::/64", self}, `--cidr "fd00::/64": invalid CIDR`},
		{[]string{"-e", "x", self}, `--exit-fd "x": exit-fd must be a non-negative integer`},
		{[]string{"--fd", "x"}, `--fd "x": fd must be a non-negative integer`},
		{[]string{"--socket", ""}, `--socket: empty path`},
		{[]string{"--socket", "/s", "--fd", "3"}, `--socket and --fd cannot both be given: listen on a path, or serve one connected socket`},
		{[]string{"--socket", "/s", "-c"}, `--configure cannot be used with --socket or --fd: the VM configures itself by DHCP`},
		{[]string{"--socket", "/s", "--macaddress", "02:00:00:00:00:01"}, `--macaddress cannot be used with --socket or --fd: the VM's MAC is qemu's (-device virtio-net-pci,mac=...)`},
		{[]string{"--socket", "/s", self}, `--socket or --fd serves a VM: a namespace target (` + self + `) cannot be given too`},
		{[]string{"--socket", "/s", "--netns", "/x"}, `--socket or --fd serves a VM: a namespace target (/x) cannot be given too`},
		{[]string{"--socket", "/s", "--", "sh"}, `--socket or --fd, and a command after -- (sh), cannot both be given`},
		{[]string{"--socket", "/s", "--userns-path=/x"}, `--userns-path cannot be used with --socket or --fd: no namespace is joined`},
		{[]string{"--fd", "3", "-e", "3"}, `--fd 3 is also the exit or ready fd`},
		{[]string{"--one-off", self}, `--one-off needs --socket: it ends nsgate when the VM disconnects`},
		{[]string{"--pid-file="}, `--pid-file: empty path`},
		{[]string{"-r", "-1", self}, `--ready-fd "-1": ready-fd must be a non-negative integer`},
		{[]string{"--netns-type=foo", self}, `--netns-type "foo": must be pid or path`},
		{[]string{"--netns-type=pid", "/x"}, `target "/x": PID must be a positive integer`},
		{[]string{"0"}, `target "0": PID must be a positive integer`},
		{[]string{"999999999"}, `target PID 999999999: no such process`},
		{[]string{"/nonexistent/ns"}, `network namespace path "/nonexistent/ns": no such file or directory`},
		{[]string{"--netns", "/nonexistent/ns"}, `--netns "/nonexistent/ns": no such file or directory`},
		{[]string{"--userns-path=/nonexistent", self}, `--userns-path "/nonexistent": no such file or directory`},
		{[]string{"--macaddress=02:00:00:00:00:01", self}, `--macaddress needs --configure (-c)`},
		{[]string{"-c", "--macaddress=zz", self}, `--macaddress "zz": a MAC address is 6 hex bytes separated by ':'`},
		{[]string{"-c", "--macaddress=01:00:00:00:00:01", self}, `--macaddress "01:00:00:00:00:01": a multicast MAC address cannot be given to an interface`},
		{[]string{"--bogus", self}, `unrecognized option '--bogus'`},
		{[]string{"-x", self}, `invalid option -- 'x'`},
		{[]string{"--mtu"}, `option '--mtu' requires an argument`},
		{[]string{"-m"}, `option requires an argument -- 'm'`},
		{[]string{"--configure=yes", self}, `option '--configure' doesn't allow an argument`},
		{[]string{"--disable", self}, `option '--disable' is ambiguous`},
		{[]string{self, "tap0", "extra"}, `too many arguments: "extra"`},
		{[]string{"--busy-poll=5s", self}, `--busy-poll "5s": must be a duration from 0 (off) to 1ms, such as 100us`},
		{[]string{"--busy-poll=-1us", self}, `--busy-poll "-1us": must be a duration from 0 (off) to 1ms, such as 100us`},
		{[]string{"--busy-poll", "fast", self}, `--busy-poll "fast": must be a duration from 0 (off) to 1ms, such as 100us`},
		{[]string{self, "bad/name"}, `tap name "bad/name": an interface name is 1-15 characters without '/', ':' or spaces`},
		{[]string{self, "averyveryverylongname"}, `tap name "averyveryverylongname": an interface name is 1-15 characters without '/', ':' or spaces`},
		{[]string{"--api-socket", "/tmp/" + strings.Repeat("x", 103), self}, `--api-socket "/tmp/` + strings.Repeat("x", 103) + `": path too long for a unix socket (108 bytes, at most 107)`},
		{[]string{"--api-socket=", self}, `--api-socket: empty path`},
		{[]string{"-p", "8080:80/sctp", self}, `--publish "8080:80/sctp": protocol "sctp": must be tcp or udp`},
		{[]string{"--publish=0:80", self}, `--publish "0:80": host port: "0" is not a port number (1-65535)`},
		{[]string{"-p", "[::1]:80:80", self}, `--publish [::1]:80: an IPv6 forward needs -6 (--enable-ipv6)`},
		{[]string{"-6", "-p", "[::1:80:80", self}, `--publish "[::1:80:80": host address "::1:80:80": not an IPv6 address in brackets followed by :PORT`},
		{[]string{"--enable-sandbox", "--", "true"}, `--enable-sandbox cannot be used with -- CMD`},
		{[]string{"--outbound-addr=192.0.2.77", self}, `--outbound-addr "192.0.2.77": has to be a valid IPv4 address or interface name (not an address of this host: cannot assign requested address)`},
		{[]string{"--outbound-addr=::1", self}, `--outbound-addr "::1": has to be a valid IPv4 address or interface name (wrong address family)`},
		{[]string{"--outbound-addr=nosuchif0", self}, `--outbound-addr "nosuchif0": has to be a valid IPv4 address or interface name (no such address or interface)`},
		{[]string{"--outbound-addr6=127.0.0.1", self}, `--outbound-addr6 "127.0.0.1": has to be a valid IPv6 address or interface name (wrong address family)`},
		{[]string{"--target-type=bess", self}, `--target-type "bess": only netns is supported`},
		{[]string{"--"}, `no command after --`},
		{[]string{self, "--", "true"}, `a target (` + self + `) and a command after -- cannot both be given`},
		{[]string{"--userns=/proc/self/ns/user", "--", "true"}, `--userns-path cannot be used with -- CMD: nsgate creates the namespaces itself`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := Parse(tt.args)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded, want %q", tt.args, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse(%q) error\n got %q\nwant %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestParseUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"-c"}, {"-m", "9000"}} {
		if _, err := Parse(args); !errors.Is(err, ErrUsage) {
			t.Errorf("Parse(%q) = %v, want ErrUsage", args, err)
		}
	}
}

func TestUsageListsEveryOption(t *testing.T) {
	for _, o := range options {
		if !strings.Contains(Usage, "--"+o.Long) {
			t.Errorf("--help does not mention --%s", o.Long)
		}
		if o.Short != 0 && !strings.Contains(Usage, "-"+string(o.Short)+", --"+o.Long) {
			t.Errorf("--help does not show -%c with --%s", o.Short, o.Long)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("--mtu=65520\x00-c\x00-e\x003\x00--netns-type=path\x00/proc/self/ns/net\x00tap0")
	f.Add("-ce3\x00--cidr\x0010.0.2.0/24\x001\x00tap0")
	f.Add("--macaddress=02:00:00:00:00:01\x00-c\x00--\x00sh")
	f.Add("--socket\x00/tmp/vm.sock\x00-1\x00-p\x002222:22")
	f.Add("-F3\x00--pid-file=/tmp/p")
	f.Add("-6\x00--outbound-addr6=::1\x00--outbound-addr6\x00lo\x00--cidr6=fd01::/64")
	f.Add("--deny=10.0.0.0/8:1-99\x00--allow\x00[2001:db8::1]:22\x00--block-host\x00--max-flows=64\x00--pcap=/tmp/x\x00--pcap-max=1K\x00--socket\x00/tmp/s")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		c, err := Parse(args)
		if err != nil || c.Help || c.Version {
			return
		}
		for _, r := range c.Egress {
			if !r.Host && !r.Prefix.IsValid() || r.PortLo > r.PortHi || r.PortHi > 0 && r.PortLo == 0 {
				t.Fatalf("accepted egress rule %+v", r)
			}
		}
		if c.MaxFlows < 0 || c.PcapMax != 0 && (c.PcapMax < 24 || c.Pcap == "") {
			t.Fatalf("accepted --max-flows %d, --pcap %q --pcap-max %d", c.MaxFlows, c.Pcap, c.PcapMax)
		}
		if c.MTU < 1 || c.MTU > MaxMTU {
			t.Fatalf("accepted MTU %d", c.MTU)
		}
		if b := c.Net.Prefix.Bits(); b < 1 || b > 25 {
			t.Fatalf("accepted prefix /%d", b)
		}
		switch {
		case c.VM():
			if (c.Socket == "") == (c.SocketFD < 0) || c.Socket != "" && CheckUnixPath("--socket", c.Socket) != nil || c.Configure || c.NetnsPath != "" {
				t.Fatalf("accepted VM mode with socket %q, fd %d, configure %v, netns %q", c.Socket, c.SocketFD, c.Configure, c.NetnsPath)
			}
		case c.OneOff:
			t.Fatal("accepted --one-off without a VM")
		case !c.Spawn && (c.NetnsPath == "" || ValidTapName(c.TapName) != nil):
			t.Fatalf("accepted target %q tap %q", c.NetnsPath, c.TapName)
		}
	})
}
