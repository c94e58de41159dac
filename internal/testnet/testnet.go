// Package testnet builds the sealed test world of nsgate's integration tests
// and tears it down; traffic goes only to loopback and to the namespaces a
// test created (the README's "Test traffic" rule):
//
//   - a "host" network namespace where nsgate runs, with lo up, its own
//     /etc/netns/NAME/resolv.conf, and a veth to
//   - a "remote" namespace on TEST-NET-2 (198.51.100.0/24) and the IPv6
//     documentation prefix (2001:db8:1::/64) for servers;
//   - target namespaces (unshare, optionally owned by the unprivileged test
//     user's own user namespace) holding the clients.
//
// Nothing here touches the machine's own network namespace beyond creating
// the named namespaces. It needs root; the unprivileged test user is created
// by tests/setup.sh (make test runs it).
package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the world.
const (
	HostAddr    = "198.51.100.1" // the host namespace's end of the veth
	RemoteAddr  = "198.51.100.2" // the remote namespace
	HostAddr6   = "2001:db8:1::1"
	RemoteAddr6 = "2001:db8:1::2"
	TestUser    = "nsgate-test" // created by tests/setup.sh
)

// World is one sealed topology.
type World struct {
	t      testing.TB
	Host   string // netns name, for ip netns exec
	Remote string
}

// New builds a world and registers its teardown with t.Cleanup.
func New(t testing.TB) *World {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("integration tests build network namespaces and need root: run them through 'make test' as root")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	w := &World{t: t, Host: "nsg-h-" + id, Remote: "nsg-r-" + id}
	t.Cleanup(w.teardown)
	resolv := filepath.Join("/etc/netns", w.Host)
	must(t, os.MkdirAll(resolv, 0o755))
	// Only the remote namespace's (future) DNS server: nothing leaves the world.
	must(t, os.WriteFile(filepath.Join(resolv, "resolv.conf"), []byte("nameserver "+RemoteAddr+"\n"), 0o644))
	w.ip("netns", "add", w.Host)
	w.ip("netns", "add", w.Remote)
	vh, vr := "vh"+id, "vr"+id
	w.ip("link", "add", vh, "netns", w.Host, "type", "veth", "peer", "name", vr, "netns", w.Remote)
	w.ip("-n", w.Host, "link", "set", "lo", "up")
	w.ip("-n", w.Remote, "link", "set", "lo", "up")
	w.ip("-n", w.Host, "addr", "add", HostAddr+"/24", "dev", vh)
	w.ip("-n", w.Remote, "addr", "add", RemoteAddr+"/24", "dev", vr)
	w.ip("-n", w.Host, "link", "set", vh, "up")
	w.ip("-n", w.Remote, "link", "set", vr, "up")
	w.ip("-n", w.Remote, "route", "add", "default", "via", HostAddr)
	// IPv6 on the documentation prefix, without duplicate address
	// detection: usable at once.
	w.ip("-n", w.Host, "addr", "add", HostAddr6+"/64", "dev", vh, "nodad")
	w.ip("-n", w.Remote, "addr", "add", RemoteAddr6+"/64", "dev", vr, "nodad")
	w.ip("-n", w.Remote, "-6", "route", "add", "default", "via", HostAddr6)
	return w
}

