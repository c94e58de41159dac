package icmp

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/nsgate/nsgate/internal/flow/flowtest"
	"github.com/nsgate/nsgate/internal/nat"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// TestPings: an echo request to another host opens a ping socket flow that
// the idle sweep closes after pingTimeout; where this namespace's
// ping_group_range refuses ping sockets, nsgate says so once, with the
// sysctl that allows them, and opens nothing. Which case runs depends on
// the machine; both assert what nsgate does.
func TestPings(t *testing.T) {
	env := flowtest.New()
	loopback := packet.AddrFrom4([4]byte{127, 0, 0, 1})
	// The request goes to the gateway, the host's loopback: the only host
	// address a test in the machine's own namespace may reach.
	tbl := NewPings(PingConfig{GatewayMAC: gwMAC, NAT: nat.Mapper{Gateway: packet.AddrFrom4([4]byte{10, 0, 2, 2}),
		Network: netip.MustParsePrefix("10.0.2.0/24"), AllowHost: func(a packet.Addr) bool { return a == loopback }}}, env)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, unix.IPPROTO_ICMP)
	allowed := err == nil
	if allowed {
		unix.Close(fd)
	}
	tbl.HandleFrame(request(packet.ICMPEchoRequest, "x"))
	if !allowed {
		if tbl.flows.Len() != 0 || !strings.Contains(env.Logged, "sysctl -w net.ipv4.ping_group_range=") {
			t.Fatalf("ping sockets refused (%v): %d flows, logged %q", err, tbl.flows.Len(), env.Logged)
		}
		env.Logged = ""
		tbl.HandleFrame(request(packet.ICMPEchoRequest, "y"))
		if env.Logged != "" {
			t.Fatalf("refusal said twice: %q", env.Logged)
		}
		return
	}
	if tbl.flows.Len() != 1 || env.Watched != 1 {
		t.Fatalf("echo request: %d flows, %d watched", tbl.flows.Len(), env.Watched)
	}
	tbl.NextTimer() // arms the sweep, as the engine's loop does
	env.Advance(pingTimeout)
	tbl.Tick()
	if tbl.flows.Len() != 1 {
		t.Fatal("flow closed before pingTimeout had passed since its last request")
	}
	env.Advance(pingScan)
	tbl.Tick()
	if tbl.flows.Len() != 0 || env.Watched != 0 {
		t.Fatalf("idle flow kept: %d flows, %d watched", tbl.flows.Len(), env.Watched)
	}
}
