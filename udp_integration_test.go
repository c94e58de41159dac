//go:build integration

package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// TestUDP: datagrams to the host's loopback and the remote namespace come
// back intact, one flow and 500 at once; a closed port is reported.
func TestUDP(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w, tg, g := tcpWorld(t, rootless)
		ns := func() *exec.Cmd { return tg.Command("env") }
		for _, d := range []struct{ name, listen, dial string }{
			{"host-loopback", "127.0.0.1:6001", "10.0.2.2:6001"},
			{"remote", testnet.RemoteAddr + ":6001", testnet.RemoteAddr + ":6001"},
		} {
			t.Run(d.name, func(t *testing.T) {
				where := w.HostCommand(false, "env")
				if d.name == "remote" {
					where = w.RemoteCommand("env")
				}
				startServer(t, where, "udpecho", d.listen)
				// 10,000 datagrams on one flow (a tenth of every count in
				// make test-kernel's guest), with payload checks; then
				// datagrams near the 65520 MTU.
				if r := runClient(t, 2*time.Minute, ns(), "udpflows", d.dial, "1", scaled(10000), "1200"); r != "ok "+scaled(10000) {
					t.Fatalf("one flow: %s", r)
				}
				if r := runClient(t, time.Minute, ns(), "udpflows", d.dial, "1", "20", "65000"); r != "ok 20" {
					t.Fatalf("large datagrams: %s", r)
				}
				if r := runClient(t, 2*time.Minute, ns(), "udpflows", d.dial, scaled(500), "10", "512"); r != "ok "+scaled(5000) {
					t.Fatalf("500 flows: %s", r)
				}
			})
		}
		t.Run("port unreachable", func(t *testing.T) {
			for _, dial := range []string{"10.0.2.2:6999", testnet.RemoteAddr + ":6999"} {
				r := strings.Fields(runClient(t, 20*time.Second, ns(), "udprefused", dial))
				if len(r) != 2 || r[0] != "refused" {
					t.Fatalf("%s: %v, want refused", dial, r)
				}
				if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
					t.Fatalf("%s: refusal took %d ms", dial, ms)
				}
			}
		})
		if !g.running() {
			t.Fatalf("nsgate exited: %s", g.stderr)
		}
	})
}

// TestUDPDisableHostLoopback: datagrams to 10.0.2.2 fail at once, as with
// slirp4netns: ICMP network unreachable, which a socket with IP_RECVERR
// reports as ENETUNREACH.
func TestUDPDisableHostLoopback(t *testing.T) {
	w, tg, _ := tcpWorld(t, false, "--disable-host-loopback")
	startServer(t, w.HostCommand(false, "env"), "udpecho", "127.0.0.1:6002")
	r := strings.Fields(runClient(t, 20*time.Second, tg.Command("env"), "udprefused", "10.0.2.2:6002"))
	if len(r) != 2 || r[0] != "netunreachable" {
		t.Fatalf("10.0.2.2 with --disable-host-loopback: %v, want netunreachable", r)
	}
	if ms, _ := strconv.Atoi(r[1]); ms > 1000 {
		t.Fatalf("the error took %d ms", ms)
	}
}

