//go:build integration

package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
	"github.com/nsgate/nsgate/internal/testnet"
	"golang.org/x/sys/unix"
)

// nsgateBin is the binary under test, built by TestMain where the
// unprivileged test user can run it; testBin is a copy of this test binary
// there.
var nsgateBin, testBin string

// copyFile copies src to dst, executable by everyone.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(runHelper(strings.Split(h, "\x1f")))
	}
	dir, err := os.MkdirTemp("", "nsgate-it-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	nsgateBin = filepath.Join(dir, "nsgate")
	// The test binary too, where the unprivileged user can run it as a
	// spawned command's helper.
	testBin = filepath.Join(dir, "nsgate.test")
	if err := copyFile(os.Args[0], testBin); err != nil {
		fmt.Fprintf(os.Stderr, "copy the test binary: %v\n", err)
		os.Exit(1)
	}
	if prebuilt := os.Getenv("NSGATE_TEST_BIN"); prebuilt != "" {
		// make test-kernel's guest has no Go toolchain: it brings nsgate.
		if err := copyFile(prebuilt, nsgateBin); err != nil {
			fmt.Fprintf(os.Stderr, "NSGATE_TEST_BIN: %v\n", err)
			os.Exit(1)
		}
	} else if out, err := exec.Command("go", "build", "-o", nsgateBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build nsgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// modes runs a test as root and as the unprivileged test user.
func modes(t *testing.T, fn func(t *testing.T, rootless bool)) {
	testnet.TestUserIDs(t) // fails clearly if the set-up did not run
	t.Run("root", func(t *testing.T) { fn(t, false) })
	t.Run("rootless", func(t *testing.T) { fn(t, true) })
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gate is a running nsgate.
type gate struct {
	t      testing.TB
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	status int
}

// startGate runs nsgate in the world's host namespace with args; extra
// files become fds 3, 4, ...
func startGate(t testing.TB, w *testnet.World, rootless bool, extra []*os.File, args ...string) *gate {
	t.Helper()
	// NSGATE_TEST_ARGS adds options to every nsgate the tests start:
	// 'make test' runs the traffic suites again with the sandbox and the
	// seccomp filter on.
	args = append(strings.Fields(os.Getenv("NSGATE_TEST_ARGS")), args...)
	return startProcess(t, w.HostCommand(rootless, nsgateBin, args...), extra)
}

// startProcess starts cmd (nsgate, or another driver) and ends it with the test.
func startProcess(t testing.TB, cmd *exec.Cmd, extra []*os.File) *gate {
	t.Helper()
	g := &gate{t: t, stderr: &syncBuffer{}, exited: make(chan struct{}), cmd: cmd}
	g.cmd.Stderr = g.stderr
	g.cmd.Stdout = g.stderr
	g.cmd.ExtraFiles = extra
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = g.cmd.Wait()
		ws := g.cmd.ProcessState.Sys().(syscall.WaitStatus)
		g.status = ws.ExitStatus()
		if ws.Signaled() {
			g.status = 128 + int(ws.Signal())
		}
		close(g.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			_ = g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("nsgate output:\n%s", g.stderr)
		}
	})
	return g
}

// waitExit waits for nsgate to exit and returns its status, or fails.
func (g *gate) waitExit(timeout time.Duration) int {
	g.t.Helper()
	select {
	case <-g.exited:
		return g.status
	case <-time.After(timeout):
		g.t.Fatalf("nsgate did not exit within %v; output:\n%s", timeout, g.stderr)
		return -1
	}
}

func (g *gate) running() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// startReady starts nsgate with -r 3 and waits for the ready byte.
func startReady(t testing.TB, w *testnet.World, rootless bool, args ...string) *gate {
	t.Helper()
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g := startGate(t, w, rootless, []*os.File{wr}, append([]string{"-r", "3"}, args...)...)
	wr.Close()
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 16)
		n, _ := r.Read(b)
		rest, _ := r.Read(b[n:]) // the fd must be closed after the byte
		got <- string(b[:n+rest])
	}()
	select {
	case s := <-got:
		if s != "1" {
			t.Fatalf("ready fd got %q, want \"1\" then EOF; nsgate output:\n%s", s, g.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no ready byte; nsgate output:\n%s", g.stderr)
	}
	if os.Getenv("NSGATE_NO_PEEK_OFF") == "1" {
		// make gotest-nopeek: the run must really take the fallback. The
		// line was written before the ready byte, but stderr is copied by
		// another goroutine: give it a moment.
		for i := 0; !strings.Contains(g.stderr.String(), "lack SO_PEEK_OFF"); i++ {
			if i == 200 {
				t.Fatalf("NSGATE_NO_PEEK_OFF=1, yet nsgate did not take the TCP fallback:\n%s", g.stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return g
}

const udhcpcScript = `#!/bin/sh
[ "$1" = bound ] && echo "ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu lease=$lease broadcast=$broadcast serverid=$serverid" >> "$UDHCPC_OUT"
exit 0
`

// lease runs busybox udhcpc in the target and returns the bound lease line.
func lease(t *testing.T, tg *testnet.Target) string {
	t.Helper()
	dir := t.TempDir()
	script, out := filepath.Join(dir, "script"), filepath.Join(dir, "lease")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	cmdOut, err := tg.Run(30*time.Second, "env", "UDHCPC_OUT="+out,
		"busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script)
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, cmdOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("udhcpc bound no lease: %v\n%s", err, cmdOut)
	}
	return strings.TrimSpace(string(b))
}

func TestConfigure(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		g := startReady(t, w, rootless, "-c", "-m", "9000", "--macaddress=02:00:00:aa:bb:cc", strconv.Itoa(tg.PID), "tap0")

		if out := tg.MustRun("ip", "-4", "-o", "addr", "show", "tap0"); !strings.Contains(out, "inet 10.0.2.100/24 ") {
			t.Errorf("tap0 address: %s", out)
		}
		link := tg.MustRun("ip", "-o", "link", "show", "tap0")
		if !strings.Contains(link, " mtu 9000 ") || !strings.Contains(link, "link/ether 02:00:00:aa:bb:cc") || !strings.Contains(link, ",UP,") {
			t.Errorf("tap0 link: %s", link)
		}
		if out := strings.TrimSpace(tg.MustRun("ip", "-4", "route", "show", "default")); out != "default via 10.0.2.2 dev tap0" {
			t.Errorf("default route: %q", out)
		}
		if out := tg.MustRun("ip", "-o", "link", "show", "lo"); !strings.Contains(out, ",UP,") {
			t.Errorf("lo: %s", out)
		}
		for _, addr := range []string{"10.0.2.2", "10.0.2.3"} {
			out := tg.MustRun("ping", "-c", "2", "-i", "0.2", "-W", "2", addr)
			if !strings.Contains(out, "2 received") {
				t.Errorf("ping %s: %s", addr, out)
			}
		}
		// Killing the target ends nsgate with 0.
		tg.Kill()
		if st := g.waitExit(10 * time.Second); st != 0 {
			t.Errorf("nsgate exited %d after the target died, want 0", st)
		}
		if !strings.Contains(g.stderr.String(), fmt.Sprintf("target PID %d exited", tg.PID)) {
			t.Errorf("exit reason not logged: %s", g.stderr)
		}
	})
}

var leaseRE = regexp.MustCompile(`^ip=(\S+) mask=24 router=(\S+) dns=(\S+) mtu=(\d+) lease=86400 broadcast=(\S+) serverid=(\S+)$`)

func TestDHCP(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		startReady(t, w, rootless, "-m", "65520", strconv.Itoa(tg.PID), "tap0")
		tg.MustRun("ip", "link", "set", "tap0", "up")

		first := lease(t, tg)
		m := leaseRE.FindStringSubmatch(first)
		if m == nil || m[1] != "10.0.2.15" || m[2] != "10.0.2.2" || m[3] != "10.0.2.3" || m[4] != "65520" || m[5] != "10.0.2.255" || m[6] != "10.0.2.2" {
			t.Fatalf("first lease: %q", first)
		}
		// A second client, with another MAC, gets the next address.
		tg.MustRun("ip", "link", "set", "tap0", "address", "02:00:00:00:00:42")
		second := lease(t, tg)
		if m := leaseRE.FindStringSubmatch(second); m == nil || m[1] != "10.0.2.16" {
			t.Fatalf("second lease: %q", second)
		}
	})
}

func TestCIDRAndDisableDNS(t *testing.T) {
	w := testnet.New(t)
	tg := testnet.NewTarget(t, false)
	startReady(t, w, false, "-c", "--cidr=10.0.3.0/24", "--disable-dns", strconv.Itoa(tg.PID))
	if out := tg.MustRun("ip", "-4", "-o", "addr", "show", "tap0"); !strings.Contains(out, "inet 10.0.3.100/24 ") {
		t.Errorf("tap0 address: %s", out)
	}
	if out := tg.MustRun("ping", "-c", "1", "-W", "2", "10.0.3.2"); !strings.Contains(out, "1 received") {
		t.Errorf("ping gateway: %s", out)
	}
	l := lease(t, tg)
	if !strings.HasPrefix(l, "ip=10.0.3.15 mask=24 router=10.0.3.2 dns= ") {
		t.Errorf("lease with --cidr and --disable-dns: %q", l)
	}
}

func TestExitFD(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		er, ew, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		rr, rw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		g := startGate(t, w, rootless, []*os.File{rw, er}, "-c", "-r", "3", "-e", "4", strconv.Itoa(tg.PID), "tap0")
		rw.Close()
		er.Close()
		b, _ := readAll(rr, 10*time.Second)
		if b != "1" {
			t.Fatalf("ready fd: %q; output:\n%s", b, g.stderr)
		}
		tg.MustRun("ip", "link", "show", "tap0")
		ew.Close() // the exit fd's writer goes away
		if st := g.waitExit(10 * time.Second); st != 0 {
			t.Fatalf("nsgate exited %d after the exit fd closed, want 0", st)
		}
		// The tap nsgate created is gone with it.
		if out, err := tg.Run(5*time.Second, "ip", "link", "show", "tap0"); err == nil {
			t.Errorf("tap0 outlived nsgate: %s", out)
		}
	})
}

