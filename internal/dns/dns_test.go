package dns

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// query is "test.nsgate A IN" with ID 0xbeef and RD set.
var query = []byte{0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
	4, 't', 'e', 's', 't', 6, 'n', 's', 'g', 'a', 't', 'e', 0, 0, 1, 0, 1}

func TestServFail(t *testing.T) {
	r := ServFail(query)
	if len(r) != len(query) || r[0] != 0xbe || r[1] != 0xef || r[2] != 0x81 || r[3]&0x0f != 2 {
		t.Fatalf("SERVFAIL % x", r)
	}
	if string(r[12:]) != string(query[12:]) {
		t.Fatal("question not kept")
	}
	tests := map[string][]byte{
		"no question":       append([]byte{1, 2, 1, 0, 0, 0}, make([]byte, 6)...),
		"label past end":    append(append([]byte{}, query[:12]...), 40, 'a'),
		"compression":       append(append([]byte{}, query[:12]...), 0xc0, 12, 0, 1, 0, 1),
		"question cut":      query[:len(query)-2],
		"two questions":     append([]byte{1, 2, 1, 0, 0, 2}, query[6:]...),
		"header only (min)": query[:12],
	}
	for name, q := range tests {
		r := ServFail(q)
		if len(r) != HeaderLen || r[3]&0x0f != 2 || r[4] != 0 || r[5] != 0 {
			t.Errorf("%s: % x", name, r)
		}
	}
	if ServFail(query[:5]) != nil {
		t.Error("answered a message shorter than a header")
	}
}

func TestReadResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(p, []byte("# comment\nsearch example\nnameserver 127.0.0.53\nnameserver ::1\nnameserver bogus\nnameserver 198.51.100.2\n"+
		"nameserver fe80::1%eth0\nnameserver ::ffff:192.0.2.1\nnameserver ::\noptions edns0\n"), 0o644)
	got, err := ReadResolvConf(p)
	want := []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("::1"), netip.MustParseAddr("198.51.100.2"),
		netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("192.0.2.1")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}

// TestNoServers: with no nameserver, the answer is SERVFAIL at once.
func TestNoServers(t *testing.T) {
	woke := make(chan bool, 1)
	r := NewRelay(nil, func() { woke <- true })
	r.Query(Client{Port: 5000}, query)
	select {
	case <-woke:
	case <-time.After(time.Second):
		t.Fatal("no answer within a second")
	}
	a := <-r.Answers()
	if a.Client.Port != 5000 || a.Msg[3]&0x0f != 2 || a.Msg[0] != 0xbe {
		t.Fatalf("answer % x to %+v", a.Msg, a.Client)
	}
	r.Query(Client{}, query[:11]) // too short: dropped
	r.Query(Client{}, append([]byte{0, 0, 0x80}, query[3:]...))
	select {
	case <-woke:
		t.Fatal("answered a malformed query or a response")
	case <-time.After(100 * time.Millisecond):
	}
}

func FuzzServFail(f *testing.F) {
	f.Add(query)
	f.Add(query[:12])
	f.Fuzz(func(t *testing.T, q []byte) {
		r := ServFail(q)
		if len(q) < HeaderLen {
			if r != nil {
				t.Fatal("answered a message shorter than a header")
			}
			return
		}
		if len(r) < HeaderLen || len(r) > len(q) || r[0] != q[0] || r[1] != q[1] || r[2]&0x80 == 0 || r[3]&0x0f != 2 {
			t.Fatalf("bad SERVFAIL % x for % x", r, q)
		}
	})
}

// TestCloseWaits: Close cuts short a query whose nameserver is silent,
// waits for its goroutine, and no answer or wake-up follows.
func TestCloseWaits(t *testing.T) {
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var woke atomic.Int32
	ap := silent.LocalAddr().(*net.UDPAddr).AddrPort()
	r := NewRelay([]netip.Addr{ap.Addr()}, func() { woke.Add(1) })
	r.port = ap.Port()
	q := []byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}
	start := time.Now()
	r.Query(Client{Port: 5000}, q)
	buf := make([]byte, 512)
	silent.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := silent.ReadFrom(buf); err != nil || n != len(q) {
		t.Fatalf("the nameserver got %d bytes, %v", n, err)
	}
	r.Close()
	if d := time.Since(start); d > PerServerTimeout/2 {
		t.Fatalf("Close took %v: the query's wait was not cut short", d)
	}
	r.Query(Client{}, q) // after Close: dropped
	time.Sleep(50 * time.Millisecond)
	if woke.Load() != 0 || len(r.Answers()) != 0 {
		t.Fatalf("after Close: %d wake-ups, %d answers", woke.Load(), len(r.Answers()))
	}
}
