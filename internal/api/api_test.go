package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsgate/nsgate/internal/config"
	"github.com/nsgate/nsgate/internal/publish"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/fwd"
	"github.com/nsgate/nsgate/internal/packet"
)

// fakeFwd is a forward table without sockets: port 1 is "in use".
type fakeFwd struct {
	mu    sync.Mutex
	rules []publish.Rule
	next  int
}

func (f *fakeFwd) Add(r publish.Rule) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.HostPort == 1 {
		return 0, fmt.Errorf("bind %s:%d: address already in use", r.HostAddr, r.HostPort)
	}
	f.next++
	r.ID = f.next
	f.rules = append(f.rules, r)
	return r.ID, nil
}

func (f *fakeFwd) Remove(id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if r.ID == id {
			f.rules = append(f.rules[:i], f.rules[i+1:]...)
			return nil
		}
	}
	return fwd.ErrNoRule
}

func (f *fakeFwd) List() ([]publish.Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]publish.Rule(nil), f.rules...), nil
}

func newHandler() *Handler {
	return &Handler{Fwd: &fakeFwd{}, Net: Network{
		Guest:   netip.MustParseAddr("10.0.2.100"),
		Prefix:  netip.MustParsePrefix("10.0.2.0/24"),
		Gateway: netip.MustParseAddr("10.0.2.2"),
		DNS:     netip.MustParseAddr("10.0.2.3"),
	}}
}

func TestHandle(t *testing.T) {
	h := newHandler()
	add := func(args string) string { return `{"execute":"add_hostfwd","arguments":{` + args + `}}` }
	steps := []struct{ req, want string }{
		{`{"execute":"list_hostfwd"}`, `{"entries":[]}`},
		{add(`"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80`), `{"return":{"id":1}}`},
		// Ports must be integers: slirp4netns truncates 53.9 to 53.
		{add(`"proto":"udp","host_port":53.9,"guest_addr":"10.0.2.15","guest_port":5353`), errHostPort},
		{add(`"proto":"udp","host_port":53,"guest_addr":"10.0.2.15","guest_port":5353.0`), errGuestPort},
		{add(`"proto":"udp","host_port":5e1,"guest_port":53`), errHostPort},
		{add(`"proto":"udp","host_port":1e400,"guest_port":53`), errHostPort},
		{add(`"proto":"udp","host_port":53,"guest_addr":"10.0.2.15","guest_port":5353`), `{"return":{"id":2}}`},
		{` {"execute":"list_hostfwd","arguments":[]}` + "\n", `{"entries":[{"id":1,"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"10.0.2.100","guest_port":80},{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":53,"guest_addr":"10.0.2.15","guest_port":5353}]}`},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, `{"return":{}}`},
		{`{"execute":"remove_hostfwd","arguments":{"id":1}}`, errRemoveID},
		// slirp4netns 1.3's IPv4-only protocols; tcp6 needs -6.
		{add(`"proto":"udp4","host_port":5353,"guest_port":53`), `{"return":{"id":3}}`},
		{`{"execute":"list_hostfwd"}`, `{"entries":[{"id":2,"proto":"udp","host_addr":"0.0.0.0","host_port":53,"guest_addr":"10.0.2.15","guest_port":5353},{"id":3,"proto":"udp","host_addr":"0.0.0.0","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}]}`},
		{`{"execute":"remove_hostfwd","arguments":{"id":3}}`, `{"return":{}}`},
		{add(`"proto":"tcp6","host_port":1,"guest_port":1`), errHostAddr},
		{`{"execute":"remove_hostfwd","arguments":{"id":"2"}}`, errRemoveID},
		{`{"execute":"remove_hostfwd","arguments":{"id":1e300}}`, errRemoveID},
		{``, errParse},
		{`{"execute":"list_hostfwd"`, errParse},
		{`{"execute":"list_hostfwd"} {}`, errParse},
		{`"list_hostfwd"`, errNotObject},
		{`null`, errNotObject},
		{`{}`, errNoExecute},
		{`{"execute":null}`, errNoExecute},
		{`{"execute":"add_hostfwd"}`, errProto},
		{`{"execute":"ADD_HOSTFWD"}`, errUnknown},
		{add(`"proto":"TCP","host_port":1,"guest_port":1`), errProto},
		{add(`"proto":"tcp","host_addr":"::1","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp","host_addr":"1.2.3","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp","host_port":-1,"guest_port":1`), errHostPort},
		{`{"execute":"remove_hostfwd","arguments":{"id":1.5}}`, errRemoveID},
		{add(`"proto":"tcp","host_port":"80","guest_port":1`), errHostPort},
		{add(`"proto":"tcp","host_port":2,"guest_port":0`), errGuestPort},
		{add(`"proto":"tcp","host_port":2,"guest_port":65536`), errGuestPort},
		{add(`"proto":"tcp","host_port":2,"guest_addr":"10.0.2.2","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_port":2,"guest_addr":"10.0.2.3","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_port":2,"guest_addr":"10.0.2.0","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_port":2,"guest_addr":"10.0.2.255","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_port":2,"guest_addr":"10.0.3.1","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_port":1,"guest_port":1`), errAddFailed},
		{strings.Repeat(" ", MaxRequest), errTooLarge},
	}
	for _, s := range steps {
		if got := string(h.Handle([]byte(s.req))); got != s.want {
			t.Errorf("Handle(%.60q):\n got %s\nwant %s", s.req, got, s.want)
		}
	}
}