func readAll(f *os.File, timeout time.Duration) (string, error) {
	defer f.Close()
	done := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		_, _ = b.ReadFrom(f)
		done <- b.String()
	}()
	select {
	case s := <-done:
		return s, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("timeout")
	}
}

func TestSignalAndPathMode(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		args := []string{"-c", "--netns-type=path", tg.NetnsPath(), "tap0"}
		if rootless {
			// podman passes the path and runs nsgate inside the user
			// namespace; rootless callers outside it name it explicitly.
			args = append([]string{"--userns-path", fmt.Sprintf("/proc/%d/ns/user", tg.PID)}, args...)
		}
		g := startReady(t, w, rootless, args...)
		if out := tg.MustRun("ping", "-c", "1", "-W", "2", "10.0.2.2"); !strings.Contains(out, "1 received") {
			t.Errorf("ping: %s", out)
		}
		// ip netns exec and setpriv exec, so the process is nsgate itself.
		if err := g.cmd.Process.Signal(unix.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st := g.waitExit(10 * time.Second); st != 0 {
			t.Fatalf("nsgate exited %d on SIGTERM, want 0", st)
		}
	})
}

func TestAttachExistingTap(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		// rootlesskit creates tap0 itself and then starts its network driver.
		tg.MustRun("ip", "tuntap", "add", "tap0", "mode", "tap")
		g := startReady(t, w, rootless, "-c", strconv.Itoa(tg.PID), "tap0")
		if out := tg.MustRun("ping", "-c", "1", "-W", "2", "10.0.2.2"); !strings.Contains(out, "1 received") {
			t.Errorf("ping through an attached tap: %s", out)
		}
		g.cmd.Process.Signal(unix.SIGINT)
		if st := g.waitExit(10 * time.Second); st != 0 {
			t.Fatalf("nsgate exited %d on SIGINT", st)
		}
		tg.MustRun("ip", "link", "show", "tap0") // not nsgate's: it stays
	})
}

