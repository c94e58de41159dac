package flow

import (
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Family returns the socket family of a: AF_INET or AF_INET6.
func Family(a packet.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// Sockaddr returns the socket address a:port in a's family. It allocates:
// for opening flows, not for their packets.
func Sockaddr(a packet.Addr, port uint16) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: int(port)}
	}
	return &unix.SockaddrInet6{Addr: a, Port: int(port)}
}

// Outbound holds the source addresses of the sockets flows open
// (--outbound-addr, --outbound-addr6); a zero one leaves the choice to the
// kernel.
type Outbound struct{ V4, V6 packet.Addr }

// For returns the source address for a socket to dst, zero if none is set
// for dst's family.
func (o Outbound) For(dst packet.Addr) packet.Addr {
	if dst.Is4() {
		return o.V4
	}
	return o.V6
}

// Option names the command-line option that set For(dst), for messages.
func (Outbound) Option(dst packet.Addr) string {
	if dst.Is4() {
		return "--outbound-addr"
	}
	return "--outbound-addr6"
}
