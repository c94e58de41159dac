//go:build integration

package main

// VM mode against a real qemu: Debian 12's packaged kernel booted under TCG
// from the initramfs tests/vm/image.sh builds, its virtio-net device on
// qemu's stream netdev, served by nsgate --socket (or --fd) as an
// unprivileged user in the sealed host namespace. The guest's side of each
// check runs in tests/vm/init and prints "VM: ..." lines on the console.

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
	"golang.org/x/sys/unix"
)

// vmBytes is what the guest sends and receives each way (the guest's script
// says 8 MiB too).
const vmBytes = 8 << 20

// vmImage builds the guest's kernel and initramfs into a directory of the
// test's.
func vmImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("tests/vm/image.sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("tests/vm/image.sh: %v\n%s", err, out)
	}
	return dir
}

// vm is a running qemu guest.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	lines   chan string // the guest's "VM: " lines, without the prefix
	console *syncBuffer
	exited  chan error
}

// bootVM starts qemu in the world's host namespace with netdev as its
// network back-end and step on the guest's command line.
func bootVM(t *testing.T, w *testnet.World, img, netdev, step string, extra []*os.File) *vm {
	t.Helper()
	args := []string{"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "512",
		"-kernel", filepath.Join(img, "vmlinuz"), "-initrd", filepath.Join(img, "initrd.gz"),
		"-append", "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init vmtest=" + step + " vmtest.remote=" + testnet.RemoteAddr,
		"-nographic", "-no-reboot", "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0"}
	v := &vm{t: t, cmd: w.HostCommand(false, args[0], args[1:]...), lines: make(chan string, 64), console: &syncBuffer{}, exited: make(chan error, 1)}
	v.cmd.ExtraFiles = extra
	out, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = v.console
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("qemu: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			v.console.Write([]byte(line + "\n"))
			if i := strings.Index(line, "VM: "); i >= 0 {
				v.lines <- line[i+4:]
			}
		}
		close(v.lines)
		v.exited <- v.cmd.Wait()
	}()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("guest console:\n%s", v.console)
		}
	})
	return v
}

// expect waits for the guest's next line starting with what, and returns
// the rest of it.
func (v *vm) expect(what string) string {
	v.t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case line, ok := <-v.lines:
			if !ok {
				v.t.Fatalf("the guest ended before %q", what)
			}
			if strings.HasPrefix(line, "error") {
				v.t.Fatalf("the guest: %s", line)
			}
			if line == what || strings.HasPrefix(line, what+" ") {
				return strings.TrimSpace(strings.TrimPrefix(line, what))
			}
		case <-deadline:
			v.t.Fatalf("the guest did not say %q", what)
		}
	}
}

// wait waits for qemu to exit after the guest powered off.
func (v *vm) wait() {
	v.t.Helper()
	select {
	case err := <-v.exited:
		if err != nil {
			v.t.Fatalf("qemu: %v", err)
		}
	case <-time.After(time.Minute):
		v.t.Fatal("qemu did not exit after the guest powered off")
	}
}

// lease checks the guest's DHCP lease.
func (v *vm) lease() {
	v.t.Helper()
	want := "ip=10.0.2.15 router=10.0.2.2 dns=10.0.2.3 mtu=65520"
	if got := v.expect("lease"); got != want {
		v.t.Fatalf("lease %q, want %q", got, want)
	}
	v.expect("ping ok")
}

