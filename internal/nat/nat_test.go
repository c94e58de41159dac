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