// TestHandleIPv6: with -6, add_hostfwd takes IPv6 host addresses and
// guest addresses inside the IPv6 prefix (none: the engine finds the
// namespace's), and tcp6/udp6 fix the family.
func TestHandleIPv6(t *testing.T) {
	h := newHandler()
	h.Net.IPv6, h.Net.Prefix6 = true, netip.MustParsePrefix("fd00::/64")
	h.Net.Gateway6, h.Net.DNS6 = netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")
	add := func(args string) string { return `{"execute":"add_hostfwd","arguments":{` + args + `}}` }
	for _, s := range []struct{ req, want string }{
		{add(`"proto":"tcp","host_addr":"::","host_port":8080,"guest_port":80`), `{"return":{"id":1}}`},
		{add(`"proto":"udp6","host_port":5353,"guest_addr":"fd00::100","guest_port":53`), `{"return":{"id":2}}`},
		{add(`"proto":"tcp","host_addr":"::1","host_port":8081,"guest_addr":"fd00::5054:ff:fe12:3456","guest_port":80`), `{"return":{"id":3}}`},
		{`{"execute":"list_hostfwd"}`, `{"entries":[{"id":1,"proto":"tcp","host_addr":"::","host_port":8080,"guest_addr":"","guest_port":80},` +
			`{"id":2,"proto":"udp","host_addr":"::","host_port":5353,"guest_addr":"fd00::100","guest_port":53},` +
			`{"id":3,"proto":"tcp","host_addr":"::1","host_port":8081,"guest_addr":"fd00::5054:ff:fe12:3456","guest_port":80}]}`},
		{add(`"proto":"tcp6","host_addr":"127.0.0.1","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp4","host_addr":"::1","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp","host_addr":"::ffff:127.0.0.1","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp","host_addr":"fe80::1%eth0","host_port":2,"guest_port":1`), errHostAddr},
		{add(`"proto":"tcp","host_addr":"::","host_port":2,"guest_addr":"10.0.2.100","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_addr":"0.0.0.0","host_port":2,"guest_addr":"fd00::100","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_addr":"::","host_port":2,"guest_addr":"fd00::2","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_addr":"::","host_port":2,"guest_addr":"fd00::3","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_addr":"::","host_port":2,"guest_addr":"fd00::","guest_port":1`), errGuestAddr},
		{add(`"proto":"tcp","host_addr":"::","host_port":2,"guest_addr":"fd01::5","guest_port":1`), errGuestAddr},
	} {
		if got := string(h.Handle([]byte(s.req))); got != s.want {
			t.Errorf("Handle(%.80q):\n got %s\nwant %s", s.req, got, s.want)
		}
	}
}

// FuzzHandle: no request crashes the handler, and every reply is one JSON
// object of the documented shapes, small enough for podman's single read.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"execute":"list_hostfwd"}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,"guest_addr":"","guest_port":80}}`,
		`{"execute":"add_hostfwd","arguments":{"proto":"udp","host_port":5353,"guest_addr":"10.0.2.100","guest_port":53}}`,
		`{"execute":"remove_hostfwd","arguments":{"id":1}}`,
		`{"execute":1,"arguments":[1,2,{"a":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		h := newHandler()
		// Some forwards to list and remove.
		h.Handle([]byte(`{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":80,"guest_port":80}}`))
		reply := h.Handle(req)
		var v map[string]json.RawMessage
		if err := json.Unmarshal(reply, &v); err != nil || len(v) != 1 {
			t.Fatalf("reply %q is not a one-member object", reply)
		}
		if _, ok := v["entries"]; !ok && v["return"] == nil && v["error"] == nil {
			t.Fatalf("reply %q", reply)
		}
		if len(reply) > 2048 && v["entries"] == nil {
			t.Fatalf("reply of %d bytes", len(reply))
		}
	})
}

func serve(t *testing.T) (string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(newHandler())
	t.Cleanup(s.Close)
	return path, s
}

func call(t *testing.T, path, req string, shut bool) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	if shut {
		c.(*net.UnixConn).CloseWrite()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read reply to %.40q: %v", req, err)
	}
	return string(b)
}

