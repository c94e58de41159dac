//go:build integration

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// spawnSuite runs inside the namespace of 'nsgate -- CMD': it serves one
// forwarded connection on :80 (N bytes out), and moves N bytes each way
// between the namespace and servers on the host's loopback (as 10.0.2.2)
// and in the remote namespace, then echoes UDP through 10.0.2.2. Each
// result is a line "NAME BYTES SHA256" (or "udp ok COUNT").
func spawnSuite(n int64) int {
	fail := func(what string, err error) int { fmt.Println("error", what, err); return 1 }
	l, err := net.Listen("tcp4", ":80")
	if err != nil {
		return fail("listen :80", err)
	}
	fwd := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			fwd <- "error accept " + err.Error()
			return
		}
		sum, err := sendN(c, n, 4)
		c.Close()
		if err != nil {
			fwd <- "error fwd " + err.Error()
			return
		}
		fwd <- fmt.Sprintf("fwd %d %s", n, sum)
	}()
	dial := func(addr string) (net.Conn, error) { return net.DialTimeout("tcp4", addr, 10*time.Second) }
	for _, d := range []struct{ name, up, down string }{
		{"lo", "10.0.2.2:5001", "10.0.2.2:5002"},
		{"remote", testnet.RemoteAddr + ":5003", testnet.RemoteAddr + ":5004"},
	} {
		c, err := dial(d.up)
		if err != nil {
			return fail(d.name+"-up", err)
		}
		sum, err := sendN(c, n, 1)
		c.Close()
		if err != nil {
			return fail(d.name+"-up", err)
		}
		fmt.Println(d.name+"-up", n, sum)
		if c, err = dial(d.down); err != nil {
			return fail(d.name+"-down", err)
		}
		got, sum, err := recvAll(c)
		c.Close()
		if err != nil {
			return fail(d.name+"-down", err)
		}
		fmt.Println(d.name+"-down", got, sum)
	}
	u, err := net.Dial("udp4", "10.0.2.2:6001")
	if err != nil {
		return fail("udp", err)
	}
	if err := udpExchange(u, 0, 200, 1200); err != nil {
		return fail("udp", err)
	}
	fmt.Println("udp ok 200")
	select {
	case r := <-fwd:
		fmt.Println(r)
	case <-time.After(time.Minute):
		return fail("fwd", fmt.Errorf("no forwarded connection within a minute"))
	}
	return 0
}

// TestSpawnTraffic: spawn mode (nsgate -p 8080:80 -- CMD) carries what
// target mode does: TCP both ways to the host's loopback and to the remote
// namespace, sha256-equal, a forward into the namespace, UDP, and ping.
func TestSpawnTraffic(t *testing.T) {
	n := min(bigSize(), 64<<20)
	ns := strconv.FormatInt(n, 10)
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		if out, err := w.HostCommand(false, "sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647").CombinedOutput(); err != nil {
			t.Fatalf("sysctl: %v %s", err, out)
		}
		host := func() *exec.Cmd { return w.HostCommand(false, "env") }
		upLo := startServer(t, host(), "sink", "127.0.0.1:5001")
		downLo := startServer(t, host(), "source", "127.0.0.1:5002", ns)
		upRemote := startServer(t, w.RemoteCommand("env"), "sink", testnet.RemoteAddr+":5003")
		downRemote := startServer(t, w.RemoteCommand("env"), "source", testnet.RemoteAddr+":5004", ns)
		startServer(t, host(), "udpecho", "127.0.0.1:6001")

		args := append(strings.Fields(os.Getenv("NSGATE_TEST_ARGS")), "-m", "65520", "-p", "127.0.0.1:8080:80", "--",
			"sh", "-c", `ping -c1 -W5 `+testnet.RemoteAddr+` >/dev/null || echo "error ping"; exec "$0" spawnsuite`, testBin)
		cmd := w.HostCommand(rootless, nsgateBin, args...)
		cmd.Env = append(os.Environ(), helperEnv+"=spawnsuite\x1f"+ns)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = 5 * time.Second // the spawned command may outlive a killed nsgate
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var waitErr error
		done := make(chan struct{})
		go func() { waitErr = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
		// The forward: retried until the namespace's server listens (the
		// forward accepts first and resets when nothing answers inside).
		var fwd string
		for i := 0; i < 100 && !strings.HasPrefix(fwd, ns+" "); i++ {
			fwd = strings.TrimSpace(helperOutput(t, w.HostCommand(false, "env"), "recv", "127.0.0.1:8080"))
			if !strings.HasPrefix(fwd, ns+" ") {
				t.Logf("forward attempt %d: %s", i, fwd)
				time.Sleep(200 * time.Millisecond)
			}
		}
		select {
		case <-done:
			if waitErr != nil {
				t.Fatalf("nsgate -- spawnsuite: %v\n%s", waitErr, out)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("nsgate -- spawnsuite did not finish\n%s", out)
		}
		got := map[string]string{}
		for _, line := range strings.Split(out.String(), "\n") {
			if name, rest, ok := strings.Cut(line, " "); ok {
				got[name] = rest
			}
		}
		if strings.Contains(out.String(), "error") {
			t.Fatalf("spawned suite failed:\n%s", out)
		}
		for name, srv := range map[string]*server{"lo-up": upLo, "lo-down": downLo, "remote-up": upRemote, "remote-down": downRemote} {
			want := srv.result(t, time.Minute)
			if got[name] != want || !strings.HasPrefix(want, ns+" ") {
				t.Errorf("%s: namespace says %q, server %q", name, got[name], want)
			}
		}
		if got["fwd"] != fwd {
			t.Errorf("forward: namespace sent %q, host client got %q", got["fwd"], fwd)
		}
		if got["udp"] != "ok 200" {
			t.Errorf("udp: %q", got["udp"])
		}
	})
}

