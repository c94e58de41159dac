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
