// Package tapdev opens and attaches tap devices through /dev/net/tun with
// golang.org/x/sys/unix, and reads and writes frames on them.
//
// Taps are opened with IFF_VNET_HDR: every frame is preceded by a
// virtio_net_hdr (VnetHdrLen bytes, VirtioNetHdr), and with offloads on
// (TUNSETOFFLOAD: checksum, TSO, and USO where the kernel has it), as a
// virtio NIC would offer them. Whatever the namespace's MTU, its kernel
// then hands nsgate TCP super-frames of up to 64 KiB with a partial
// checksum, and nsgate hands it frames of the same size, marked for
// segmentation at the connection's MSS: one frame, one system call, for
// what would be 44 frames at MTU 1500. Nobody sums the payload either way.
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

// Offloads are TUNSETOFFLOAD's flags: what the tap's netdev may hand nsgate
// (unix.TUN_F_*).
type Offloads uint

// The offloads Open asks for, best first: USO came in Linux 6.2, checksum
// and TSO have always been there.
const (
	OffloadsFull = OffloadsTSO | unix.TUN_F_USO4 | unix.TUN_F_USO6
	OffloadsTSO  = Offloads(unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6)
)

// String names the flags as ethtool and the kernel do.
func (o Offloads) String() string {
	if o == 0 {
		return "none"
	}
	s := ""
	for _, f := range []struct {
		bit  Offloads
		name string
	}{{unix.TUN_F_CSUM, "csum"}, {unix.TUN_F_TSO4, "tso4"}, {unix.TUN_F_TSO6, "tso6"}, {unix.TUN_F_TSO_ECN, "tso-ecn"},
		{unix.TUN_F_UFO, "ufo"}, {unix.TUN_F_USO4, "uso4"}, {unix.TUN_F_USO6, "uso6"}} {
		if o&f.bit != 0 {
			if s != "" {
				s += ","
			}
			s += f.name
		}
	}
	return s
}

// Open creates the tap name in the calling thread's network namespace, or
// attaches to an existing tap of that name (rootlesskit creates tap0 before
// starting its network driver). The tap is not made persistent: one nsgate
// creates disappears when its last descriptor closes. The returned fd is
// close-on-exec and blocking; Device makes it non-blocking.
//
// The offloads are the best the kernel accepts (SetOffloads); got says
// which, so that the caller can say when they are fewer than OffloadsFull.
// An existing tap needs nothing of its creator for this: attaching sets
// IFF_VNET_HDR anew, whatever flags the tap was made with (rootlesskit's
// has none), and TUNSETOFFLOAD works on any attached descriptor.
func Open(name string) (fd int, got Offloads, err error) {
	fd, err = open(name)
	if err != nil {
		return -1, 0, err
	}
	if got, err = SetOffloads(fd); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("tap %q: %w", name, err)
	}
	return fd, got, nil
}

func open(name string) (int, error) {
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
	return fd, nil
}

// SetOffloads turns on the best offloads the kernel accepts on the tap
// behind fd: OffloadsFull, else OffloadsTSO (before Linux 6.2, which
// refuses the USO flags with EINVAL), else none. It fails only if the
// kernel refuses even none.
func SetOffloads(fd int) (Offloads, error) {
	var err error
	for _, o := range []Offloads{OffloadsFull, OffloadsTSO, 0} {
		// ioctl(TUNSETOFFLOAD) takes its argument by value.
		if err = unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(o)); err == nil {
			return o, nil
		}
	}
	return 0, fmt.Errorf("set offloads (TUNSETOFFLOAD) to none: %w", err)
}

// errNoHeader: an offload was asked of a device with no header to say it.
var errNoHeader = errors.New("tap: an offload on a frame without a vnet header")

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
// fills in from o, as a virtio guest sends it. With o.CsumStart > 0 the
// frame carries a partial checksum: the field at CsumStart+CsumOffset holds
// only the pseudo-header sum, and the kernel completes it if the frame ever
// needs one (never, for local delivery). With o.GSO the frame is a
// super-frame that the kernel segments at o.GSOSize if it must (routing
// on), or delivers whole. Without a header (headroom 0) o must be zero.
func (d *Device) Write(buf []byte, o packet.Offload) error {
	if d.headroom > 0 {
		h := vnetHdr(o)
		if err := h.Encode(buf[:d.headroom]); err != nil {
			return err
		}
	} else if o != (packet.Offload{}) {
		return errNoHeader
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