// helperOutput runs a helper to completion and returns its output.
func helperOutput(t *testing.T, prefix *exec.Cmd, args ...string) string {
	t.Helper()
	out, _ := helper(prefix, args...).CombinedOutput()
	return string(out)
}

// TestSpawnDNSAndMTU: nsgate -- CMD gives the command a resolv.conf naming
// the DNS address, with the host's search and options lines, so that a
// resolver on the host's loopback (systemd-resolved, a local dnsmasq) works
// there; with -6 fd00::3 follows; --dns names another nameserver; the
// host's file is untouched; the MTU is 65520 unless -m says otherwise.
func TestSpawnDNSAndMTU(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		const hostResolv = "nameserver 127.0.0.1\nsearch example.invalid\noptions ndots:1\n"
		w.SetResolvConf(hostResolv)
		dnsmasq(t, w.HostCommand(false, "env"), "127.0.0.1")
		dnsmasq(t, w.RemoteCommand("env"), testnet.RemoteAddr)
		run := func(args ...string) string {
			t.Helper()
			cmd := w.HostCommand(rootless, nsgateBin, args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("nsgate %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		const script = "cat /etc/resolv.conf; ip -o link show tap0; busybox nslookup -type=a test.nsgate"
		out := run("--", "sh", "-c", script)
		for _, want := range []string{"nameserver 10.0.2.3\n", "search example.invalid\n", "options ndots:1\n", "mtu 65520 ", "198.51.100.99"} {
			if !strings.Contains(out, want) {
				t.Errorf("nsgate -- (loopback resolver on the host): no %q in\n%s", want, out)
			}
		}
		if strings.Contains(out, "nameserver 127.0.0.1") {
			t.Errorf("the command sees the host's loopback nameserver:\n%s", out)
		}
		// With -6 the IPv6 DNS address comes second, and answers.
		out = run("-6", "--", "sh", "-c", "cat /etc/resolv.conf; busybox nslookup -type=a test.nsgate fd00::3")
		if !strings.Contains(out, "nameserver 10.0.2.3\nnameserver fd00::3\n") || !strings.Contains(out, "198.51.100.99") {
			t.Errorf("nsgate -6 --: no nameserver fd00::3 after 10.0.2.3, or no answer from it:\n%s", out)
		}
		out = run("--dns", testnet.RemoteAddr, "-m", "1500", "--", "sh", "-c", script)
		for _, want := range []string{"nameserver " + testnet.RemoteAddr + "\n", "mtu 1500 ", "198.51.100.99"} {
			if !strings.Contains(out, want) {
				t.Errorf("nsgate --dns %s -m 1500 --: no %q in\n%s", testnet.RemoteAddr, want, out)
			}
		}
		if got, err := os.ReadFile("/etc/netns/" + w.Host + "/resolv.conf"); err != nil || string(got) != hostResolv {
			t.Errorf("the host's resolv.conf changed: %q, %v", got, err)
		}
	})
}
