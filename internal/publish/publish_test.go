package publish

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	any4 := netip.IPv4Unspecified()
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		in   string
		want []Rule
	}{
		{"8080", []Rule{{Proto: "tcp", HostAddr: any4, HostPort: 8080, GuestPort: 8080}}},
		{"8080:80", []Rule{{Proto: "tcp", HostAddr: any4, HostPort: 8080, GuestPort: 80}}},
		{"8080:80/udp", []Rule{{Proto: "udp", HostAddr: any4, HostPort: 8080, GuestPort: 80}}},
		{"127.0.0.1:8080", []Rule{{Proto: "tcp", HostAddr: lo, HostPort: 8080, GuestPort: 8080}}},
		{"127.0.0.1:8080:80/tcp", []Rule{{Proto: "tcp", HostAddr: lo, HostPort: 8080, GuestPort: 80}}},
		{"[::]:8080:80", []Rule{{Proto: "tcp", HostAddr: netip.IPv6Unspecified(), HostPort: 8080, GuestPort: 80}}},
		{"[::1]:8080:80/udp", []Rule{{Proto: "udp", HostAddr: netip.IPv6Loopback(), HostPort: 8080, GuestPort: 80}}},
		{"[2001:db8::1]:53", []Rule{{Proto: "tcp", HostAddr: netip.MustParseAddr("2001:db8::1"), HostPort: 53, GuestPort: 53}}},
		{"8000-8001:9000-9001", []Rule{
			{Proto: "tcp", HostAddr: any4, HostPort: 8000, GuestPort: 9000},
			{Proto: "tcp", HostAddr: any4, HostPort: 8001, GuestPort: 9001}}},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0", "65536", "80:", ":80", "x:80", "80/sctp", "1.2.3.4::80", "::1:80:80",
		"9-8", "80-81:90", "1.2.3.4:5:6:7", "300.1.1.1:80:80", "80:80/",
		"[::1]", "[::1]:", "[::1]80", "[1.2.3.4]:80", "[::ffff:1.2.3.4]:80", "[fe80::1%eth0]:80", "[::1]:80:80:80", "[::1:80"} {
		if r, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", bad, r)
		}
	}
}
