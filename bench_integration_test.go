//go:build integration

package main

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// driver is a user-mode network tool started the slirp4netns way.
type driver struct {
	name string
	argv func(pid int) []string
}

// drivers returns nsgate and, when installed, slirp4netns: both map
// 10.0.2.2 to the host's loopback, so the same clients measure both.
func drivers() []driver {
	d := []driver{{"nsgate", func(pid int) []string {
		return []string{nsgateBin, "-c", "-m", "65520", strconv.Itoa(pid), "tap0"}
	}}}
	if p, err := exec.LookPath("slirp4netns"); err == nil {
		d = append(d, driver{"slirp4netns", func(pid int) []string {
			return []string{p, "-c", "-m", "65520", strconv.Itoa(pid), "tap0"}
		}})
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
			waitConfigured(b, tg, g)
			host := func() *exec.Cmd { return w.HostCommand(false, "env") }
			ns := func() *exec.Cmd { return tg.Command("env") }
			startServer(b, host(), "echo", "127.0.0.1:5101")
			port := 5200
			b.Run("ns-to-host", func(b *testing.B) {
				port++
				addr := "127.0.0.1:" + strconv.Itoa(port)
				srv := startServer(b, host(), "drain", addr)
				b.SetBytes(1 << 20)
				b.ResetTimer()
				runClient(b, 5*time.Minute, ns(), "blast", "10.0.2.2:"+strconv.Itoa(port), strconv.Itoa(b.N<<20))
				if got := srv.result(b, time.Minute); got != strconv.Itoa(b.N<<20) {
					b.Fatalf("server received %s bytes, want %d", got, b.N<<20)
				}
			})
			b.Run("host-to-ns", func(b *testing.B) {
				port++
				addr := "127.0.0.1:" + strconv.Itoa(port)
				startServer(b, host(), "spew", addr, strconv.Itoa(b.N<<20))
				b.SetBytes(1 << 20)
				b.ResetTimer()
				if got := runClient(b, 5*time.Minute, ns(), "suck", "10.0.2.2:"+strconv.Itoa(port)); got != strconv.Itoa(b.N<<20) {
					b.Fatalf("namespace received %s bytes, want %d", got, b.N<<20)
				}
			})
			b.Run("rr", func(b *testing.B) {
				if r := runClient(b, 5*time.Minute, ns(), "rr", "10.0.2.2:5101", strconv.Itoa(b.N)); r != "ok" {
					b.Fatal(r)
				}
			})
			b.Run("crr", func(b *testing.B) {
				if r := runClient(b, 5*time.Minute, ns(), "crr", "10.0.2.2:5101", strconv.Itoa(b.N)); r != "ok" {
					b.Fatal(r)
				}
			})
		})
	}
}

// waitConfigured waits until the driver has configured the tap.
func waitConfigured(b *testing.B, tg *testnet.Target, g *gate) {
	for i := 0; i < 500; i++ {
		if out, _ := tg.Run(5*time.Second, "ip", "-4", "route", "show", "default"); strings.Contains(out, "via 10.0.2.2") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("driver did not configure the tap: %s", g.stderr)
}
