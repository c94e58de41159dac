//go:build integration

package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/testnet"
)

// procStatus returns the fields of /proc/PID/status.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// TestSandbox: with --enable-sandbox --enable-seccomp, nsgate (as root and
// rootless) keeps only CAP_NET_BIND_SERVICE, has no_new_privs and a seccomp
// filter on every thread, sees a root holding only /etc and /run, read-only,
// and still serves: DHCP-less TCP out, a forward in, the API socket, and
// removes the socket file on exit. (The filter's refusals are shown by
// internal/seccomp's test; the traffic suites run sandboxed in 'make test'.)
func TestSandbox(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w := testnet.New(t)
		tg := testnet.NewTarget(t, rootless)
		sock := filepath.Join(userDir(t), "api.sock")
		g := startReady(t, w, rootless, "--enable-sandbox", "--enable-seccomp", "-c", "-a", sock, "-p", "8080:80",
			strconv.Itoa(tg.PID), "tap0")
		pid := g.cmd.Process.Pid
		st := procStatus(t, pid)
		if st["Name"] != "nsgate" {
			t.Errorf("process name %q, want nsgate", st["Name"])
		}
		for k, want := range map[string]string{
			"CapEff": "0000000000000400", "CapPrm": "0000000000000400", "CapBnd": "0000000000000400",
			"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2",
		} {
			if st[k] != want {
				t.Errorf("%s: %q, want %q", k, st[k], want)
			}
		}
		// Every thread has the filter, not just the one that installed it.
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if s := procStatus(t, tid)["Seccomp"]; s != "2" {
				t.Errorf("thread %d: Seccomp %q", tid, s)
			}
		}
		root, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/root")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range root {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if strings.Join(names, " ") != "etc run" {
			t.Errorf("the sandbox's root holds %v, want [etc run]", names)
		}
		// Every mount a path reaches, those below /run (the world's
		// /run/netns/...) included, is read-only.
		mounts, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
		infos := parseMountinfo(string(mounts))
		for _, m := range infos {
			if !m.ro && !covered(m, infos) {
				t.Errorf("%s is mounted %s, want read-only", m.point, m.opts)
			}
		}
		if len(infos) < 4 {
			t.Errorf("only %d mounts in the sandbox:\n%s", len(infos), mounts)
		}
		// Still serving: out, in, and the API.
		startServer(t, w.RemoteCommand("env"), "echo", testnet.RemoteAddr+":5031")
		if r := runClient(t, 30*time.Second, tg.Command("env"), "many", testnet.RemoteAddr+":5031", "20", "100000"); r != "ok 20" {
			t.Fatalf("TCP out of the sandbox: %s", r)
		}
		log := httpd(t, tg, "80", "sandboxed\n")
		waitListen(t, tg, "80")
		if body := fetch(t, w.RemoteCommand("env"), "http://"+testnet.HostAddr+":8080/"); body != "200 sandboxed" {
			t.Fatalf("forward into the namespace: %q\n%s", body, log)
		}
		if got := apiCall(t, sock, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8081,"guest_port":80}}`); got != `{"return":{"id":2}}` {
			t.Fatalf("add_hostfwd in the sandbox: %s", got)
		}
		if body := fetch(t, w.HostCommand(false, "env"), "http://127.0.0.1:8081/"); body != "200 sandboxed" {
			t.Fatalf("forward added in the sandbox: %q", body)
		}
		stopRemovesSocket(t, g, sock)
		if strings.Contains(g.stderr.String(), "operation not permitted") {
			t.Errorf("something was refused:\n%s", g.stderr)
		}
	})
}

// TestSandboxResolvSymlink: /etc/resolv.conf is a symlink to a file
// outside /etc and /run; the sandbox shows that file at its path, and DNS
// works through it.
func TestSandboxResolvSymlink(t *testing.T) {
	w := testnet.New(t)
	dnsmasq(t, w.RemoteCommand("env"), testnet.RemoteAddr)
	tg := testnet.NewTarget(t, false)
	// A private /etc (a directory bound over it) whose resolv.conf points
	// elsewhere.
	dir := t.TempDir()
	etc, elsewhere := filepath.Join(dir, "etc"), filepath.Join(dir, "elsewhere")
	for _, d := range []string{etc, elsewhere} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "resolv.conf"), []byte("nameserver "+testnet.RemoteAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "resolv.conf"), filepath.Join(etc, "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	r, wr, _ := os.Pipe()
	defer r.Close()
	cmd := w.HostCommand(false, "unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc && exec "$@"`, etc, nsgateBin, "--enable-sandbox", "--enable-seccomp", "-r", "3", "-c", strconv.Itoa(tg.PID), "tap0")
	g := startProcess(t, cmd, []*os.File{wr})
	wr.Close()
	b := make([]byte, 1)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := r.Read(b); n != 1 {
		t.Fatalf("no ready byte:\n%s", g.stderr)
	}
	got, err := os.ReadFile("/proc/" + strconv.Itoa(g.cmd.Process.Pid) + "/root" + filepath.Join(elsewhere, "resolv.conf"))
	if err != nil || !strings.Contains(string(got), testnet.RemoteAddr) {
		t.Fatalf("the symlink's target in the sandbox: %q, %v", got, err)
	}
	if ans, took := dig(t, tg, false, "test.nsgate"); ans != "198.51.100.99" {
		t.Fatalf("dig through the sandbox: %q after %v\n%s", ans, took, g.stderr)
	}
}