func TestRootlessCannotEnterRootNamespace(t *testing.T) {
	testnet.TestUserIDs(t)
	w := testnet.New(t)
	tg := testnet.NewTarget(t, false)
	g := startGate(t, w, true, nil, strconv.Itoa(tg.PID))
	if st := g.waitExit(10 * time.Second); st != 1 {
		t.Fatalf("exit status %d, want 1", st)
	}
	out := strings.TrimSpace(g.stderr.String())
	denied := regexp.MustCompile(`(?i)permission denied|operation not permitted`)
	if strings.Count(out, "\n") != 0 || !denied.MatchString(out) || !strings.Contains(out, strconv.Itoa(tg.PID)) {
		t.Fatalf("want one line naming the namespace and the error, got:\n%s", out)
	}
}

// oneReceived matches ping's summary of one reply: iputils' "1 received" or
// busybox's "1 packets received" (a busybox sh may run its own ping applet).
var oneReceived = regexp.MustCompile(`\b1 (packets )?received`)

func TestSpawn(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		run := func(args ...string) (string, int) {
			cmd := w.HostCommand(rootless, nsgateBin, args...)
			out, _ := cmd.CombinedOutput()
			return string(out), cmd.ProcessState.ExitCode()
		}
		out, st := run("--", "ip", "-4", "addr", "show", "tap0")
		if st != 0 || !strings.Contains(out, "inet 10.0.2.100/24") {
			t.Errorf("nsgate -- ip -4 addr show tap0: status %d\n%s", st, out)
		}
		if _, st := run("--", "sh", "-c", "exit 7"); st != 7 {
			t.Errorf("exit status %d, want 7", st)
		}
		if out, st := run("-m", "65520", "--", "sh", "-c", "id -u; ip -o link show tap0; ping -c1 -W2 10.0.2.2"); st != 0 ||
			!strings.HasPrefix(out, "0\n") || !strings.Contains(out, "mtu 65520") || !oneReceived.MatchString(out) {
			t.Errorf("spawned shell: status %d\n%s", st, out)
		}
		if out, st := run("--", "/nonexistent/cmd"); st != 127 || !strings.Contains(out, "command not found") {
			t.Errorf("missing command: status %d\n%s", st, out)
		}
		// Under the seccomp filter, nsgate still waits for the command.
		if out, st := run("--enable-seccomp", "--", "sh", "-c", "sleep 0.3; ip -o link show tap0 >/dev/null && exit 5"); st != 5 {
			t.Errorf("--enable-seccomp -- CMD: status %d, want 5\n%s", st, out)
		}
	})
}

