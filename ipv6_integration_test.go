//go:build integration

package main

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/netconf"
	"github.com/nsgate/nsgate/internal/testnet"
)

// ipv6World is tcpWorld with -6: a target served with IPv6 at MTU mtu.
func ipv6World(t *testing.T, rootless bool, mtu int, args ...string) (*testnet.World, *testnet.Target, *gate) {
	t.Helper()
	return tcpWorld(t, rootless, append([]string{"-6", "-m", strconv.Itoa(mtu)}, args...)...)
}

// slaacAddr is the address -c gives the target's tap0 in fd00::/64.
func slaacAddr(t *testing.T, tg *testnet.Target) netip.Addr {
	t.Helper()
	out := tg.MustRun("ip", "-o", "link", "show", "tap0")
	m := regexp.MustCompile(`link/ether (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("tap0 has no MAC: %s", out)
	}
	mac, err := net.ParseMAC(m[1])
	if err != nil {
		t.Fatalf("tap0's MAC %q: %v", out, err)
	}
	a, err := netconf.SLAAC(netip.MustParsePrefix("fd00::/64"), mac)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestIPv6Configure: -c -6 gives tap0 its autoconfiguration address and a
// default route via fe80::2 before the ready byte, with no duplicate
// address detection pending; rdisc6 (ndisc6) sees nsgate's advertisement:
// the prefix, the MTU, the M and O flags (DHCPv6) and the router's address; ping -6 of the gateway is
// answered, and of the remote namespace through an ICMPv6 ping socket.
func TestIPv6Configure(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w, tg, _ := ipv6World(t, rootless, 65520)
		want := slaacAddr(t, tg)
		addrs := tg.MustRun("ip", "-6", "addr", "show", "dev", "tap0")
		if !strings.Contains(addrs, want.String()+"/64") || strings.Contains(addrs, want.String()+"/64 scope global tentative") {
			t.Fatalf("tap0 lacks %s/64 (or it is tentative):\n%s", want, addrs)
		}
		if r := tg.MustRun("ip", "-6", "route", "show", "default"); !strings.Contains(r, "via fe80::2 dev tap0") {
			t.Fatalf("default route: %q", r)
		}
		ra := tg.MustRun("rdisc6", "-1", "-w", "3000", "tap0")
		for _, re := range []string{`(?m)^\s*Prefix\s*:\s*fd00::/64`, `(?m)^\s*MTU\s*:\s*65520 bytes`, `(?m)^\s*from fe80::2$`,
			`(?m)^\s*Stateful address conf\.\s*:\s*Yes`, `(?m)^\s*Stateful other conf\.\s*:\s*Yes`, `(?m)^\s*Router lifetime\s*:\s*1800`, `(?m)^\s*On-link\s*:\s*Yes`, `(?m)^\s*Autonomous address conf\.\s*:\s*Yes`} {
			if !regexp.MustCompile(re).MatchString(ra) {
				t.Fatalf("rdisc6 output lacks %s:\n%s", re, ra)
			}
		}
		if out, err := w.HostCommand(false, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647").CombinedOutput(); err != nil {
			t.Fatalf("sysctl: %v %s", err, out)
		}
		for _, a := range []string{"fd00::2", "fe80::2%tap0", testnet.RemoteAddr6} {
			if out := tg.MustRun("ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", a); !strings.Contains(out, "2 received") {
				t.Fatalf("ping -6 %s: %s", a, out)
			}
		}
	})
}

// TestIPv6Autoconf: without -c the namespace's own kernel configures
// itself from nsgate's advertisement (SLAAC): its address in fd00::/64 and
// its default route via fe80::2.
func TestIPv6Autoconf(t *testing.T) {
	w := testnet.New(t)
	tg := testnet.NewTarget(t, true)
	tg.MustRun("ip", "tuntap", "add", "tap0", "mode", "tap")
	tg.MustRun("ip", "link", "set", "tap0", "up")
	startReady(t, w, true, "-6", strconv.Itoa(tg.PID), "tap0")
	want := slaacAddr(t, tg)
	deadline := time.Now().Add(15 * time.Second)
	for {
		addrs := tg.MustRun("ip", "-6", "addr", "show", "dev", "tap0")
		route := tg.MustRun("ip", "-6", "route", "show", "default")
		if strings.Contains(addrs, want.String()+"/64 scope global dynamic") && strings.Contains(route, "via fe80::2 dev tap0 proto ra") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no autoconfiguration within 15 s:\n%s\n%s", addrs, route)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// destinations6 are destinations over IPv6: the host's ::1 through the
// gateway fd00::2, and the remote namespace.
func destinations6(w *testnet.World, port int) []destination {
	p := strconv.Itoa(port)
	return []destination{
		{"host-loopback", "[::1]:" + p, "[fd00::2]:" + p, func() *exec.Cmd { return w.HostCommand(false, "env") }},
		{"remote", "[" + testnet.RemoteAddr6 + "]:" + p, "[" + testnet.RemoteAddr6 + "]:" + p, func() *exec.Cmd { return w.RemoteCommand("env") }},
	}
}

// TestIPv6TCP moves 200 MiB each way over IPv6 at MTU 65520 and 1500, to
// the host's ::1 via fd00::2 and to the remote namespace, sha256-equal at
// both ends; connections to closed ports are refused at once.
func TestIPv6TCP(t *testing.T) {
	n := strconv.FormatInt(min(bigSize(), 200<<20), 10)
	for _, mtu := range []int{65520, 1500} {
		t.Run("mtu "+strconv.Itoa(mtu), func(t *testing.T) {
			w, tg, g := ipv6World(t, true, mtu)
			for i, d := range destinations6(w, 5101) {
				t.Run(d.name+"/ns-to-host", func(t *testing.T) {
					srv := startServer(t, d.where(), "sink", d.listen)
					sent := runClient(t, 5*time.Minute, tg.Command("env"), "send", d.dial, n)
					if got := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
						t.Fatalf("namespace sent %q, server received %q", sent, got)
					}
				})
				t.Run(d.name+"/host-to-ns", func(t *testing.T) {
					d := destinations6(w, 5111+i)[i]
					srv := startServer(t, d.where(), "source", d.listen, n)
					got := runClient(t, 5*time.Minute, tg.Command("env"), "recv", d.dial)
					if sent := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
						t.Fatalf("server sent %q, namespace received %q", sent, got)
					}
				})
			}
			for _, dial := range []string{"[fd00::2]:5999", "[" + testnet.RemoteAddr6 + "]:5999"} {
				r := strings.Fields(runClient(t, 20*time.Second, tg.Command("env"), "dial", dial))
				if len(r) != 2 || r[0] != "refused" {
					t.Fatalf("dial %s: %v, want refused", dial, r)
				}
				if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
					t.Fatalf("dial %s: refusal took %d ms", dial, ms)
				}
			}
			if !g.running() {
				t.Fatalf("nsgate exited: %s", g.stderr)
			}
		})
	}
}

// TestIPv6UDP echoes datagrams over IPv6 to the host's ::1 and to the
// remote namespace, and sees a closed port refused at once (ICMPv6 port
// unreachable from the host's socket, relayed).
func TestIPv6UDP(t *testing.T) {
	w, tg, _ := ipv6World(t, true, 65520)
	for _, d := range destinations6(w, 6101) {
		t.Run(d.name, func(t *testing.T) {
			startServer(t, d.where(), "udpecho", d.listen)
			if r := runClient(t, time.Minute, tg.Command("env"), "udpflows", d.dial, "1", scaled(2000), "1200"); r != "ok "+scaled(2000) {
				t.Fatalf("one flow: %s", r)
			}
			if r := runClient(t, time.Minute, tg.Command("env"), "udpflows", d.dial, "1", "20", "65000"); r != "ok 20" {
				t.Fatalf("large datagrams: %s", r)
			}
			if r := runClient(t, time.Minute, tg.Command("env"), "udpflows", d.dial, scaled(100), "10", "512"); r != "ok "+scaled(1000) {
				t.Fatalf("100 flows: %s", r)
			}
		})
	}
	for _, dial := range []string{"[fd00::2]:6999", "[" + testnet.RemoteAddr6 + "]:6999"} {
		r := strings.Fields(runClient(t, 20*time.Second, tg.Command("env"), "udprefused", dial))
		if len(r) != 2 || r[0] != "refused" {
			t.Fatalf("%s: %v, want refused", dial, r)
		}
		if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
			t.Fatalf("%s: refusal took %d ms", dial, ms)
		}
	}
}

// TestIPv6DNS: queries to fd00::3, over UDP and TCP, reach a dnsmasq on
// the host's ::1 (an IPv6 nameserver in resolv.conf), and an IPv4 one in
// the remote namespace; the advertisement carries fd00::3 as RDNSS.
func TestIPv6DNS(t *testing.T) {
	for _, c := range []struct{ name, resolv string }{
		{"loopback ::1", "nameserver ::1\n"},
		{"failover to IPv6 remote", "nameserver ::1\nnameserver " + testnet.RemoteAddr6 + "\n"},
		{"IPv4 remote", "nameserver " + testnet.RemoteAddr + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := testnet.New(t)
			w.SetResolvConf(c.resolv)
			switch c.name {
			case "loopback ::1":
				dnsmasq(t, w.HostCommand(false, "env"), "::1")
			case "failover to IPv6 remote":
				dnsmasq(t, w.RemoteCommand("env"), testnet.RemoteAddr6)
			default:
				dnsmasq(t, w.RemoteCommand("env"), testnet.RemoteAddr)
			}
			tg := testnet.NewTarget(t, true)
			startReady(t, w, true, "-c", "-6", strconv.Itoa(tg.PID), "tap0")
			for _, tcp := range []bool{false, true} {
				if got, took := dig(t, tg, tcp, "test.nsgate", "@fd00::3", "AAAA"); got != "2001:db8:1::99" {
					t.Fatalf("dig AAAA @fd00::3 (tcp %v): %q after %v", tcp, got, took)
				}
				if got, took := dig(t, tg, tcp, "test.nsgate", "@fd00::3", "A"); got != "198.51.100.99" {
					t.Fatalf("dig A @fd00::3 (tcp %v): %q after %v", tcp, got, took)
				}
			}
			if ra := tg.MustRun("rdisc6", "-1", "-w", "3000", "tap0"); !regexp.MustCompile(`(?m)^\s*Recursive DNS server\s*:\s*fd00::3$`).MatchString(ra) {
				t.Fatalf("no RDNSS fd00::3 in the advertisement:\n%s", ra)
			}
		})
	}
}

// dhclientScript is dhclient's -sf script for the tests: it applies the
// lease to tap0 and logs each event, and never touches the machine's
// /etc/resolv.conf the way Debian's dhclient-script would.
const dhclientScript = `#!/bin/sh
case "$reason" in
BOUND6|RENEW6|REBIND6|REBOOT6) [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad ;;
esac
echo "$reason ip=${new_ip6_address:-$old_ip6_address} ns=$new_dhcp6_name_servers" >> "$(dirname "$0")/log"
`

// waitLog waits until the file at path has a line matching re.
func waitLog(t *testing.T, path string, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if m := re.FindString(string(b)); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %s in %s within %v:\n%s", re, path, timeout, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDHCPv6 runs ISC dhclient -6 against nsgate's server: a stateful
// lease (Solicit, Advertise, Request, Reply) of fd00::100 with the DNS
// address, applied to tap0; a Release; and a stateless
// Information-Request (-S) answered with the DNS address.
func TestDHCPv6(t *testing.T) {
	_, tg, _ := ipv6World(t, false, 1500)
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(dhclientScript), 0o755); err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(dir, "log")
	dhclient := func(args ...string) *exec.Cmd {
		return tg.Command("dhclient", append([]string{"-6", "-d", "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-sf", script}, append(args, "tap0")...)...)
	}
	// dhclient binds to tap0's link-local address, which is usable once
	// the namespace's kernel has finished duplicate address detection.
	for deadline := time.Now().Add(10 * time.Second); ; {
		a := tg.MustRun("ip", "-6", "addr", "show", "dev", "tap0", "scope", "link")
		if strings.Contains(a, "fe80::") && !strings.Contains(a, "tentative") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap0's link-local address stays tentative:\n%s", a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := dhclient("-1")
	var out syncBuffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dhclient:\n%s", out.String())
		}
	})
	waitLog(t, logf, regexp.MustCompile(`BOUND6 ip=fd00::100 ns=fd00::3`), 20*time.Second)
	if a := tg.MustRun("ip", "-6", "addr", "show", "dev", "tap0"); !strings.Contains(a, "inet6 fd00::100/") {
		t.Fatalf("the lease was not applied:\n%s\ndhclient:\n%s", a, out.String())
	}
	c.Process.Kill()
	c.Wait()

	// Release: dhclient -r sends it to the server and waits for its Reply.
	if out, err := tg.Run(20*time.Second, "dhclient", "-6", "-r", "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "-sf", script, "tap0"); err != nil {
		t.Fatalf("dhclient -6 -r: %v\n%s", err, out)
	}
	waitLog(t, logf, regexp.MustCompile(`RELEASE6 ip=fd00::100`), 10*time.Second)

	// Stateless: an Information-Request gets the DNS address.
	s := tg.Command("dhclient", "-6", "-S", "-d", "-lf", filepath.Join(dir, "leases-s"), "-pf", filepath.Join(dir, "pid-s"), "-sf", script, "tap0")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { s.Process.Kill(); s.Wait() }()
	// dhclient -S reports the answer as RENEW6, with no address.
	waitLog(t, logf, regexp.MustCompile(`(?m)^RENEW6 ip= ns=fd00::3$`), 20*time.Second)
}

// TestIPv6Forward: forwards from IPv6 host addresses reach the namespace's
// autoconfigured address with the client's own address (the host's ::1
// appears as fd00::2); [::] takes IPv6 clients only, so that an IPv4
// forward can hold the same port; bulk TCP is sha256-equal; UDP echoes;
// and the API adds and lists IPv6 forwards.
func TestIPv6Forward(t *testing.T) {
	sock := filepath.Join(userDir(t), "api.sock")
	w, tg, g := ipv6World(t, true, 65520, "-a", sock, "-p", "[::]:8090:80", "-p", "127.0.0.1:8090:80", "-p", "[::1]:8092:80",
		"-p", "[::]:5109", "-p", "[::]:6109/udp")
	host, remote := func() *exec.Cmd { return w.HostCommand(false, "env") }, func() *exec.Cmd { return w.RemoteCommand("env") }
	log := httpd(t, tg, "80", "hello over IPv6\n")
	waitListen(t, tg, "80")
	for _, c := range []struct {
		from   func() *exec.Cmd
		url    string
		client string // as the namespace sees it
	}{
		{host, "http://[::1]:8092/", "[fd00::2]:"},
		{remote, "http://[" + testnet.HostAddr6 + "]:8090/", "[" + testnet.RemoteAddr6 + "]:"},
		{host, "http://127.0.0.1:8090/", "[::ffff:10.0.2.2]:"}, // the IPv4 forward on the same port
	} {
		if body := fetch(t, c.from(), c.url); body != "200 hello over IPv6" {
			t.Fatalf("%s: %q", c.url, body)
		}
		if !strings.Contains(log.String(), c.client) {
			t.Fatalf("%s: httpd log lacks client %s:\n%s", c.url, c.client, log)
		}
	}
	// [::1]:8092 is IPv6's loopback only; [::]:5109 has no IPv4 twin.
	for _, dial := range []string{"127.0.0.1:8092", "127.0.0.1:5109"} {
		if r := runClient(t, 20*time.Second, host(), "dial", dial); !strings.HasPrefix(r, "refused") {
			t.Fatalf("dial %s: %s, want refused", dial, r)
		}
	}
	n := strconv.FormatInt(min(bigSize(), 200<<20), 10)
	srv := startServer(t, tg.Command("env"), "sink", "[::]:5109")
	sent := runClient(t, 5*time.Minute, remote(), "send", "["+testnet.HostAddr6+"]:5109", n)
	if got := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
		t.Fatalf("remote sent %q, namespace received %q", sent, got)
	}
	startServer(t, tg.Command("env"), "udpecho", "[::]:6109")
	for _, c := range []struct {
		from func() *exec.Cmd
		dial string
	}{{host, "[::1]:6109"}, {remote, "[" + testnet.HostAddr6 + "]:6109"}} {
		if r := runClient(t, time.Minute, c.from(), "udpflows", c.dial, "10", "50", "1200"); r != "ok 500" {
			t.Fatalf("UDP through %s: %s", c.dial, r)
		}
	}
	// The API: an IPv6 forward with no guest address lists the
	// namespace's.
	guest := slaacAddr(t, tg).String()
	if got := apiCall(t, sock, `{"execute":"add_hostfwd","arguments":{"proto":"tcp6","host_port":8093,"guest_port":80}}`); got != `{"return":{"id":6}}` {
		t.Fatalf("add_hostfwd tcp6: %s", got)
	}
	if got := apiCall(t, sock, `{"execute":"list_hostfwd"}`); !strings.Contains(got, `{"id":6,"proto":"tcp","host_addr":"::","host_port":8093,"guest_addr":"`+guest+`","guest_port":80}`) {
		t.Fatalf("list_hostfwd: %s", got)
	}
	if body := fetch(t, remote(), "http://["+testnet.HostAddr6+"]:8093/"); body != "200 hello over IPv6" {
		t.Fatalf("through the API's forward: %q", body)
	}
	if !g.running() {
		t.Fatalf("nsgate exited: %s", g.stderr)
	}
}

// TestIPv6Options: --outbound-addr6 (an address, or an interface's name)
// is where the namespace's IPv6 connections and flows leave from, as the
// remote server sees them; --disable-host-loopback refuses fd00::2 at once
// (network unreachable), TCP and UDP, as it refuses 10.0.2.2, while other
// hosts stay reachable; --allow and --deny take IPv6 rules; --cidr6 moves
// the network.
func TestIPv6Options(t *testing.T) {
	for _, arg := range []string{"2001:db8:2::1", "nsgout0"} {
		t.Run("outbound-addr6="+arg, func(t *testing.T) {
			w := testnet.New(t)
			w.HostIP("link", "add", "nsgout0", "type", "veth", "peer", "name", "nsgout1")
			w.HostIP("-6", "addr", "add", "2001:db8:2::1/128", "dev", "nsgout0", "nodad")
			w.HostIP("link", "set", "nsgout0", "up")
			w.HostIP("link", "set", "nsgout1", "up")
			tg := testnet.NewTarget(t, true)
			startReady(t, w, true, "-c", "-6", "--outbound-addr6="+arg, strconv.Itoa(tg.PID), "tap0")
			remote := "[" + testnet.RemoteAddr6 + "]"
			srv := startServer(t, w.RemoteCommand("env"), "peer", remote+":5121")
			runClient(t, 20*time.Second, tg.Command("env"), "dial", remote+":5121")
			if got := srv.result(t, 10*time.Second); got != "2001:db8:2::1" {
				t.Fatalf("TCP client seen as %q, want 2001:db8:2::1", got)
			}
			usrv := startServer(t, w.RemoteCommand("env"), "udppeer", remote+":5122")
			if r := runClient(t, 20*time.Second, tg.Command("env"), "udpflows", remote+":5122", "1", "1", "64"); r != "ok 1" {
				t.Fatalf("UDP exchange: %s", r)
			}
			if got := usrv.result(t, 10*time.Second); got != "2001:db8:2::1" {
				t.Fatalf("UDP client seen as %q, want 2001:db8:2::1", got)
			}
		})
	}
	t.Run("cidr6", func(t *testing.T) {
		// --cidr6 moves the prefix, and the gateway and DNS with it.
		w, tg, _ := ipv6World(t, true, 65520, "--cidr6", "fd01:2::/64")
		if a := tg.MustRun("ip", "-6", "addr", "show", "dev", "tap0", "scope", "global"); !regexp.MustCompile(`inet6 fd01:2::[0-9a-f:]+/64`).MatchString(a) {
			t.Fatalf("tap0 has no address in fd01:2::/64:\n%s", a)
		}
		startServer(t, w.HostCommand(false, "env"), "echo", "[::1]:5127")
		if r := runClient(t, time.Minute, tg.Command("env"), "many", "[fd01:2::2]:5127", "1", "1000"); r != "ok 1" {
			t.Fatalf("fd01:2::2 (the host's ::1): %s", r)
		}
		if out, err := tg.Run(20*time.Second, "ping", "-6", "-c1", "-W5", "fd01:2::3"); err != nil || !oneReceived.MatchString(out) {
			t.Fatalf("ping -6 fd01:2::3: %v\n%s", err, out)
		}
	})
	t.Run("deny", func(t *testing.T) {
		// The egress policy takes IPv6 rules: ICMPv6 administratively
		// prohibited at once, which Linux reports as EACCES.
		w, tg, _ := ipv6World(t, true, 65520, "--allow", "["+testnet.RemoteAddr6+"]:5125", "--deny", "2001:db8::/32")
		remote := "[" + testnet.RemoteAddr6 + "]"
		startServer(t, w.RemoteCommand("env"), "echo", remote+":5125")
		startServer(t, w.RemoteCommand("env"), "echo", remote+":5126")
		if r := runClient(t, time.Minute, tg.Command("env"), "many", remote+":5125", "1", "1000"); r != "ok 1" {
			t.Fatalf("allowed port: %s", r)
		}
		r := strings.Fields(runClient(t, 20*time.Second, tg.Command("env"), "dial", remote+":5126"))
		if len(r) != 2 || r[0] != "prohibited" {
			t.Fatalf("denied port: %v, want prohibited", r)
		}
		if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
			t.Fatalf("denied port: the error took %d ms", ms)
		}
	})
	t.Run("disable-host-loopback", func(t *testing.T) {
		w, tg, _ := ipv6World(t, true, 65520, "--disable-host-loopback")
		startServer(t, w.HostCommand(false, "env"), "echo", "[::1]:5123")
		startServer(t, w.HostCommand(false, "env"), "udpecho", "[::1]:5124")
		for _, c := range []struct{ mode, dial string }{{"dial", "[fd00::2]:5123"}, {"udprefused", "[fd00::2]:5124"}} {
			r := strings.Fields(runClient(t, 20*time.Second, tg.Command("env"), c.mode, c.dial))
			if len(r) != 2 || r[0] != "netunreachable" {
				t.Fatalf("%s %s with --disable-host-loopback: %v, want netunreachable", c.mode, c.dial, r)
			}
			if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
				t.Fatalf("%s %s: the error took %d ms", c.mode, c.dial, ms)
			}
		}
		remote := "[" + testnet.RemoteAddr6 + "]:5123"
		startServer(t, w.RemoteCommand("env"), "echo", remote)
		if r := runClient(t, time.Minute, tg.Command("env"), "many", remote, "10", "100000"); r != "ok 10" {
			t.Fatalf("remote host with --disable-host-loopback: %s", r)
		}
	})
}

// TestIPv6PacketTooBig: a router beyond the host (the remote namespace,
// forwarding onto a 1280-byte link) answers the host socket's datagram
// with Packet Too Big; nsgate relays it to the namespace from
// IPV6_RECVERR, and the client, which does not fragment, learns the path
// MTU: path MTU discovery works through nsgate.
func TestIPv6PacketTooBig(t *testing.T) {
	w, tg, _ := ipv6World(t, true, 65520)
	far := "nsg-f-" + strconv.Itoa(os.Getpid())
	mustRun(t, "ip", "netns", "add", far)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", far).Run() })
	mustRun(t, "ip", "-n", w.Remote, "link", "add", "vf0", "mtu", "1280", "type", "veth", "peer", "name", "vf1", "netns", far, "mtu", "1280")
	mustRun(t, "ip", "netns", "exec", w.Remote, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	mustRun(t, "ip", "-n", w.Remote, "addr", "add", "2001:db8:3::1/64", "dev", "vf0", "nodad")
	mustRun(t, "ip", "-n", far, "addr", "add", "2001:db8:3::2/64", "dev", "vf1", "nodad")
	mustRun(t, "ip", "-n", w.Remote, "link", "set", "vf0", "up")
	mustRun(t, "ip", "-n", far, "link", "set", "vf1", "up")
	mustRun(t, "ip", "-n", far, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", far, "-6", "route", "add", "default", "via", "2001:db8:3::1")
	w.HostIP("-6", "route", "add", "2001:db8:3::/64", "via", testnet.RemoteAddr6)
	if r := runClient(t, 20*time.Second, tg.Command("env"), "udppmtu", "[2001:db8:3::2]:6201", "1400"); r != "mtu 1280" {
		t.Fatalf("the namespace's path MTU to 2001:db8:3::2: %q, want mtu 1280", r)
	}
}

// mustRun runs a command, failing the test with its output on error.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
