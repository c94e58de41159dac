//go:build integration

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// pastaBin is nsgate under the name pasta, as podman and rootlesskit find
// it: a symlink beside the binary under test.
var pastaBin = sync.OnceValue(func() string {
	p := filepath.Join(filepath.Dir(nsgateBin), "pasta")
	if err := os.Symlink(filepath.Base(nsgateBin), p); err != nil && !os.IsExist(err) {
		panic(err)
	}
	return p
})

// pastaWorld is a sealed world whose host namespace has default routes, as
// pasta copies them: via 198.51.100.254 and 2001:db8:1::fe, addresses the
// remote namespace also holds (so the gateway is not the remote's service
// address), and a named target namespace with its file in /run/netns, as
// podman hands pasta a file.
func pastaWorld(t *testing.T) (*testnet.World, string) {
	t.Helper()
	w := testnet.New(t)
	vr := "vr" + strings.TrimPrefix(w.Remote, "nsg-r-")
	for _, args := range [][]string{
		{"netns", "exec", w.Remote, "ip", "addr", "add", "198.51.100.254/24", "dev", vr},
		{"netns", "exec", w.Remote, "ip", "addr", "add", "2001:db8:1::fe/64", "dev", vr, "nodad"},
		{"-n", w.Host, "route", "add", "default", "via", "198.51.100.254"},
		{"-n", w.Host, "-6", "route", "add", "default", "via", "2001:db8:1::fe"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	target := "nsgpt-" + strings.TrimPrefix(w.Host, "nsg-h-")
	if out, err := exec.Command("ip", "netns", "add", target).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", target, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", target).Run() })
	return w, target
}

// pastaDaemon finds the background nsgate serving netns (by its command
// line: podman passes no --pid), and registers its end with the test.
func pastaDaemon(t *testing.T, netns string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmdline, []byte(pastaBin()+"\x00")) || !bytes.Contains(cmdline, []byte("\x00"+netns+"\x00")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		t.Cleanup(func() {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		})
		return pid
	}
	t.Fatalf("no pasta process serving %s", netns)
	return 0
}

