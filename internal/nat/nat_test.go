package nat

import (
	"net/netip"
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

func TestHost(t *testing.T) {
	m := Mapper{Gateway: packet.AddrFrom4([4]byte{10, 0, 2, 2}), Network: netip.MustParsePrefix("10.0.2.0/24")}
	noLoop := m
	noLoop.DisableHostLoopback = true
	onlyLoop := m
	onlyLoop.AllowHost = func(a packet.Addr) bool { return a == packet.AddrFrom4([4]byte{127, 0, 0, 1}) }
	tests := []struct {
		name string
		m    Mapper
		dst  packet.Addr
		want packet.Addr
		ok   bool
	}{
		{"gateway is the host loopback", m, packet.AddrFrom4([4]byte{10, 0, 2, 2}), packet.AddrFrom4([4]byte{127, 0, 0, 1}), true},
		{"gateway refused with --disable-host-loopback", noLoop, packet.AddrFrom4([4]byte{10, 0, 2, 2}), packet.Addr{}, false},
		{"remote host", m, packet.AddrFrom4([4]byte{198, 51, 100, 2}), packet.AddrFrom4([4]byte{198, 51, 100, 2}), true},
		{"private network elsewhere", m, packet.AddrFrom4([4]byte{192, 168, 1, 1}), packet.AddrFrom4([4]byte{192, 168, 1, 1}), true},
		{"another address of the virtual network", m, packet.AddrFrom4([4]byte{10, 0, 2, 50}), packet.Addr{}, false},
		{"the namespace's own loopback", m, packet.AddrFrom4([4]byte{127, 0, 0, 1}), packet.Addr{}, false},
		{"multicast", m, packet.AddrFrom4([4]byte{224, 0, 0, 251}), packet.Addr{}, false},
		{"limited broadcast", m, packet.AddrFrom4([4]byte{255, 255, 255, 255}), packet.Addr{}, false},
		{"unspecified", m, packet.Addr{}, packet.Addr{}, false},
		{"filter refuses the outside", onlyLoop, packet.AddrFrom4([4]byte{198, 51, 100, 2}), packet.Addr{}, false},
		{"filter allows the loopback", onlyLoop, packet.AddrFrom4([4]byte{10, 0, 2, 2}), packet.AddrFrom4([4]byte{127, 0, 0, 1}), true},
	}
	for _, tt := range tests {
		got, ok := tt.m.Host(tt.dst)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%s: Host(%v) = %v, %v; want %v, %v", tt.name, tt.dst, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClient(t *testing.T) {
	m := Mapper{Gateway: packet.AddrFrom4([4]byte{10, 0, 2, 2}), Network: netip.MustParsePrefix("10.0.2.0/24")}
	tests := []struct {
		client packet.Addr
		want   packet.Addr
	}{
		{packet.AddrFrom4([4]byte{127, 0, 0, 1}), packet.AddrFrom4([4]byte{10, 0, 2, 2})},
		{packet.AddrFrom4([4]byte{127, 1, 2, 3}), packet.AddrFrom4([4]byte{10, 0, 2, 2})},
		{packet.AddrFrom4([4]byte{198, 51, 100, 2}), packet.AddrFrom4([4]byte{198, 51, 100, 2})},
		{packet.AddrFrom4([4]byte{10, 0, 2, 100}), packet.AddrFrom4([4]byte{10, 0, 2, 2})}, // the namespace's own address, seen from outside
		{packet.AddrFrom4([4]byte{0, 0, 0, 0}), packet.AddrFrom4([4]byte{10, 0, 2, 2})},
	}
	for _, tt := range tests {
		if got := m.Client(tt.client); got != tt.want {
			t.Errorf("Client(%v) = %v, want %v", tt.client, got, tt.want)
		}
	}
}

// TestPastaMappings: --no-map-gw makes the gateway an ordinary address,
// and --map-guest-addr leads to the host's own address.
func TestPastaMappings(t *testing.T) {
	a := func(s string) packet.Addr { return packet.AddrFromNetip(netip.MustParseAddr(s)) }
	m := Mapper{Gateway: a("198.51.100.254"), Network: netip.MustParsePrefix("198.51.100.1/32"),
		GuestMap: a("169.254.1.2"), GuestTo: a("198.51.100.1")}
	tests := []struct {
		name      string
		plain     bool
		dst, want packet.Addr
		ok        bool
	}{
		{"gateway mapped to the loopback", false, a("198.51.100.254"), a("127.0.0.1"), true},
		{"gateway with --no-map-gw", true, a("198.51.100.254"), a("198.51.100.254"), true},
		{"a neighbour on the host's network", false, a("198.51.100.2"), a("198.51.100.2"), true},
		{"--map-guest-addr", true, a("169.254.1.2"), a("198.51.100.1"), true},
		{"other link-local", true, a("169.254.1.3"), packet.Addr{}, false},
		{"the namespace's own address", true, a("198.51.100.1"), packet.Addr{}, false},
	}
	for _, tt := range tests {
		m.PlainGateway = tt.plain
		got, ok := m.Host(tt.dst)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("%s: Host(%v) = %v, %v; want %v, %v", tt.name, tt.dst, got, ok, tt.want, tt.ok)
		}
	}
	if m.PlainGateway = true; m.HostLoopbackDisabled(a("198.51.100.254")) {
		t.Error("--no-map-gw refuses the gateway: it is the real router")
	}
}
