package udp

import (
	"encoding/binary"
	"unsafe"

	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// ReadForward reads the datagrams waiting on fd, the socket of a UDP port
// forward to guest:guestPort, and passes each into the namespace from its
// client, as the namespace sees it (nat.Mapper.Client). Each client is a
// flow, so the namespace's replies go back to the client that asked, from
// the forward's socket.
func (t *Table) ReadForward(fd int, guest packet.Addr, guestPort uint16, guestMAC packet.MAC) {
	room, off := t.room(guest), payloadOff(guest)
	for i := 0; i < batch; i++ {
		buf := t.env.Frame()
		var sa unix.RawSockaddrInet6 // or an Inet4 in its first bytes
		salen := uint32(unix.SizeofSockaddrInet6)
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[off])), uintptr(room),
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&salen)))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return // EAGAIN; errors of an unconnected socket name no flow
		}
		n := int(r)
		var client packet.Addr
		switch {
		case sa.Family == unix.AF_INET && guest.Is4():
			client = packet.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&sa)).Addr)
		case sa.Family == unix.AF_INET6 && !guest.Is4():
			client = packet.Addr(sa.Addr)
		default:
			t.Dropped++
			continue
		}
		if n > room {
			t.Dropped++ // larger than the namespace's MTU: it could not take it whole
			continue
		}
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		k := flow.Key{NS: guest, NSPort: guestPort, Dst: t.cfg.NAT.Client(client), DstPort: port}
		idx, ok := t.flows.Lookup(k)
		if !ok {
			if t.flows.Full() {
				t.Dropped++
				continue
			}
			var f *udpFlow
			idx, f = t.flows.Add(k)
			*f = udpFlow{key: k, fd: fd, nsMAC: guestMAC, shared: true, peer: sa, peerLen: salen}
			t.Opened++
		}
		f := t.flows.At(idx)
		f.lastSeen = t.env.Now()
		t.sendUDP(f, buf, n)
	}
}

// Forget removes the flows of a forward whose socket fd is about to close.
func (t *Table) Forget(fd int) {
	for idx, f := range t.flows.All {
		if f.shared && f.fd == fd {
			t.remove(idx)
		}
	}
}