// mountinfo is one line of /proc/PID/mountinfo.
type mountinfo struct {
	id, parent string
	point      string // the mount point, as the process sees it
	opts       string
	ro         bool
}

func parseMountinfo(s string) []mountinfo {
	var out []mountinfo
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		out = append(out, mountinfo{id: f[0], parent: f[1], point: f[4], opts: f[5],
			ro: strings.HasPrefix(f[5], "ro,") || f[5] == "ro"})
	}
	return out
}

// covered reports whether no path reaches m: m, or one of its ancestors,
// has a sibling (a mount on the same parent) on a directory above its own
// mount point. That sibling was mounted later, on top: a mount made after it
// at a path below it would have it as its parent. Mount propagation leaves
// such copies (ip netns under a shared /run mounts each /run/netns/NAME
// twice, one beneath the other). Before Linux 5.12 the sandbox remounts by
// path and cannot reach them, and neither can anything inside it.
func covered(m mountinfo, all []mountinfo) bool {
	byID := map[string]mountinfo{}
	for _, x := range all {
		byID[x.id] = x
	}
	seen := map[string]bool{}
	for x, ok := m, true; ok && !seen[x.id]; x, ok = byID[x.parent] {
		seen[x.id] = true
		for _, y := range all {
			if y.parent == x.parent && y.id != x.id && strings.HasPrefix(x.point, strings.TrimSuffix(y.point, "/")+"/") {
				return true
			}
		}
	}
	return false
}

// TestCovered: the sandbox's mounts as Linux 5.10 left them (read off the
// qemu guest): the copy of each netns file that propagation put beneath
// /run/netns is covered; the files on top, and /run/netns, are not.
func TestCovered(t *testing.T) {
	all := parseMountinfo(`34 33 0:27 / / ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,size=64k,mode=755
39 34 0:25 / /run ro,nosuid,nodev,noexec,relatime - tmpfs run rw,mode=755
41 39 0:25 /netns /run/netns ro,nosuid,nodev,noexec,relatime - tmpfs run rw,mode=755
42 41 0:4 net:[4026532116] /run/netns/nsg-h ro,nosuid,nodev,noexec - nsfs nsfs rw
44 39 0:4 net:[4026532116] /run/netns/nsg-h rw - nsfs nsfs rw
`)
	for i, want := range []bool{false, false, false, false, true} {
		if got := covered(all[i], all); got != want {
			t.Errorf("mount %s on %s: covered %v, want %v", all[i].id, all[i].point, got, want)
		}
	}
}