// injectFrames sends frames into tap0 from inside the target's network
// namespace with a packet socket, as a hostile namespace would.
func injectFrames(t *testing.T, tg *testnet.Target, frames [][]byte) int {
	t.Helper()
	return inject(t, tg, frames, false)
}

// inject sends frames as injectFrames does; with vnet, each frame starts
// with a struct virtio_net_hdr (PACKET_VNET_HDR), which the namespace's
// kernel checks and turns into its own on the tap: the hostile headers it
// lets through reach nsgate.
func inject(t *testing.T, tg *testnet.Target, frames [][]byte, vnet bool) int {
	t.Helper()
	type result struct {
		sent int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies in the target's netns
		fd, err := unix.Open(tg.NetnsPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		ifi, err := net.InterfaceByName("tap0")
		if err != nil {
			done <- result{err: err}
			return
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(s)
		if vnet {
			if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				done <- result{err: err}
				return
			}
		}
		sent := 0
		for _, f := range frames {
			if unix.Sendto(s, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index}) == nil {
				sent++
			}
			if sent%200 == 0 {
				time.Sleep(time.Millisecond) // stay within the tap's queue
			}
		}
		done <- result{sent: sent}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("inject frames: %v", r.err)
	}
	return r.sent
}

// hostileFrames is the hostile-frame corpus: n frames, the same for a seed.
// Each starts as a valid ARP, DHCP, ICMP or TCP frame, or (half of them)
// one of the structural classes: IPv4 options, fragments, TCP flag soup
// with valid checksums to served and unserved ports, UDP whose length
// lies. Half are then mutated: random bytes, truncation, or lying IHL and
// lengths, with IPv4 headers re-checksummed so that the garbage reaches
// the protocol parsers.
func hostileFrames(n int, seed int64) [][]byte {
	r := rand.New(rand.NewSource(seed))
	gwMAC := packet.MAC{0x52, 0x55, 10, 0, 2, 2}
	mk := func(dst packet.MAC, typ uint16, body []byte) []byte {
		f := make([]byte, packet.EtherLen+len(body))
		packet.Ether(f).SetHeader(dst, packet.MAC{2, 0, 0, 0, 0, 9}, typ)
		copy(f[packet.EtherLen:], body)
		return f
	}
	ipv4 := func(dst packet.MAC, proto uint8, l4 []byte) []byte {
		f := mk(dst, packet.EtherTypeIPv4, make([]byte, packet.IPv4Len+len(l4)))
		copy(f[packet.EtherLen+packet.IPv4Len:], l4)
		packet.IPv4(f[packet.EtherLen:]).Encode(&packet.IPv4Fields{TotalLen: packet.IPv4Len + len(l4), ID: 1, Protocol: proto,
			Src: packet.AddrFrom4([4]byte{10, 0, 2, 100}), Dst: packet.AddrFrom4([4]byte{10, 0, 2, 2})})
		return f
	}
	dhcp := make([]byte, packet.UDPLen+300)
	copy(dhcp, []byte{0, 68, 0, 67})
	dhcp[packet.UDPLen] = 1
	copy(dhcp[packet.UDPLen+236:], []byte{99, 130, 83, 99, 53, 1, 1, 255})
	arp := make([]byte, packet.ARPLen)
	packet.ARP(arp).Encode(&packet.ARPFields{Op: packet.ARPRequest, SenderMAC: packet.MAC{2, 0, 0, 0, 0, 9},
		SenderIP: packet.AddrFrom4([4]byte{10, 0, 2, 100}), TargetIP: packet.AddrFrom4([4]byte{10, 0, 2, 2})})
	templates := [][]byte{
		mk(packet.BroadcastMAC, packet.EtherTypeARP, arp),
		ipv4(packet.BroadcastMAC, packet.ProtoUDP, dhcp),
		ipv4(gwMAC, packet.ProtoICMP, append([]byte{8, 0, 0, 0, 0, 1, 0, 1}, make([]byte, 56)...)),
		ipv4(gwMAC, packet.ProtoTCP, make([]byte, 40)),
	}
	tcpTo := func(port uint16, flags packet.TCPFlags, payload int) []byte {
		f := ipv4(gwMAC, packet.ProtoTCP, make([]byte, packet.TCPLen+payload))
		seg := packet.TCP(f[packet.EtherLen+packet.IPv4Len:])
		r.Read(seg[packet.TCPLen:])
		seg.Encode(&packet.TCPFields{SrcPort: uint16(30000 + r.Intn(1000)), DstPort: port, Seq: r.Uint32(), Ack: r.Uint32(),
			Flags: flags, Window: uint16(r.Intn(65536)), HeaderLen: packet.TCPLen})
		seg.SetChecksum(packet.AddrFrom4([4]byte{10, 0, 2, 100}), packet.AddrFrom4([4]byte{10, 0, 2, 2}))
		return f
	}
	reip := func(ip []byte) { // re-checksum an IPv4 header whose IHL fits
		ip[10], ip[11] = 0, 0
		if ihl := int(ip[0]&0xf) * 4; ihl >= packet.IPv4Len && ihl <= len(ip) {
			c := packet.Checksum(ip[:ihl], 0)
			ip[10], ip[11] = byte(c>>8), byte(c)
		}
	}
	frames := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		f := append([]byte{}, templates[r.Intn(len(templates))]...)
		switch r.Intn(8) { // the class; 0-3 keep the template
		case 4: // IPv4 options: IHL 6-15, option bytes random, lengths consistent
			opt := 4 * (1 + r.Intn(10))
			g := make([]byte, len(f)+opt)
			copy(g, f[:packet.EtherLen+packet.IPv4Len])
			r.Read(g[packet.EtherLen+packet.IPv4Len : packet.EtherLen+packet.IPv4Len+opt])
			copy(g[packet.EtherLen+packet.IPv4Len+opt:], f[packet.EtherLen+packet.IPv4Len:])
			if g[12] == 0x08 && g[13] == 0x00 {
				ip := g[packet.EtherLen:]
				ip[0] = 0x40 | byte(5+opt/4)
				ip[2], ip[3] = byte(len(ip)>>8), byte(len(ip))
				reip(ip)
			}
			f = g
		case 5: // fragments: more-fragments, an offset, or both
			if f[12] == 0x08 && f[13] == 0x00 {
				ip := f[packet.EtherLen:]
				off := uint16(r.Intn(1 << 13))
				if r.Intn(2) == 0 {
					off |= 0x2000 // MF
				}
				ip[6], ip[7] = byte(off>>8), byte(off)
				reip(ip)
			}
		case 6: // TCP flag soup, with valid checksums, to served and unserved ports
			port := []uint16{5001, 80, uint16(r.Intn(65536))}[r.Intn(3)]
			f = tcpTo(port, packet.TCPFlags(r.Intn(256)), r.Intn(64))
		case 7: // UDP whose length lies, checksum zero (none)
			f = ipv4(gwMAC, packet.ProtoUDP, make([]byte, packet.UDPLen+r.Intn(64)))
			u := f[packet.EtherLen+packet.IPv4Len:]
			u[0], u[1], u[2], u[3] = byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256))
			u[4], u[5] = byte(r.Intn(256)), byte(r.Intn(256))
		}
		switch r.Intn(8) { // the mutation; 4-7 leave the frame as it is
		case 0: // random bytes anywhere
			for j := 1 + r.Intn(10); j > 0; j-- {
				f[r.Intn(len(f))] = byte(r.Intn(256))
			}
		case 1: // truncated
			f = f[:packet.EtherLen+r.Intn(len(f)-packet.EtherLen)]
		case 2: // garbage past a valid IPv4 header, checksum fixed
			if len(f) > packet.EtherLen+packet.IPv4Len {
				for j := packet.EtherLen + packet.IPv4Len; j < len(f); j++ {
					if r.Intn(3) == 0 {
						f[j] = byte(r.Intn(256))
					}
				}
			}
		case 3: // lying lengths: IHL, total length, re-checksummed
			if f[12] == 0x08 && f[13] == 0x00 {
				ip := f[packet.EtherLen:]
				ip[0] = 0x40 | byte(r.Intn(16))
				ip[2], ip[3] = byte(r.Intn(256)), byte(r.Intn(256))
				ip[10], ip[11] = 0, 0
				if ihl := int(ip[0]&0xf) * 4; ihl <= len(ip) {
					c := packet.Checksum(ip[:ihl], 0)
					ip[10], ip[11] = byte(c>>8), byte(c)
				}
			}
		}
		frames = append(frames, f)
	}
	return frames
}

