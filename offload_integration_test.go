//go:build integration

package main

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
	"golang.org/x/sys/unix"
)

// exitFrames stops g and returns the frames it counted in and out, from
// its exit line.
func exitFrames(t *testing.T, g *gate) (in, out int64) {
	t.Helper()
	g.cmd.Process.Signal(unix.SIGTERM)
	if st := g.waitExit(10 * time.Second); st != 0 {
		t.Fatalf("nsgate exited %d on SIGTERM: %s", st, g.stderr)
	}
	m := regexp.MustCompile(`frames in (\d+), out (\d+)`).FindStringSubmatch(g.stderr.String())
	if m == nil {
		t.Fatalf("no frame counts in nsgate's exit line: %s", g.stderr)
	}
	in, _ = strconv.ParseInt(m[1], 10, 64)
	out, _ = strconv.ParseInt(m[2], 10, 64)
	return in, out
}

// offloadsOn checks that ethtool in the target sees the tap's offloads on
// (checksum and TSO: what the namespace's kernel hands nsgate) and that
// nsgate said so if it got fewer: USO, before Linux 6.2.
func offloadsOn(t *testing.T, tg *testnet.Target, g *gate) {
	t.Helper()
	out := tg.MustRun("ethtool", "-k", "tap0")
	for _, want := range []string{"tx-checksumming: on", "tcp-segmentation-offload: on", "tx-tcp-segmentation: on"} {
		if !strings.Contains(out, want) {
			t.Fatalf("ethtool -k tap0 lacks %q:\n%s", want, out)
		}
	}
	uso := strings.Contains(out, "tx-udp-segmentation: on")
	if said := strings.Contains(g.stderr.String(), "the kernel refused the rest"); said == uso {
		t.Fatalf("USO on: %v, but nsgate's log says otherwise: %s", uso, g.stderr)
	}
}

// TestOffloads: at MTU 1500 the tap offers checksum and TSO offloads, as
// ethtool in the namespace shows, and 200 MiB (16 MiB in make
// test-kernel's guest) each way to the host's loopback and to the remote
// namespace, and each way through port forwards, arrive sha256-intact in
// super-frames: nsgate's frames carry over 3,000 bytes of payload on
// average, counting the ACKs, where without offloads none could carry over
// 1,460. A client that sets TCP_MAXSEG to 536 works both ways, and a
// UDP_SEGMENT send (USO, on kernels that have it) reaches the remote
// server as its datagrams.
func TestOffloads(t *testing.T) {
	n := min(int64(200<<20), bigSize()) // make test-kernel's guest moves less
	w, tg, g := tcpWorld(t, true, "-m", "1500", "-p", "5008", "-p", "5009")
	if out := tg.MustRun("ip", "link", "show", "tap0"); !strings.Contains(out, "mtu 1500") {
		t.Fatalf("the tap's MTU is not 1500: %s", out)
	}
	offloadsOn(t, tg, g)
	ns := strconv.FormatInt(n, 10)
	moved := int64(0)
	check := func(what, sent, got string) {
		t.Helper()
		if !strings.HasPrefix(sent, ns+" ") || got != sent {
			t.Fatalf("%s: sent %q, received %q", what, sent, got)
		}
		moved += n
	}
	for _, d := range destinations(w) {
		srv := startServer(t, d.where(), "sink", d.listen)
		check(d.name+" ns→host", runClient(t, 3*time.Minute, tg.Command("env"), "send", d.dial, ns), srv.result(t, time.Minute))
		listen, dial := strings.Replace(d.listen, ":5001", ":5011", 1), strings.Replace(d.dial, ":5001", ":5011", 1)
		srv = startServer(t, d.where(), "source", listen, ns)
		got := runClient(t, 3*time.Minute, tg.Command("env"), "recv", dial)
		check(d.name+" host→ns", srv.result(t, time.Minute), got)
	}
	srv := startServer(t, tg.Command("env"), "sink", "0.0.0.0:5008")
	check("forwarded host→ns", runClient(t, 3*time.Minute, w.HostCommand(false, "env"), "send", "127.0.0.1:5008", ns), srv.result(t, time.Minute))
	srv = startServer(t, tg.Command("env"), "source", "0.0.0.0:5009", ns)
	got := runClient(t, 3*time.Minute, w.HostCommand(false, "env"), "recv", "127.0.0.1:5009")
	check("forwarded ns→host", srv.result(t, time.Minute), got)

	// A small MSS: the super-frames to the namespace are cut at 536.
	small := int(n / 10)
	d := destinations(w)[1]
	srv = startServer(t, d.where(), "sink", d.listen)
	sent := runClient(t, time.Minute, tg.Command("env"), "sendmss", d.dial, strconv.Itoa(small), "536")
	if got := srv.result(t, time.Minute); !strings.HasPrefix(sent, strconv.Itoa(small)+" ") || got != sent {
		t.Fatalf("MSS 536 ns→remote: sent %q, received %q", sent, got)
	}
	srv = startServer(t, d.where(), "source", strings.Replace(d.listen, ":5001", ":5011", 1), strconv.Itoa(small))
	got = runClient(t, time.Minute, tg.Command("env"), "recvmss", strings.Replace(d.dial, ":5001", ":5011", 1), "536")
	if sent := srv.result(t, time.Minute); !strings.HasPrefix(sent, strconv.Itoa(small)+" ") || got != sent {
		t.Fatalf("MSS 536 remote→ns: sent %q, received %q", sent, got)
	}

	// USO: 40 datagrams of 1,000 bytes in one send.
	srv = startServer(t, w.RemoteCommand("env"), "udpcount", testnet.RemoteAddr+":6100", "1000", "40")
	if r := runClient(t, time.Minute, tg.Command("env"), "usosend", testnet.RemoteAddr+":6100", "1000", "40"); r != "sent 40" {
		t.Fatalf("usosend: %s", r)
	}
	if r := srv.result(t, 30*time.Second); r != "ok 40" {
		t.Fatalf("the remote server, after a USO send from the namespace: %s", r)
	}

	in, out := exitFrames(t, g)
	if avg := moved / (in + out); avg < 3000 {
		t.Fatalf("%d bytes moved in %d frames in and %d out: %d bytes a frame, not super-frames", moved, in, out, avg)
	}
	t.Logf("%d MiB in %d frames in, %d out", moved>>20, in, out)
}

// TestOffloadsAttached: a tap that exists before nsgate (rootlesskit makes
// tap0, without a vnet header) gets offloads too: attaching sets
// IFF_VNET_HDR anew, and TUNSETOFFLOAD works on the attached descriptor.
func TestOffloadsAttached(t *testing.T) {
	w := testnet.New(t)
	tg := testnet.NewTarget(t, true)
	tg.MustRun("ip", "tuntap", "add", "tap0", "mode", "tap")
	if out := tg.MustRun("ethtool", "-k", "tap0"); !strings.Contains(out, "tcp-segmentation-offload: off") {
		t.Fatalf("a fresh tap already has TSO on; the test would prove nothing:\n%s", out)
	}
	g := startReady(t, w, true, "-c", "-m", "1500", strconv.Itoa(tg.PID), "tap0")
	offloadsOn(t, tg, g)
	n := strconv.FormatInt(min(int64(50<<20), bigSize()), 10)
	d := destinations(w)[0]
	srv := startServer(t, d.where(), "sink", d.listen)
	sent := runClient(t, time.Minute, tg.Command("env"), "send", d.dial, n)
	if got := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
		t.Fatalf("through an attached tap: sent %q, received %q", sent, got)
	}
}
