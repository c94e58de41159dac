// Package tapdev opens and attaches tap devices through /dev/net/tun with
// golang.org/x/sys/unix, and reads and writes frames on them.
//
// Taps are opened with IFF_VNET_HDR: every frame is preceded by a
// virtio_net_hdr (VnetHdrLen bytes, VirtioNetHdr). No offloads are enabled
// on the tap yet, so frames from the namespace come with no GSO; frames to
// it carry NEEDS_CSUM when their checksum is partial (Write), and are zero
// otherwise. The frame I/O carries the header already, so that TSO (64 KiB
// frames) can be switched on later without reshaping the data path.
package tapdev

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// VnetHdrLen is the size of struct virtio_net_hdr_v1 (with num_buffers),
// which nsgate asks the kernel to use with TUNSETVNETHDRSZ.
const VnetHdrLen = 12

// MaxFrame is the largest Ethernet frame nsgate reads or writes: the largest
// MTU plus the Ethernet header.
const MaxFrame = 65535 + 14

// Open creates the tap name in the calling thread's network namespace, or
// attaches to an existing tap of that name (rootlesskit creates tap0 before
// starting its network driver). The tap is not made persistent: one nsgate
// creates disappears when its last descriptor closes. The returned fd is
// close-on-exec and blocking; Device makes it non-blocking.
func Open(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return -1, fmt.Errorf("open /dev/net/tun: %w (unprivileged use needs it to be mode 0666)", err)
		}
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EINVAL):
			return -1, fmt.Errorf("attach tap %q: %w (does a tun or multiqueue device of that name exist?)", name, err)
		case errors.Is(err, unix.EBUSY):
			return -1, fmt.Errorf("attach tap %q: %w (another process has it open)", name, err)
		case errors.Is(err, unix.EPERM):
			return -1, fmt.Errorf("create tap %q: %w (no CAP_NET_ADMIN in the namespace's user namespace)", name, err)
		}
		return -1, fmt.Errorf("create or attach tap %q: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrLen); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap %q: set vnet header size %d: %w", name, VnetHdrLen, err)
	}
	// No offloads yet: the kernel hands over checksummed frames of at most
	// the MTU. ioctl(TUNSETOFFLOAD) takes its argument by value.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tap %q: disable offloads: %w", name, err)
	}
	return fd, nil
}

// Device is an open tap in non-blocking mode. Each frame in a buffer passed
// to Read or Write is preceded by Headroom() bytes of virtio_net_hdr.
type Device struct {
	fd       int
	headroom int
}

// NewDevice wraps fd, a tap opened by Open (possibly in another process and
// passed over a socket), and sets it non-blocking. headroom is VnetHdrLen
// for taps from Open, 0 for a plain frame socket (tests).
func NewDevice(fd, headroom int) (*Device, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("tap fd %d: set non-blocking: %w", fd, err)
	}
	return &Device{fd: fd, headroom: headroom}, nil
}

// Fd returns the descriptor, for epoll.
func (d *Device) Fd() int { return d.fd }

// Headroom returns the bytes reserved before each frame.
func (d *Device) Headroom() int { return d.headroom }

// Read reads one header and frame into buf and returns the frame length
// (without the header). It returns unix.EAGAIN when no frame is queued.
func (d *Device) Read(buf []byte) (int, error) {
	for {
		n, err := unix.Read(d.fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF // a tap never reads empty; a socket peer closed
		}
		if n < d.headroom {
			return 0, nil // a runt, nothing to hand on
		}
		return n - d.headroom, nil
	}
}

// Write writes buf, whose first Headroom() bytes are the header, which Write
// fills in. With csumStart > 0 the frame carries a partial checksum, as a
// virtio guest sends it: the field at csumStart+csumOffset holds only the
// pseudo-header sum, and the kernel completes it if the frame ever needs one
// (never, for local delivery). csumStart counts from the Ethernet header.
func (d *Device) Write(buf []byte, csumStart, csumOffset uint16) error {
	if d.headroom > 0 {
		h := VirtioNetHdr{}
		if csumStart > 0 {
			h = VirtioNetHdr{Flags: VirtioNetHdrFNeedsCsum, CsumStart: csumStart, CsumOffset: csumOffset}
		}
		if err := h.Encode(buf[:d.headroom]); err != nil {
			return err
		}
	}
	for {
		_, err := unix.Write(d.fd, buf)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

// Close closes the descriptor.
func (d *Device) Close() error { return unix.Close(d.fd) }

// HardwareAddr returns the MAC address of the tap behind fd: the
// namespace's end of the link. The tap's fd answers SIOCGIFHWADDR itself,
// so this works from outside the namespace.
func HardwareAddr(fd int) (packet.MAC, error) {
	var mac packet.MAC
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return mac, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return mac, fmt.Errorf("tap fd %d: SIOCGIFHWADDR: %w", fd, err)
	}
	// struct ifreq: the name, then struct sockaddr (family, then the data).
	raw := (*[unix.IFNAMSIZ + 16]byte)(unsafe.Pointer(ifr))
	copy(mac[:], raw[unix.IFNAMSIZ+2:])
	return mac, nil
}