// HostIP runs ip(8) with args in the host namespace (ip -n HOST ARGS...),
// failing the test on error.
func (w *World) HostIP(args ...string) {
	w.ip(append([]string{"-n", w.Host}, args...)...)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (w *World) ip(args ...string) {
	w.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		w.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (w *World) teardown() {
	exec.Command("ip", "netns", "del", w.Host).Run()
	exec.Command("ip", "netns", "del", w.Remote).Run()
	os.RemoveAll(filepath.Join("/etc/netns", w.Host))
}

// HostCommand returns a command run in the host namespace, as root or (when
// rootless) as the test user.
func (w *World) HostCommand(rootless bool, name string, args ...string) *exec.Cmd {
	argv := []string{"netns", "exec", w.Host}
	if rootless {
		argv = append(argv, AsTestUser()...)
	}
	argv = append(argv, name)
	return exec.Command("ip", append(argv, args...)...)
}

// AsTestUser is the command prefix that drops to the unprivileged test user.
func AsTestUser() []string {
	return []string{"setpriv", "--reuid", TestUser, "--regid", TestUser, "--clear-groups", "--inh-caps=-all"}
}

// TestUserIDs returns the test user's uid and gid.
func TestUserIDs(t testing.TB) (int, int) {
	u, err := user.Lookup(TestUser)
	if err != nil {
		t.Fatalf("test user %q: %v (tests/setup.sh creates it; run 'make test')", TestUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// Target is a namespace holding clients: a sleeping process in a new network
// namespace (and, when rootless, in a user namespace the test user owns, as
// 'unshare -r' makes them).
type Target struct {
	t   testing.TB
	cmd *exec.Cmd
	PID int
}

// NewTarget starts a target and registers its end with t.Cleanup.
func NewTarget(t testing.TB, rootless bool) *Target {
	t.Helper()
	var argv []string
	if rootless {
		argv = append(AsTestUser(), "unshare", "--user", "--map-root-user", "--net", "sleep", "3600")
	} else {
		argv = []string{"unshare", "--net", "sleep", "3600"}
	}
	// setpriv and unshare exec (no fork), so the PID is sleep's.
	cmd := exec.Command(argv[0], argv[1:]...)
	must(t, cmd.Start())
	tg := &Target{t: t, cmd: cmd, PID: cmd.Process.Pid}
	t.Cleanup(tg.Kill)
	// Wait until sleep runs in its new namespace.
	self, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; ; i++ {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", tg.PID))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", tg.PID))
		if err == nil && ns != self && strings.HasSuffix(exe, "/sleep") {
			break
		}
		if i > 200 {
			t.Fatalf("target %d did not reach its namespace (ns %q, exe %q)", tg.PID, ns, exe)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tg
}

// Kill ends the target and reaps it.
func (tg *Target) Kill() {
	if tg.cmd.ProcessState == nil {
		_ = tg.cmd.Process.Kill()
		_ = tg.cmd.Wait()
	}
}

// NetnsPath is the target's network namespace file.
func (tg *Target) NetnsPath() string { return fmt.Sprintf("/proc/%d/ns/net", tg.PID) }

// Run runs a command in the target's network namespace (as root of the
// machine: the clients' view of the network is what is tested) and returns
// its combined output.
func (tg *Target) Run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append([]string{"-t", strconv.Itoa(tg.PID), "-n", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustRun is Run that fails the test on error.
func (tg *Target) MustRun(name string, args ...string) string {
	tg.t.Helper()
	out, err := tg.Run(30*time.Second, name, args...)
	if err != nil {
		tg.t.Fatalf("in target: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// WaitLink waits until the link name exists in the target.
func (tg *Target) WaitLink(name string) {
	tg.t.Helper()
	for i := 0; i < 300; i++ {
		if _, err := tg.Run(5*time.Second, "ip", "link", "show", name); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tg.t.Fatalf("link %s did not appear in target %d", name, tg.PID)
}

// Exited reports whether process p has exited within timeout, and its status.
func Exited(cmd *exec.Cmd, timeout time.Duration) (bool, int) {
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return true, 128 + int(ws.Signal())
		}
		return true, ws.ExitStatus()
	case <-time.After(timeout):
		return false, -1
	}
}

// InNewNetns runs fn on a thread of its own in a new, empty network
// namespace, and returns fn's error. The thread is never handed back to the
// Go scheduler: it ends with the goroutine, so no other goroutine can run in
// the wrong namespace.
func InNewNetns(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked on purpose
		before, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			done <- fmt.Errorf("read own network namespace: %w", err)
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		// Belt and braces: never let fn configure the namespace it came from.
		if after, err := os.Readlink("/proc/thread-self/ns/net"); err != nil || after == before {
			done <- fmt.Errorf("still in %s after unshare (%v): refusing to run", before, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// RemoteCommand returns a command run as root in the remote namespace.
func (w *World) RemoteCommand(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", w.Remote, name}, args...)...)
}

// Command returns a command run in the target's network namespace.
func (tg *Target) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(tg.PID), "-n", name}, args...)...)
}

// SetResolvConf replaces the host namespace's resolv.conf (nsgate reads it
// when it starts).
func (w *World) SetResolvConf(content string) {
	w.t.Helper()
	must(w.t, os.WriteFile(filepath.Join("/etc/netns", w.Host, "resolv.conf"), []byte(content), 0o644))
}