func TestServer(t *testing.T) {
	path, _ := serve(t)
	if got := call(t, path, `{"execute":"list_hostfwd"}`, true); got != `{"entries":[]}` {
		t.Fatalf("list: %s", got)
	}
	// No shutdown: answered once the object is whole.
	if got := call(t, path, `{"execute":"list_hostfwd"}`, false); got != `{"entries":[]}` {
		t.Fatalf("list without shutdown: %s", got)
	}
	// Too large, and the reply still arrives (no reset for unread data).
	if got := call(t, path, strings.Repeat("x", 100000), true); got != errTooLarge {
		t.Fatalf("too large: %s", got)
	}
}

func TestListenErrors(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("s", config.MaxAPISocketPath))
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "path too long for a unix socket") {
		t.Fatalf("long path: %v", err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the regular file was removed: %v", err)
	}
	if _, err := Listen(filepath.Join(dir, "missing", "api.sock")); err == nil {
		t.Fatal("socket in a missing directory: no error")
	}
}

// TestCloseCutsSlowClients: Close does not wait out a slow client's deadline.
func TestCloseCutsSlowClients(t *testing.T) {
	path, s := serve(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, `{"execute":`)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left behind: %v", err)
	}
}

// TestHandoff: a server rebuilt from Handoff's descriptors (as in the
// sandbox) answers on the same socket and removes the file through the
// directory descriptor.
func TestHandoff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	sock, file, err := s.Handoff()
	if err != nil || file.Name != "api.sock" || file.Dir < 0 {
		t.Fatalf("Handoff: %v, %+v", err, file)
	}
	s.ln.Close() // the old process's copy goes away with its exec
	s2, err := FromFD(path, sock, file)
	if err != nil {
		t.Fatal(err)
	}
	go s2.Serve(newHandler())
	runtime.GC() // no finalizer may close a descriptor the server uses
	if got := call(t, path, `{"execute":"list_hostfwd"}`, true); got != `{"entries":[]}` {
		t.Fatalf("rebuilt server: %s", got)
	}
	s2.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left: %v", err)
	}
}

// TestIdleClients: connections that send nothing delay no one, are cut
// after readTimeout, and the newest never waits for them.
func TestIdleClients(t *testing.T) {
	path, _ := serve(t)
	var idle []net.Conn
	for i := 0; i < 300; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatalf("idle client %d: %v", i, err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	start := time.Now()
	if got := call(t, path, `{"execute":"list_hostfwd"}`, true); got != `{"entries":[]}` {
		t.Fatalf("list behind 300 idle clients: %s", got)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("a request behind 300 idle clients took %v", d)
	}
	// Every idle client is closed within the read timeout: cut for a
	// newcomer without a word, or answered as an empty request is.
	for i, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(readTimeout + time.Second))
		b, err := io.ReadAll(c)
		if err != nil || len(b) > 0 && string(b) != errParse {
			t.Fatalf("idle client %d: read %q, %v; want EOF", i, b, err)
		}
	}
}

func TestStatsAndFlows(t *testing.T) {
	h := newHandler()
	if got := string(h.Handle([]byte(`{"execute":"get_stats"}`))); got != errUnknown {
		t.Fatalf("get_stats without a source: %s", got)
	}
	h.Stats = func() (any, error) {
		return struct {
			TCP struct {
				Open int `json:"open"`
			} `json:"tcp"`
		}{}, nil
	}
	ns, _ := netip.ParseAddr("10.0.2.100")
	dst, _ := netip.ParseAddr("198.51.100.2")
	h.Flows = func() ([]flow.Info, error) {
		return []flow.Info{{Proto: "tcp", Key: flow.Key{NS: packet.AddrFromNetip(ns), Dst: packet.AddrFromNetip(dst), NSPort: 40000, DstPort: 80},
			State: "established", Age: 1500 * time.Millisecond, ToHost: 10, ToNS: 20}}, nil
	}
	if got := string(h.Handle([]byte(`{"execute":"get_stats"}`))); got != `{"return":{"tcp":{"open":0}}}` {
		t.Fatalf("get_stats: %s", got)
	}
	want := `{"entries":[{"proto":"tcp","guest_addr":"10.0.2.100","guest_port":40000,"dest_addr":"198.51.100.2","dest_port":80,` +
		`"state":"established","inbound":false,"age_ms":1500,"bytes_from_guest":10,"bytes_to_guest":20}]}`
	if got := string(h.Handle([]byte(`{"execute":"list_flows"}`))); got != want {
		t.Fatalf("list_flows:\n got %s\nwant %s", got, want)
	}
	h.Flows = func() ([]flow.Info, error) { return nil, fmt.Errorf("nsgate is shutting down") }
	if got := string(h.Handle([]byte(`{"execute":"list_flows"}`))); got != `{"error":{"desc":"bad request: list_flows: nsgate is shutting down"}}` {
		t.Fatalf("list_flows after stop: %s", got)
	}
}
