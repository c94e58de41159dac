package udp

import (
	"encoding/binary"
	"unsafe"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// ReadForward reads the datagrams waiting on fd, the socket of a UDP port
// forward to guest:guestPort, and passes each into the namespace from its
// client, as the namespace sees it (nat.Mapper.Client). Each client is a
// flow, so the namespace's replies go back to the client that asked, from
// the forward's socket.
func (t *Table) ReadForward(fd int, guest packet.IPv4Addr, guestPort uint16, guestMAC packet.MAC) {
	room := t.cfg.MTU - packet.IPv4Len - packet.UDPLen
	for i := 0; i < batch; i++ {
		buf := t.env.Frame()
		var sa unix.RawSockaddrInet4
		salen := uint32(unix.SizeofSockaddrInet4)
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[hdrLen])), uintptr(room),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return // EAGAIN; errors of an unconnected socket name no flow
		}
		n := int(r)
		if n > room || sa.Family != unix.AF_INET {
			t.Errors++ // larger than the namespace's MTU: it could not take it whole
			continue
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		k := key{nsIP: guest, nsPort: guestPort, dstIP: t.cfg.NAT.Client(sa.Addr), dstPort: port}
		idx, ok := t.index[k]
		if !ok {
			if len(t.index) >= t.cfg.MaxFlows {
				t.Errors++
				continue
			}
			idx = t.alloc()
			f := &t.flows[idx]
			*f = flow{key: k, gen: f.gen + 1, fd: fd, nsMAC: guestMAC, shared: true, peer: sa}
			t.index[k] = idx
			t.Opened++
		}
		f := &t.flows[idx]
		f.lastSeen = t.env.Now()
		t.sendUDP(f, buf, n)
	}
}

// Forget removes the flows of a forward whose socket fd is about to close.
func (t *Table) Forget(fd int) {
	for i := range t.flows {
		if f := &t.flows[i]; f.shared && f.fd == fd {
			t.remove(int32(i))
		}
	}
}