// vnetFrames is the corpus of hostile vnet headers: valid frames from
// hostileFrames, each behind a struct virtio_net_hdr of random flags, GSO
// type and sizes, and checksum offsets, for inject with vnet. The
// namespace's kernel refuses many; what it lets through reaches nsgate.
func vnetFrames(n int, seed int64) [][]byte {
	r := rand.New(rand.NewSource(seed))
	frames := hostileFrames(n, seed)
	gso := []uint8{0, 1, 3, 4, 5, 0x81, 0x80, 0xff}
	for i, f := range frames {
		h := make([]byte, 10, 10+len(f))
		h[0] = byte(r.Intn(8))                                         // flags: NEEDS_CSUM, DATA_VALID, RSC_INFO
		h[1] = gso[r.Intn(len(gso))]                                   // gso_type, ECN included
		binary.LittleEndian.PutUint16(h[2:], uint16(r.Intn(128)))      // hdr_len
		binary.LittleEndian.PutUint16(h[4:], uint16(r.Intn(2000)))     // gso_size
		binary.LittleEndian.PutUint16(h[6:], uint16(r.Intn(len(f)+8))) // csum_start
		binary.LittleEndian.PutUint16(h[8:], uint16(r.Intn(40)))       // csum_offset
		frames[i] = append(h, f...)
	}
	return frames
}

