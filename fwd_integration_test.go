//go:build integration

package main

import (
	"fmt"
	"io"
	"net"
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

// userDir returns a directory that nsgate, running as the test user in
// rootless mode, may create files in: its API socket, a VM's socket, its
// PID file.
func userDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nsgate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// apiCall sends one request the way podman does (write, shut down writing)
// and reads the reply the way podman does: one read of at most 2048 bytes.
// The rest of the stream must be empty: the reply came whole.
func apiCall(t *testing.T, sock, req string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to API socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	c.(*net.UnixConn).CloseWrite()
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("request %s: read reply: %v", req, err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("request %s: reply %q came in pieces (then %q, %v)", req, buf[:n], rest, err)
	}
	return string(buf[:n])
}

// TestForwardAPI drives the slirp4netns API socket with each command and
// each documented error, and compares the replies byte for byte.
func TestForwardAPI(t *testing.T) {
	w := testnet.New(t)
	tg := testnet.NewTarget(t, true)
	sock := filepath.Join(userDir(t), "api.sock")
	// A stale socket from an earlier run is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	g := startReady(t, w, true, "-c", "-a", sock, strconv.Itoa(tg.PID), "tap0")
	host := func() *exec.Cmd { return w.HostCommand(false, "env") }

	steps := []struct{ name, req, want string }{
		{"empty list", `{"execute":"list_hostfwd"}`, `{"entries":[]}`},
		{"add tcp", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"","guest_port":80}}`, `{"return":{"id":1}}`},
		{"add udp, defaults", `{"execute": "add_hostfwd", "arguments": {"proto": "udp", "host_port": 5353, "guest_port": 53}}` + "\n", `{"return":{"id":2}}`},
		{"list", `{"execute":"list_hostfwd"}`, `{"entries":[{"id":1,"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}]}`},
		{"not JSON", `execute list_hostfwd`, `{"error":{"desc":"bad request: cannot parse JSON"}}`},
		{"empty", ``, `{"error":{"desc":"bad request: cannot parse JSON"}}`},
		{"not an object", `["list_hostfwd"]`, `{"error":{"desc":"bad request: json_object() failed"}}`},
		{"no execute", `{"arguments":{}}`, `{"error":{"desc":"bad request: no execute found"}}`},
		{"execute not a string", `{"execute":1}`, `{"error":{"desc":"bad request: no execute found"}}`},
		{"unknown execute", `{"execute":"frobnicate"}`, `{"error":{"desc":"bad request: unknown execute"}}`},
		{"bad proto", `{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}`},
		{"no proto", `{"execute":"add_hostfwd","arguments":{"host_port":1,"guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.proto"}}`},
		{"bad host_addr", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"localhost","host_port":1,"guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_addr"}}`},
		{"no host_port", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_port"}}`},
		{"host_port too big", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":65536,"guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.host_port"}}`},
		{"bad guest_addr", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8082,"guest_addr":"10.0.2.300","guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}`},
		{"guest_addr outside the network", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8082,"guest_addr":"198.51.100.2","guest_port":1}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_addr"}}`},
		{"no guest_port", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":8082}}`, `{"error":{"desc":"bad request: add_hostfwd: bad arguments.guest_port"}}`},
		{"port in use", `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_port":81}}`, `{"error":{"desc":"bad request: add_hostfwd: slirp_add_hostfwd failed"}}`},
		{"remove unknown", `{"execute":"remove_hostfwd","arguments":{"id":99}}`, `{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}`},
		{"remove without id", `{"execute":"remove_hostfwd"}`, `{"error":{"desc":"bad request: remove_hostfwd: bad arguments.id"}}`},
		{"too large", `{"execute":"list_hostfwd","pad":"` + strings.Repeat("x", 5000) + `"}`, `{"error":{"desc":"bad request: too large message"}}`},
	}
	for _, s := range steps {
		if got := apiCall(t, sock, s.req); got != s.want {
			t.Errorf("%s:\n got %s\nwant %s", s.name, got, s.want)
		}
	}

	// The forward listens (the connection is accepted, then reset, as
	// nothing listens in the namespace); removing it closes the listener.
	if r := runClient(t, 20*time.Second, host(), "dial", "127.0.0.1:8080"); !strings.HasPrefix(r, "connected") && !strings.HasPrefix(r, "reset") {
		t.Fatalf("forward 1 does not listen: %s", r)
	}
	if got := apiCall(t, sock, `{"execute":"remove_hostfwd","arguments":{"id":1}}`); got != `{"return":{}}` {
		t.Fatalf("remove: %s", got)
	}
	if r := runClient(t, 20*time.Second, host(), "dial", "127.0.0.1:8080"); !strings.HasPrefix(r, "refused") {
		t.Fatalf("after remove_hostfwd, connecting gives %s, want refused", r)
	}
	// Ids are not reused.
	if got := apiCall(t, sock, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_port":80}}`); got != `{"return":{"id":3}}` {
		t.Fatalf("re-add: %s", got)
	}
	if got, want := apiCall(t, sock, `{"execute":"list_hostfwd"}`), `{"entries":[{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53},{"id":3,"proto":"tcp","host_addr":"127.0.0.1","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80}]}`; got != want {
		t.Fatalf("list after remove:\n got %s\nwant %s", got, want)
	}

	t.Run("clients cannot block the API", func(t *testing.T) {
		// Half-open and slow clients: connected, a partial request or
		// nothing, never shut down.
		var stalled []net.Conn
		for i := 0; i < 40; i++ {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if i%2 == 0 {
				io.WriteString(c, `{"execute":`)
			}
			stalled = append(stalled, c)
		}
		// A client that does not shut down its side is answered as soon
		// as its request is whole.
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, `{"execute":"list_hostfwd"}`)
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		reply, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(reply), `{"entries":[{"id":2`) {
			t.Fatalf("reply %q, %v", reply, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("answered after %v behind 40 stalled clients", d)
		}
		// 200 requests at once all get their answer.
		var wg sync.WaitGroup
		errs := make(chan string, 200)
		for i := 0; i < 200; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("unix", sock, 10*time.Second)
				if err != nil {
					errs <- err.Error()
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				io.WriteString(c, `{"execute":"list_hostfwd"}`)
				c.(*net.UnixConn).CloseWrite()
				reply, err := io.ReadAll(c)
				if err != nil || !strings.HasPrefix(string(reply), `{"entries":`) {
					errs <- fmt.Sprintf("%q %v", reply, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatalf("concurrent request: %s", e)
		}
		// The stalled clients are cut off after their deadline, with
		// slirp4netns's answer to an incomplete request.
		for i, c := range stalled[:2] {
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			reply, err := io.ReadAll(c)
			if err != nil || string(reply) != `{"error":{"desc":"bad request: cannot parse JSON"}}` {
				t.Fatalf("stalled client %d: %q, %v", i, reply, err)
			}
		}
	})

	// The data path kept working: a forwarded connection to a port nothing
	// listens on in the namespace is reset, as the namespace's kernel says.
	if r := runClient(t, 20*time.Second, host(), "readreset", "127.0.0.1:8080"); r != "reset" {
		t.Fatalf("connection to a closed port in the namespace: %s, want reset", r)
	}
	stopRemovesSocket(t, g, sock)
}

// stopRemovesSocket ends nsgate with SIGTERM: it exits 0 and removes its
// API socket file.
func stopRemovesSocket(t *testing.T, g *gate, sock string) {
	t.Helper()
	g.cmd.Process.Signal(syscall.SIGTERM)
	if st := g.waitExit(10 * time.Second); st != 0 {
		t.Fatalf("exit status %d", st)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("API socket still there after exit: %v", err)
	}
}

// httpd starts busybox httpd in the target, serving body; its log (with each
// client's address) goes to the returned buffer.
func httpd(t *testing.T, tg *testnet.Target, port, body string) *syncBuffer {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := tg.Command("busybox", "httpd", "-f", "-vv", "-p", port, "-h", dir)
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return log
}

// waitListen waits until something listens on port in the target.
func waitListen(t *testing.T, tg *testnet.Target, port string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if out, _ := tg.Run(5*time.Second, "ss", "-Htln", "sport = :"+port); strings.TrimSpace(out) != "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %s in the namespace", port)
}

// fetch GETs url from under prefix and returns the status and body.
func fetch(t *testing.T, prefix *exec.Cmd, url string) string {
	t.Helper()
	return runClient(t, 30*time.Second, prefix, "httpget", url)
}

// TestForwardTCP serves a page from the namespace to the host (clients on
// the host's loopback appear as 10.0.2.2) and to the remote namespace (the
// client's own address appears), then moves bigSize bytes each way through
// a forward, and 500 connections at once (50 in make test-kernel's guest).
// Static forwards (-p) here, the API in TestForwardAPI: both open the same
// listeners.
func TestForwardTCP(t *testing.T) {
	modes(t, func(t *testing.T, rootless bool) {
		w, tg, g := tcpWorld(t, rootless, "-p", "127.0.0.1:8080:80", "-p", "8081:80", "-p", "5008", "-p", "5009", "-p", "5007")
		log := httpd(t, tg, "80", "hello from the namespace\n")
		waitListen(t, tg, "80")
		if body := fetch(t, w.HostCommand(false, "env"), "http://127.0.0.1:8080/"); body != "200 hello from the namespace" {
			t.Fatalf("from the host's loopback: %q", body)
		}
		if body := fetch(t, w.RemoteCommand("env"), "http://"+testnet.HostAddr+":8081/"); body != "200 hello from the namespace" {
			t.Fatalf("from the remote namespace: %q", body)
		}
		for _, want := range []string{"[::ffff:10.0.2.2]:", "[::ffff:" + testnet.RemoteAddr + "]:"} {
			if !strings.Contains(log.String(), want+"") {
				t.Fatalf("httpd log lacks client %s:\n%s", want, log)
			}
		}
		n := strconv.FormatInt(bigSize(), 10)
		t.Run("host-to-ns", func(t *testing.T) {
			srv := startServer(t, tg.Command("env"), "sink", "0.0.0.0:5008")
			sent := runClient(t, 5*time.Minute, w.HostCommand(false, "env"), "send", "127.0.0.1:5008", n)
			if got := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
				t.Fatalf("host sent %q, namespace received %q", sent, got)
			}
		})
		t.Run("ns-to-host", func(t *testing.T) {
			srv := startServer(t, tg.Command("env"), "source", "0.0.0.0:5009", n)
			got := runClient(t, 5*time.Minute, w.RemoteCommand("env"), "recv", testnet.HostAddr+":5009")
			if sent := srv.result(t, time.Minute); !strings.HasPrefix(sent, n+" ") || got != sent {
				t.Fatalf("namespace sent %q, remote received %q", sent, got)
			}
		})
		t.Run("500 connections", func(t *testing.T) {
			startServer(t, tg.Command("env"), "echo", "0.0.0.0:5007")
			if r := runClient(t, 3*time.Minute, w.HostCommand(false, "env"), "many", "127.0.0.1:5007", scaled(500), "65536"); r != "ok "+scaled(500) {
				t.Fatalf("500 forwarded connections: %s", r)
			}
		})
		if !g.running() {
			t.Fatalf("nsgate exited: %s", g.stderr)
		}
	})
}

// TestForwardUDP: datagrams to a forwarded UDP port reach a server in the
// namespace, and each client gets its own replies, from the host's loopback
// and from the remote namespace at once.
func TestForwardUDP(t *testing.T) {
	w, tg, g := tcpWorld(t, true, "-p", "6001/udp")
	startServer(t, tg.Command("env"), "udpecho", "0.0.0.0:6001")
	var wg sync.WaitGroup
	results := make([]string, 2)
	for i, c := range []struct {
		prefix *exec.Cmd
		dial   string
	}{
		{w.HostCommand(false, "env"), "127.0.0.1:6001"},
		{w.RemoteCommand("env"), testnet.HostAddr + ":6001"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runClient(t, 2*time.Minute, c.prefix, "udpflows", c.dial, "20", "50", "1200")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r != "ok 1000" {
			t.Fatalf("client %d: %s", i, r)
		}
	}
	if !g.running() {
		t.Fatalf("nsgate exited: %s", g.stderr)
	}
}
