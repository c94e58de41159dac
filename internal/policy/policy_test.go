package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

func TestParse(t *testing.T) {
	good := map[string]string{
		"169.254.169.254":      "--deny 169.254.169.254/32",
		"10.0.0.0/8":           "--deny 10.0.0.0/8",
		"10.1.2.3/8":           "--deny 10.0.0.0/8",
		"192.0.2.1:53":         "--deny 192.0.2.1/32:53",
		"192.0.2.0/24:80-443":  "--deny 192.0.2.0/24:80-443",
		"2001:db8::/32":        "--deny 2001:db8::/32",
		"[2001:db8::1]:22":     "--deny [2001:db8::1/128]:22",
		"[2001:db8::/32]:1-99": "--deny [2001:db8::/32]:1-99",
		"::ffff:10.0.0.1":      "--deny 10.0.0.1/32",
	}
	for in, want := range good {
		r, err := Parse("--deny", true, in)
		if err != nil || r.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", in, r, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "host", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:99999",
		"10.0.0.1:9-8", "10.0.0.1:x", "[2001:db8::1", "[2001:db8::1]x", "[2001:db8::1]:", "fe80::1%eth0", "1.2.3.4:5:6"} {
		if _, err := Parse("--allow", false, in); err == nil || !strings.Contains(err.Error(), "--allow") {
			t.Errorf("Parse(%q): %v, want an error naming the option", in, err)
		}
	}
}

func TestAllowed(t *testing.T) {
	rule := func(deny bool, s string) Rule {
		r, err := Parse("rule", deny, s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := func(s string) packet.Addr { return packet.AddrFromNetip(netip.MustParseAddr(s)) }
	// First match wins: 10.1.2.3:53 is allowed before 10/8 is denied.
	p := &Policy{Rules: []Rule{rule(false, "10.1.2.3:53"), rule(true, "10.0.0.0/8"), rule(true, "198.51.100.0/24:22-25"), {Deny: true, Host: true}}}
	h := &HostAddrs{}
	m := map[netip.Addr]bool{netip.MustParseAddr("203.0.113.9"): true}
	h.set.Store(&m)
	p.SetHost(h)
	for _, c := range []struct {
		addr string
		port uint16
		want bool
	}{
		{"10.1.2.3", 53, true},
		{"10.1.2.3", 54, false},
		{"10.9.9.9", 0, false},
		{"198.51.100.7", 22, false},
		{"198.51.100.7", 26, true},
		{"198.51.100.7", 0, true}, // ICMP: rules with ports do not match
		{"127.0.0.1", 8080, false},
		{"127.3.4.5", 0, false},
		{"203.0.113.9", 443, false},
		{"203.0.113.10", 443, true},
	} {
		if got := p.Allowed(a(c.addr), c.port); got != c.want {
			t.Errorf("Allowed(%s, %d) = %v, want %v", c.addr, c.port, got, c.want)
		}
	}
	h.update(netip.MustParseAddr("203.0.113.10"), true)
	h.update(netip.MustParseAddr("203.0.113.9"), false)
	if p.Allowed(a("203.0.113.10"), 1) || !p.Allowed(a("203.0.113.9"), 1) {
		t.Error("the host's addresses did not follow the updates")
	}
	var none *Policy
	if !none.Allowed(a("127.0.0.1"), 1) || none.Active() {
		t.Error("no policy must allow everything")
	}
}

// FuzzParse: a rule parses without panic, and one that parses reads back
// the same from its String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.0.2.1:53", "[2001:db8::/32]:1-99", "::ffff:10.0.0.1/104", "1.2.3.4:5-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse("--deny", true, s)
		if err != nil {
			return
		}
		if r.PortLo > r.PortHi || r.PortHi > 0 && r.PortLo == 0 || !r.Prefix.IsValid() {
			t.Fatalf("%q: accepted %+v", s, r)
		}
		again, err := Parse("--deny", true, strings.TrimPrefix(r.String(), "--deny "))
		if err != nil || again != r {
			t.Fatalf("%q: %v reads back as %+v, %v", s, r, again, err)
		}
	})
}
