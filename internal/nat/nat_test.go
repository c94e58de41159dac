package nat

import (
	"net/netip"
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

func TestHost(t *testing.T) {
	m := Mapper{Gateway: packet.IPv4Addr{10, 0, 2, 2}, Network: netip.MustParsePrefix("10.0.2.0/24")}
	noLoop := m
	noLoop.DisableHostLoopback = true
	onlyLoop := m
	onlyLoop.AllowHost = func(a [4]byte) bool { return a == [4]byte{127, 0, 0, 1} }
	tests := []struct {
		name string
		m    Mapper
		dst  packet.IPv4Addr
		want [4]byte
		ok   bool
	}{
		{"gateway is the host loopback", m, packet.IPv4Addr{10, 0, 2, 2}, [4]byte{127, 0, 0, 1}, true},
		{"gateway refused with --disable-host-loopback", noLoop, packet.IPv4Addr{10, 0, 2, 2}, [4]byte{}, false},
		{"remote host", m, packet.IPv4Addr{198, 51, 100, 2}, [4]byte{198, 51, 100, 2}, true},
		{"private network elsewhere", m, packet.IPv4Addr{192, 168, 1, 1}, [4]byte{192, 168, 1, 1}, true},
		{"another address of the virtual network", m, packet.IPv4Addr{10, 0, 2, 50}, [4]byte{}, false},
		{"the namespace's own loopback", m, packet.IPv4Addr{127, 0, 0, 1}, [4]byte{}, false},
		{"multicast", m, packet.IPv4Addr{224, 0, 0, 251}, [4]byte{}, false},
		{"limited broadcast", m, packet.IPv4Addr{255, 255, 255, 255}, [4]byte{}, false},
		{"unspecified", m, packet.IPv4Addr{}, [4]byte{}, false},
		{"filter refuses the outside", onlyLoop, packet.IPv4Addr{198, 51, 100, 2}, [4]byte{}, false},
		{"filter allows the loopback", onlyLoop, packet.IPv4Addr{10, 0, 2, 2}, [4]byte{127, 0, 0, 1}, true},
	}
	for _, tt := range tests {
		got, ok := tt.m.Host(tt.dst)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%s: Host(%v) = %v, %v; want %v, %v", tt.name, tt.dst, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClient(t *testing.T) {
	m := Mapper{Gateway: packet.IPv4Addr{10, 0, 2, 2}, Network: netip.MustParsePrefix("10.0.2.0/24")}
	tests := []struct {
		client [4]byte
		want   packet.IPv4Addr
	}{
		{[4]byte{127, 0, 0, 1}, packet.IPv4Addr{10, 0, 2, 2}},
		{[4]byte{127, 1, 2, 3}, packet.IPv4Addr{10, 0, 2, 2}},
		{[4]byte{198, 51, 100, 2}, packet.IPv4Addr{198, 51, 100, 2}},
		{[4]byte{10, 0, 2, 100}, packet.IPv4Addr{10, 0, 2, 2}}, // the namespace's own address, seen from outside
		{[4]byte{0, 0, 0, 0}, packet.IPv4Addr{10, 0, 2, 2}},
	}
	for _, tt := range tests {
		if got := m.Client(tt.client); got != tt.want {
			t.Errorf("Client(%v) = %v, want %v", tt.client, got, tt.want)
		}
	}
}
