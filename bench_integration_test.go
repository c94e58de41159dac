//go:build integration

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// driver is a user-mode network tool started the slirp4netns way, and the
// family it is measured over.
type driver struct {
	name string
	argv func(pid int) []string
	six  bool // over IPv6: fd00::2, the host's ::1
}

// gateway and loopback are where the namespace dials and where the host's
// server listens, for the driver's family.
func (d driver) gateway() string {
	if d.six {
		return "[fd00::2]"
	}
	return "10.0.2.2"
}

func (d driver) loopback() string {
	if d.six {
		return "[::1]"
	}
	return "127.0.0.1"
}

// drivers returns nsgate and, when installed, slirp4netns, each at MTU
// 65520 (what rootlesskit and podman use) and 1500: both map 10.0.2.2 to
// the host's loopback, so the same clients measure both. Each runs once
// more over IPv6 (-6: fd00::2 is the host's ::1 for both).
func drivers() []driver {
	bins := [][2]string{{"nsgate", nsgateBin}}
	if p, err := exec.LookPath("slirp4netns"); err == nil {
		bins = append(bins, [2]string{"slirp4netns", p})
	}
	var d []driver
	for _, six := range []bool{false, true} {
		for _, mtu := range []string{"65520", "1500"} {
			for _, bin := range bins {
				name, args := bin[0], []string{bin[1], "-c", "-m", mtu}
				if six {
					name, args = name+"-ipv6", append(args, "-6")
				}
				if mtu != "65520" {
					name += "-mtu" + mtu
				}
				d = append(d, driver{name: name, six: six, argv: func(pid int) []string {
					return append(args[:len(args):len(args)], strconv.Itoa(pid), "tap0")
				}})
			}
		}
	}
	return d
}

// BenchmarkTCP measures, for each driver, TCP through the tap to a server on
// the host's loopback: bulk throughput each way (MB/s), one-byte round trips
// (ns/op is one round trip) and connections (ns/op is one connect, exchange
// and close). make bench runs it; pasta is compared by ../shared/bench/netbench.
func BenchmarkTCP(b *testing.B) {
	for _, d := range drivers() {
		b.Run(d.name, func(b *testing.B) {
			w := testnet.New(b)
			tg := testnet.NewTarget(b, false)
			argv := d.argv(tg.PID)
			g := startProcess(b, w.HostCommand(false, argv[0], argv[1:]...), nil)
			waitConfigured(b, tg, g, d.six)
			host := func() *exec.Cmd { return w.HostCommand(false, "env") }
			ns := func() *exec.Cmd { return tg.Command("env") }
			gw, lo := d.gateway(), d.loopback()
			startServer(b, host(), "echo", lo+":5101")
			port := 5200
			b.Run("ns-to-host", func(b *testing.B) {
				port++
				addr := lo + ":" + strconv.Itoa(port)
				srv := startServer(b, host(), "drain", addr)
				b.SetBytes(1 << 20)
				b.ResetTimer()
				runClient(b, 5*time.Minute, ns(), "blast", gw+":"+strconv.Itoa(port), strconv.Itoa(b.N<<20))
				if got := srv.result(b, time.Minute); got != strconv.Itoa(b.N<<20) {
					b.Fatalf("server received %s bytes, want %d", got, b.N<<20)
				}
			})
			b.Run("host-to-ns", func(b *testing.B) {
				port++
				addr := lo + ":" + strconv.Itoa(port)
				startServer(b, host(), "spew", addr, strconv.Itoa(b.N<<20))
				b.SetBytes(1 << 20)
				b.ResetTimer()
				if got := runClient(b, 5*time.Minute, ns(), "suck", gw+":"+strconv.Itoa(port)); got != strconv.Itoa(b.N<<20) {
					b.Fatalf("namespace received %s bytes, want %d", got, b.N<<20)
				}
			})
			b.Run("rr", func(b *testing.B) {
				if r := runClient(b, 5*time.Minute, ns(), "rr", gw+":5101", strconv.Itoa(b.N)); r != "ok" {
					b.Fatal(r)
				}
			})
			b.Run("crr", func(b *testing.B) {
				if r := runClient(b, 5*time.Minute, ns(), "crr", gw+":5101", strconv.Itoa(b.N)); r != "ok" {
					b.Fatal(r)
				}
			})
		})
	}
}

// waitConfigured waits until the driver has configured the tap: with six,
// until the IPv6 default route is there and the global address is past
// duplicate address detection (slirp4netns -c leaves IPv6 to the kernel's
// autoconfiguration; nsgate -c -6 configures both at once).
func waitConfigured(b *testing.B, tg *testnet.Target, g *gate, six bool) {
	family, via := "-4", "via 10.0.2.2"
	if six {
		family, via = "-6", "via fe80::2"
	}
	ready := func() bool {
		if out, _ := tg.Run(5*time.Second, "ip", family, "route", "show", "default"); !strings.Contains(out, via) {
			return false
		}
		if !six {
			return true
		}
		addr, _ := tg.Run(5*time.Second, "ip", "-6", "addr", "show", "dev", "tap0", "scope", "global", "-tentative")
		return strings.Contains(addr, "inet6 fd00::")
	}
	for i := 0; i < 500; i++ {
		if ready() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("driver did not configure the tap: %s", g.stderr)
}

// BenchmarkStalledFlowsRSS measures nsgate's resident memory for TCP flows
// whose host side has sent 1 MiB that the namespace does not read (its
// socket has a 1 MiB receive buffer): with SO_PEEK_OFF those bytes wait in
// the host sockets, kernel memory; on the path for kernels before 6.9
// (NSGATE_NO_PEEK_OFF=1) nsgate holds the bytes in flight itself, up to its
// ring budget. Reported as RSS-KiB/flow over 200 flows, against nsgate's
// RSS before they opened; one measurement per run, whatever b.N.
func BenchmarkStalledFlowsRSS(b *testing.B) {
	const flows = 200
	for _, path := range []struct{ name, noPeekOff string }{{"peek-off", ""}, {"copy", "1"}} {
		b.Run(path.name, func(b *testing.B) {
			b.Setenv("NSGATE_NO_PEEK_OFF", path.noPeekOff)
			w := testnet.New(b)
			tg := testnet.NewTarget(b, false)
			g := startReady(b, w, false, "-c", "-m", "65520", strconv.Itoa(tg.PID), "tap0")
			before := vmRSS(b, g.cmd.Process.Pid)
			startServer(b, w.HostCommand(false, "env"), "spewmany", "127.0.0.1:5301", strconv.Itoa(1<<20))
			startServer(b, tg.Command("env"), "holdmany", "10.0.2.2:5301", strconv.Itoa(flows), "20")
			time.Sleep(3 * time.Second) // the bytes cross while the flows are held
			after := vmRSS(b, g.cmd.Process.Pid)
			b.ReportMetric(float64(after-before)/flows, "RSS-KiB/flow")
			b.ReportMetric(float64(after), "RSS-KiB")
		})
	}
}

// vmRSS returns a process's resident set in KiB.
func vmRSS(b *testing.B, pid int) int {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ := strconv.Atoi(f[1])
			return kib
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