// TestPastaPodman runs nsgate as pasta with podman's command line, exactly
// as podman 5/6 builds it for `podman run -p 127.0.0.1:8085:80 -p 8086:80`
// (container-libs' libnetwork/pasta), against a namespace file.
func TestPastaPodman(t *testing.T) {
	w, target := pastaWorld(t)
	netns := "/run/netns/" + target
	w.SetResolvConf("nameserver 127.0.0.1\n")
	dnsmasq(t, w.HostCommand(false, "env"), "127.0.0.1")
	hostService := startServer(t, w.HostCommand(false, "env"), "peer", testnet.HostAddr+":7300")

	args := []string{"--config-net",
		"-t", "127.0.0.1/8085-8085:80-80", "-t", "8086-8086:80-80",
		"--dns-forward", "169.254.1.1", "-u", "none", "-T", "none", "-U", "none",
		"--no-map-gw", "--quiet", "--netns", netns, "--map-guest-addr", "169.254.1.2"}
	out, err := w.HostCommand(false, pastaBin(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pasta %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	pid := pastaDaemon(t, netns)
	t.Run("quiet", func(t *testing.T) {
		if len(out) != 0 {
			t.Errorf("--quiet: pasta printed %q", out)
		}
	})
	t.Run("sandboxed, under seccomp, by default", func(t *testing.T) {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil || !bytes.Contains(status, []byte("\nSeccomp:\t2\n")) {
			t.Errorf("pasta (PID %d) runs without its seccomp filter: %v\n%s", pid, err, status)
		}
		mnt, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
		own, _ := os.Readlink("/proc/self/ns/mnt")
		if mnt == own {
			t.Errorf("pasta (PID %d) shares the test's mount namespace: not sandboxed", pid)
		}
	})
	in := exec.Command("ip", "netns", "exec", target)
	t.Run("host's address and routes copied", func(t *testing.T) {
		links, _ := exec.Command("ip", "-n", target, "-o", "addr", "show").CombinedOutput()
		routes, _ := exec.Command("ip", "-n", target, "route", "show", "default").CombinedOutput()
		routes6, _ := exec.Command("ip", "-n", target, "-6", "route", "show", "default").CombinedOutput()
		vh := "vh" + strings.TrimPrefix(w.Host, "nsg-h-")
		for _, want := range []string{vh + "    inet " + testnet.HostAddr + "/24", vh + "    inet6 " + testnet.HostAddr6 + "/64"} {
			if !strings.Contains(string(links), want) {
				t.Errorf("namespace addresses lack %q (the host's interface name and address):\n%s", want, links)
			}
		}
		if !strings.Contains(string(routes), "default via 198.51.100.254 dev "+vh) || !strings.Contains(string(routes6), "default via 2001:db8:1::fe dev "+vh) {
			t.Errorf("default routes not the host's:\n%s%s", routes, routes6)
		}
	})
	t.Run("DNS via 169.254.1.1 reaches the host's dnsmasq", func(t *testing.T) {
		got, err := exec.Command("ip", "netns", "exec", target, "dig", "+short", "+tries=2", "+time=3", "@169.254.1.1", "test.nsgate").CombinedOutput()
		if err != nil || strings.TrimSpace(string(got)) != "198.51.100.99" {
			t.Errorf("dig @169.254.1.1 test.nsgate: %q, %v; want 198.51.100.99", got, err)
		}
	})
	t.Run("169.254.1.2 reaches a service on the host's address", func(t *testing.T) {
		if got := runClient(t, 10*time.Second, in, "dial", "169.254.1.2:7300"); !strings.HasPrefix(got, "connected ") {
			t.Fatalf("dial 169.254.1.2:7300: %s", got)
		}
		if got := hostService.result(t, 5*time.Second); got != testnet.HostAddr {
			t.Errorf("the host service saw %s, want the host's own address %s", got, testnet.HostAddr)
		}
	})
	t.Run("-t 8086-8086:80-80 keeps the client's address", func(t *testing.T) {
		srv := startServer(t, in, "peer", "0.0.0.0:80")
		if got := runClient(t, 10*time.Second, w.RemoteCommand("env"), "dial", testnet.HostAddr+":8086"); !strings.HasPrefix(got, "connected ") {
			t.Fatalf("remote dial %s:8086: %s", testnet.HostAddr, got)
		}
		if got := srv.result(t, 5*time.Second); got != testnet.RemoteAddr {
			t.Errorf("the container saw client %s, want the remote's own address %s", got, testnet.RemoteAddr)
		}
	})
	t.Run("-t 127.0.0.1/8085-8085:80-80 serves the host's loopback only", func(t *testing.T) {
		srv := startServer(t, in, "peer", "0.0.0.0:80")
		if got := runClient(t, 10*time.Second, w.HostCommand(false, "env"), "dial", "127.0.0.1:8085"); !strings.HasPrefix(got, "connected ") {
			t.Fatalf("dial 127.0.0.1:8085: %s", got)
		}
		// The namespace cannot be shown a loopback source on its tap: the
		// client appears as the gateway address, as with slirp4netns.
		if got := srv.result(t, 5*time.Second); got != "198.51.100.254" {
			t.Errorf("the container saw client %s, want the gateway 198.51.100.254", got)
		}
		if got := runClient(t, 10*time.Second, w.RemoteCommand("env"), "dial", testnet.HostAddr+":8085"); !strings.HasPrefix(got, "refused ") {
			t.Errorf("remote dial %s:8085 (bound to 127.0.0.1): %s, want refused", testnet.HostAddr, got)
		}
	})
	t.Run("deleting the namespace file ends pasta", func(t *testing.T) {
		if out, err := exec.Command("ip", "netns", "del", target).CombinedOutput(); err != nil {
			t.Fatalf("ip netns del: %v\n%s", err, out)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
				return
			}
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); bytes.Contains(b, []byte(") Z ")) {
				return // exited; its parent (init) reaps it
			}
			if time.Now().After(deadline) {
				t.Fatalf("pasta (PID %d) still runs 2 s after its namespace file was deleted", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestPastaAutoPorts: -t auto (rootlesskit's implicit port driver) follows a
// server that starts and stops inside the namespace, each within 2 s.
func TestPastaAutoPorts(t *testing.T) {
	w, target := pastaWorld(t)
	netns := "/run/netns/" + target
	startProcess(t, w.HostCommand(false, pastaBin(), "-f", "--config-net", "-t", "auto", "-u", "none", "-T", "none", "-U", "none", "--netns", netns), nil)
	in := exec.Command("ip", "netns", "exec", target)
	// Until the forward is up, the host's port refuses at once. socat, not
	// the test binary, dials: it starts in milliseconds, even under -race.
	waitDial := func(want string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			out, err := w.HostCommand(false, "socat", "-u", "/dev/null", "TCP:127.0.0.1:18123,connect-timeout=1").CombinedOutput()
			got := "connected"
			if err != nil {
				got = "failed: " + strings.TrimSpace(string(out))
				if strings.Contains(string(out), "Connection refused") {
					got = "refused"
				}
			}
			if got == want {
				return time.Since(start)
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("host 127.0.0.1:18123: %s after %v, want %s", got, time.Since(start), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitDial("refused")
	srv := startServer(t, in, "echo", "0.0.0.0:18123")
	d := waitDial("connected")
	t.Logf("the forward came up %v after the server started", d)
	if d > 2*time.Second {
		t.Errorf("the forward came up %v after the server started, want within 2 s", d)
	}
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	d = waitDial("refused")
	t.Logf("the forward went %v after the server stopped", d)
	if d > 2*time.Second {
		t.Errorf("the forward went %v after the server stopped, want within 2 s", d)
	}
}

// TestPastaDaemon: the parent exits 0, silent with -q, once the namespace
// is served; -P
// names the daemon, which serves on and, on SIGTERM, exits and removes the
// file. A bad option exits 1 at once, before anything runs.
func TestPastaDaemon(t *testing.T) {
	w, target := pastaWorld(t)
	netns := "/run/netns/" + target
	pidFile := filepath.Join(t.TempDir(), "pasta.pid")
	out, err := w.HostCommand(false, pastaBin(), "--config-net", "-q", "-P", pidFile, "-t", "none", "-u", "none", "--netns", netns).CombinedOutput()
	if err != nil {
		t.Fatalf("pasta: %v\n%s", err, out)
	}
	if len(out) != 0 { // on any kernel: before 6.2 the tap lacks USO, and -q keeps that quiet too
		t.Errorf("-q: pasta printed %q", out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("--pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("--pid file holds %q", b)
	}
	if got := pastaDaemon(t, netns); got != pid {
		t.Fatalf("--pid file says %d, the daemon is %d", pid, got)
	}
	// It serves: the remote namespace answers from inside the target.
	remote := startServer(t, w.RemoteCommand("env"), "peer", testnet.RemoteAddr+":7400")
	if got := runClient(t, 10*time.Second, exec.Command("ip", "netns", "exec", target), "dial", testnet.RemoteAddr+":7400"); !strings.HasPrefix(got, "connected ") {
		t.Fatalf("dial the remote from the namespace: %s", got)
	}
	if got := remote.result(t, 5*time.Second); got != testnet.HostAddr {
		t.Errorf("the remote saw %s, want the host's address %s", got, testnet.HostAddr)
	}
	p, _ := os.FindProcess(pid)
	p.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(pidFile); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the --pid file outlived SIGTERM by 3 s")
		}
	}
	out, err = w.HostCommand(false, pastaBin(), "--no-dhcp", "--netns", netns).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "pasta: option '--no-dhcp' is not supported") {
		t.Errorf("pasta --no-dhcp: %v, %q; want exit 1 and the reason", err, out)
	}
}

// TestPastaCommand: without PID or --netns, pasta runs the command in new
// namespaces with the host's address, and exits with its status.
func TestPastaCommand(t *testing.T) {
	w, _ := pastaWorld(t)
	remote := startServer(t, w.RemoteCommand("env"), "peer", testnet.RemoteAddr+":7500")
	cmd := w.HostCommand(true, pastaBin(), "-q", "--config-net", "--", "sh", "-c",
		"ip -o -4 addr show scope global; ip route show default; "+testBin+"; exit 7")
	cmd.Env = append(os.Environ(), helperEnv+"=dial\x1f"+testnet.RemoteAddr+":7500")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Fatalf("pasta -- sh: %v (want the command's status 7)\n%s", err, out)
	}
	vh := "vh" + strings.TrimPrefix(w.Host, "nsg-h-")
	if !strings.Contains(string(out), vh+"    inet "+testnet.HostAddr+"/24") || !strings.Contains(string(out), "default via 198.51.100.254 dev "+vh) {
		t.Errorf("the command's network is not the host's:\n%s", out)
	}
	if got := remote.result(t, 5*time.Second); got != testnet.HostAddr {
		t.Errorf("the remote saw %s, want %s", got, testnet.HostAddr)
	}
}