// waitSocket waits for nsgate to create its socket.
func waitSocket(t *testing.T, g *gate, path string) {
	t.Helper()
	for i := 0; ; i++ {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if i == 500 || !g.running() {
			t.Fatalf("nsgate made no socket at %s:\n%s", path, g.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hashOf returns the sha256 of a helper's "N SHA" result, checking N.
func hashOf(t *testing.T, result string) string {
	t.Helper()
	f := strings.Fields(result)
	if len(f) != 2 || f[0] != strconv.Itoa(vmBytes) {
		t.Fatalf("helper result %q, want %d bytes and a hash", result, vmBytes)
	}
	return f[1]
}

// TestVM: a qemu guest on nsgate --socket, nsgate unprivileged. DHCP, ping
// to the gateway, DNS through 10.0.2.3 to a dnsmasq on the host's
// loopback, 8 MiB each way to the host's loopback and to the remote
// namespace (sha256-equal), UDP echo, a -p forward into a server in the
// guest; then the guest powers off, a second boot reconnects to the same
// nsgate, and nsgate is still serving.
func TestVM(t *testing.T) {
	img := vmImage(t)
	w := testnet.New(t)
	w.SetResolvConf("nameserver 127.0.0.1\n")
	dnsmasq(t, w.HostCommand(false, "env"), "127.0.0.1")
	host, remote := w.HostCommand(false, "env"), w.RemoteCommand("env")
	up := startServer(t, host, "sink", "127.0.0.1:7001")
	down := startServer(t, host, "source", "127.0.0.1:7002", strconv.Itoa(vmBytes))
	rup := startServer(t, remote, "sink", testnet.RemoteAddr+":7001")
	rdown := startServer(t, remote, "source", testnet.RemoteAddr+":7002", strconv.Itoa(vmBytes))
	startServer(t, host, "udpecho", "127.0.0.1:6002")

	sock := filepath.Join(userDir(t), "vm.sock")
	g := startGate(t, w, true, nil, "--socket", sock, "-p", "127.0.0.1:8080:80")
	waitSocket(t, g, sock)
	netdev := "stream,id=n0,server=off,addr.type=unix,addr.path=" + sock

	v := bootVM(t, w, img, netdev, "full", nil)
	v.lease()
	v.expect("dns ok")
	sent := v.expect("up")
	for _, c := range []struct {
		dst      string
		up, down *server
	}{{"10.0.2.2", up, down}, {testnet.RemoteAddr, rup, rdown}} {
		v.expect("sent " + c.dst)
		if got := hashOf(t, c.up.result(t, time.Minute)); got != sent {
			t.Fatalf("guest to %s: the server got sha256 %s, the guest sent %s", c.dst, got, sent)
		}
		want := hashOf(t, c.down.result(t, time.Minute))
		if got := v.expect("down " + c.dst); got != want {
			t.Fatalf("%s to the guest: the guest got sha256 %s, the server sent %s", c.dst, got, want)
		}
	}
	if got := v.expect("udp"); got != "hello-udp" {
		t.Fatalf("UDP echo through 10.0.2.2: %q", got)
	}
	v.expect("fwd-ready")
	if got := hashOf(t, runClient(t, time.Minute, host, "recv", "127.0.0.1:8080")); got != sent {
		t.Fatalf("through -p 127.0.0.1:8080:80 from the guest's server: sha256 %s, want %s", got, sent)
	}
	v.expect("fwd done")
	v.expect("end full")
	v.wait()

	// A reboot: the next qemu reconnects to the same nsgate.
	if !g.running() {
		t.Fatalf("nsgate exited when the VM powered off:\n%s", g.stderr)
	}
	v = bootVM(t, w, img, netdev, "short", nil)
	v.lease()
	v.expect("end short")
	v.wait()
	if !g.running() {
		t.Fatalf("nsgate exited after the second VM:\n%s", g.stderr)
	}
	if n := strings.Count(g.stderr.String(), "VM connected"); n != 2 {
		t.Fatalf("nsgate saw %d connections, want 2:\n%s", n, g.stderr)
	}
}

// TestVMOneOffAndFD: --one-off exits 0 when the guest powers off, and the
// socket and PID files are gone; --fd serves a socketpair's end handed to
// qemu (addr.type=fd, as libvirt does) and exits 0 with the guest too.
func TestVMOneOffAndFD(t *testing.T) {
	img := vmImage(t)
	w := testnet.New(t)
	dir := userDir(t)
	sock, pidFile := filepath.Join(dir, "vm.sock"), filepath.Join(dir, "nsgate.pid")
	g := startGate(t, w, true, nil, "--socket", sock, "--one-off", "--pid-file", pidFile)
	waitSocket(t, g, sock)
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(g.cmd.Process.Pid) {
		t.Fatalf("--pid-file holds %q (%v), want %d", b, err, g.cmd.Process.Pid)
	}
	v := bootVM(t, w, img, "stream,id=n0,server=off,addr.type=unix,addr.path="+sock, "short", nil)
	v.lease()
	v.expect("end short")
	v.wait()
	if st := g.waitExit(10 * time.Second); st != 0 {
		t.Fatalf("--one-off: exit status %d, want 0:\n%s", st, g.stderr)
	}
	for _, f := range []string{sock, pidFile} {
		if _, err := os.Lstat(f); !os.IsNotExist(err) {
			t.Fatalf("%s left after exit: %v", f, err)
		}
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "nsgate end"), os.NewFile(uintptr(fds[1]), "qemu end")
	g = startGate(t, w, true, []*os.File{ours}, "--fd", "3")
	ours.Close()
	v = bootVM(t, w, img, "stream,id=n0,addr.type=fd,addr.str=3", "short", []*os.File{theirs})
	theirs.Close()
	v.lease()
	v.expect("end short")
	v.wait()
	if st := g.waitExit(10 * time.Second); st != 0 || !strings.Contains(g.stderr.String(), "VM disconnected") {
		t.Fatalf("--fd: exit status %d, want 0 after \"VM disconnected\":\n%s", st, g.stderr)
	}
}

// TestVMBadFlags: VM mode's mistakes get a message and exit 1.
func TestVMBadFlags(t *testing.T) {
	dir := userDir(t)
	live := filepath.Join(dir, "live.sock")
	w := testnet.New(t)
	g := startGate(t, w, true, nil, "--socket", live)
	waitSocket(t, g, live)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--socket", live}, "another process is listening on it"},
		{[]string{"--socket", file}, "exists and is not a socket"},
		{[]string{"--socket", dir + "/s", "--fd", "0"}, "cannot both be given"},
		{[]string{"--socket", dir + "/s", "-c"}, "--configure cannot be used"},
		{[]string{"--socket", dir + "/s", "1234"}, "a namespace target (1234) cannot be given"},
		{[]string{"--one-off", "1234"}, "--one-off needs --socket"},
		{[]string{"--fd", "0"}, "not a socket"},
		{[]string{"--fd", "99"}, "--fd 99 is not open"},
		{[]string{"--socket", "/" + strings.Repeat("x", 120)}, "path too long"},
	} {
		out, err := exec.Command(nsgateBin, c.args...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
			t.Errorf("nsgate %s: %v, %q; want exit 1 and %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}
	// A refused socket leaves no --pid-file behind.
	pidFile := filepath.Join(dir, "refused.pid")
	if out, err := exec.Command(nsgateBin, "--socket", live, "--pid-file", pidFile).CombinedOutput(); err == nil {
		t.Errorf("nsgate --socket %s (live) --pid-file: exit 0\n%s", live, out)
	}
	if _, err := os.Lstat(pidFile); !os.IsNotExist(err) {
		t.Errorf("--pid-file left by a refused --socket: %v", err)
	}
	if !g.running() {
		t.Fatalf("the live nsgate exited after another's probe:\n%s", g.stderr)
	}
}