func TestMalformedFrames(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		g := startReady(t, w, rootless, "-c", strconv.Itoa(tg.PID), "tap0")
		sent := injectFrames(t, tg, hostileFrames(20000, 42))
		if sent < 15000 {
			t.Fatalf("only %d of 20000 frames went out", sent)
		}
		time.Sleep(200 * time.Millisecond)
		if !g.running() {
			t.Fatalf("nsgate died on malformed frames:\n%s", g.stderr)
		}
		// Still serving: DHCP and ICMP work.
		if l := lease(t, tg); !strings.HasPrefix(l, "ip=10.0.2.15 ") {
			t.Errorf("lease after the fuzzing: %q", l)
		}
		if out := tg.MustRun("ping", "-c", "1", "-W", "2", "10.0.2.2"); !strings.Contains(out, "1 received") {
			t.Errorf("ping after the fuzzing: %s", out)
		}
		tg.Kill()
		if st := g.waitExit(10 * time.Second); st != 0 {
			t.Fatalf("exit status %d", st)
		}
		if !regexp.MustCompile(`malformed [1-9]\d*[,;)]`).MatchString(g.stderr.String()) {
			t.Errorf("no malformed frames counted: %s", g.stderr)
		}
	})
}

// An exit fd that is not open means the caller is gone: exit 0 at once, as
// slirp4netns does.
func TestInvalidExitFD(t *testing.T) {
	w := testnet.New(t)
	tg := testnet.NewTarget(t, false)
	g := startGate(t, w, false, nil, "-e", "7", strconv.Itoa(tg.PID))
	if st := g.waitExit(10 * time.Second); st != 0 {
		t.Fatalf("exit status %d, want 0", st)
	}
	if !strings.Contains(g.stderr.String(), "exit fd 7 is not usable") {
		t.Fatalf("no message about the exit fd: %s", g.stderr)
	}
}

// The ready fd is written and closed while the spawned command still runs:
// the command must not inherit the caller's pipe.
func TestSpawnReadyFD(t *testing.T) {
	w := testnet.New(t)
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	g := startGate(t, w, true, []*os.File{wr}, "-r", "3", "--", "sleep", "5")
	wr.Close()
	start := time.Now()
	got, err := readAll(r, 4*time.Second)
	if err != nil || got != "1" {
		t.Fatalf("ready pipe gave %q, %v (EOF must come before the command ends)", got, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("ready EOF after %v", d)
	}
	if st := g.waitExit(10 * time.Second); st != 0 {
		t.Fatalf("exit status %d", st)
	}
}