// dnsmasq starts a real DNS server (Debian's dnsmasq) in the given namespace.
func dnsmasq(t *testing.T, prefix *exec.Cmd, listen string) {
	t.Helper()
	argv := append(prefix.Args[1:], "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
		"--listen-address="+listen, "--address=/test.nsgate/198.51.100.99", "--address=/test.nsgate/2001:db8:1::99",
		"--pid-file=", "--user=root")
	cmd := exec.Command(prefix.Args[0], argv...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(200 * time.Millisecond)
}

// dig asks 10.0.2.3 from the target (over TCP with tcp) and returns the
// short answer and how long it took. extra are more of dig's arguments:
// another server (@fd00::3), a type (AAAA).
func dig(t *testing.T, tg *testnet.Target, tcp bool, name string, extra ...string) (string, time.Duration) {
	t.Helper()
	server := "@10.0.2.3"
	for i, a := range extra {
		if strings.HasPrefix(a, "@") {
			server, extra = a, append(extra[:i:i], extra[i+1:]...)
			break
		}
	}
	args := append([]string{"+short", "+tries=1", "+time=8", server, name}, extra...)
	if tcp {
		args = append([]string{"+tcp"}, args...)
	}
	start := time.Now()
	out, _ := tg.Run(30*time.Second, "dig", args...)
	return strings.TrimSpace(out), time.Since(start)
}

// TestDNS: queries to 10.0.2.3 reach a real DNS server through the
// nameservers of the host's resolv.conf, over UDP and TCP; failover; a
// loopback resolver; and SERVFAIL at once without a usable nameserver.
func TestDNS(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		cases := []struct {
			name, resolv string
			local        bool // dnsmasq on the host namespace's loopback too
		}{
			{"remote", "nameserver " + testnet.RemoteAddr + "\n", false},
			{"loopback resolver", "nameserver 127.0.0.1\n", true},
			{"failover from refusing", "nameserver 127.0.0.1\nnameserver " + testnet.RemoteAddr + "\n", false},
			{"failover from silent", "nameserver 198.51.100.77\nnameserver " + testnet.RemoteAddr + "\n", false},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				w := testnet.New(t)
				w.SetResolvConf(c.resolv)
				dnsmasq(t, w.RemoteCommand("env"), testnet.RemoteAddr)
				if c.local {
					dnsmasq(t, w.HostCommand(false, "env"), "127.0.0.1")
				}
				tg := testnet.NewTarget(t, rootless)
				startReady(t, w, rootless, "-c", strconv.Itoa(tg.PID))
				for _, tcp := range []bool{false, true} {
					if got, took := dig(t, tg, tcp, "test.nsgate"); got != "198.51.100.99" {
						t.Fatalf("dig (tcp %v): %q after %v", tcp, got, took)
					}
				}
				out, err := tg.Run(20*time.Second, "busybox", "nslookup", "-type=a", "test.nsgate", "10.0.2.3")
				if err != nil || !strings.Contains(out, "198.51.100.99") {
					t.Fatalf("nslookup: %v\n%s", err, out)
				}
			})
		}
	})
	t.Run("no usable nameserver", func(t *testing.T) {
		w := testnet.New(t)
		w.SetResolvConf("nameserver bogus\noptions edns0\n")
		tg := testnet.NewTarget(t, false)
		g := startReady(t, w, false, "-c", strconv.Itoa(tg.PID))
		start := time.Now()
		out, _ := tg.Run(20*time.Second, "dig", "+tries=1", "+time=5", "@10.0.2.3", "test.nsgate")
		if !strings.Contains(out, "status: SERVFAIL") || time.Since(start) > 2*time.Second {
			t.Fatalf("want SERVFAIL at once, got after %v:\n%s", time.Since(start), out)
		}
		if !strings.Contains(g.stderr.String(), "no usable nameserver") {
			t.Errorf("no warning: %s", g.stderr)
		}
	})
}

// TestPing: echo to a remote host through ping sockets when
// net.ipv4.ping_group_range (per network namespace) allows it; one clear
// warning when not, while the gateway still answers.
func TestPing(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		if out, err := w.HostCommand(false, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647").CombinedOutput(); err != nil {
			t.Fatalf("sysctl: %v %s", err, out)
		}
		tg := testnet.NewTarget(t, rootless)
		startReady(t, w, rootless, "-c", strconv.Itoa(tg.PID))
		out := tg.MustRun("ping", "-c", "3", "-i", "0.2", "-W", "2", testnet.RemoteAddr)
		if !strings.Contains(out, "3 received") {
			t.Fatalf("ping remote: %s", out)
		}
	})
	t.Run("not allowed", func(t *testing.T) {
		w := testnet.New(t) // a new namespace's ping_group_range is "1 0": nobody
		tg := testnet.NewTarget(t, true)
		g := startReady(t, w, true, "-c", strconv.Itoa(tg.PID))
		if out, _ := tg.Run(10*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "1", testnet.RemoteAddr); strings.Contains(out, " 2 received") {
			t.Fatalf("ping went through with ping sockets forbidden: %s", out)
		}
		tg.Run(10*time.Second, "ping", "-c", "1", "-W", "1", testnet.RemoteAddr)
		if out := tg.MustRun("ping", "-c", "1", "-W", "2", "10.0.2.2"); !strings.Contains(out, "1 received") {
			t.Fatalf("ping gateway: %s", out)
		}
		warnings := regexp.MustCompile(`ping_group_range`).FindAllString(g.stderr.String(), -1)
		if len(warnings) != 1 || !strings.Contains(g.stderr.String(), "sysctl -w net.ipv4.ping_group_range=") {
			t.Fatalf("want exactly one warning naming the sysctl, got:\n%s", g.stderr)
		}
	})
}
