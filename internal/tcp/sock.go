package tcp

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw socket calls for the per-segment path. They return the errno as a
// value: x/sys/unix's wrappers box uncommon errnos into interfaces (an
// allocation), and MSG_PEEK into a frame buffer needs the raw call anyway.

func recvFlags(fd int, b []byte, flags int) (int, unix.Errno) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(p), uintptr(len(b)), uintptr(flags), 0, 0)
		if e == unix.EINTR {
			continue
		}
		return int(n), e
	}
}

// discard drops n bytes from the head of the receive queue without copying
// them: the namespace has acknowledged them.
func discard(fd, n int) (int, unix.Errno) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, uintptr(n), unix.MSG_TRUNC|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		return int(r), e
	}
}

func send(fd int, b []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
		if e == unix.EINTR {
			continue
		}
		return int(n), e
	}
}

func setInt(fd, level, opt, v int) unix.Errno {
	v32 := int32(v)
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v32)), 4, 0)
	return e
}

func getInt(fd, level, opt int) (int, unix.Errno) {
	var v int32
	l := uint32(4)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	return int(v), e
}

// sendSpace returns the socket's send buffer and the memory queued in it
// (SO_MEMINFO: sk_sndbuf and sk_wmem_queued), the two numbers the kernel
// itself compares to decide whether a write is accepted.
func sendSpace(fd int) (sndbuf, queued int, e unix.Errno) {
	var mi [unix.SK_MEMINFO_VARS]uint32
	l := uint32(len(mi) * 4)
	_, _, e = unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi[0])), uintptr(unsafe.Pointer(&l)), 0)
	return int(mi[unix.SK_MEMINFO_SNDBUF]), int(mi[unix.SK_MEMINFO_WMEM_QUEUED]), e
}
