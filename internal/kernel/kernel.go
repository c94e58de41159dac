// Package kernel probes, once at start, the kernel features nsgate uses
// that are newer than the oldest kernel it supports, so that the data path
// picks its way once and never fails per connection. docs/kernels.md lists
// every feature nsgate uses, the first kernel that has it, and what nsgate
// does without it. Check refuses, with one error, a kernel that lacks what
// nsgate cannot do without.
package kernel

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Oldest is the oldest kernel nsgate supports: every feature it has no
// fallback for (pidfd_open 5.3, SO_MEMINFO 4.12, user namespaces 3.8, ...)
// is older.
const Oldest = "5.10"

// Features are the probed kernel features that have a fallback.
type Features struct {
	// TCPPeekOff: SO_PEEK_OFF on TCP sockets (Linux 6.9). Without it,
	// host → namespace TCP keeps its own copy of unacknowledged bytes.
	TCPPeekOff bool
}

// NoPeekOffEnv forces the TCP fallback on a kernel that has SO_PEEK_OFF,
// for tests and benchmarks.
const NoPeekOffEnv = "NSGATE_NO_PEEK_OFF"

// Probe asks the running kernel. It opens and closes one socket.
func Probe() Features {
	return Features{TCPPeekOff: tcpPeekOff() && os.Getenv(NoPeekOffEnv) != "1"}
}

// tcpPeekOff reports whether a TCP socket accepts SO_PEEK_OFF; before 6.9
// setsockopt fails (EOPNOTSUPP, or EINVAL from older kernels).
func tcpPeekOff() bool {
	return withTCPSocket(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0)
	}) == nil
}

// withTCPSocket runs probe on a new TCP socket, closed after.
func withTCPSocket(probe func(fd int) error) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return probe(fd)
}

// requirement is a feature nsgate has no fallback for, and its probe.
type requirement struct {
	name, version string
	probe         func() error
}

// required are probed by Check. Both are older than Oldest; a kernel that
// fails one is older still, or has it compiled out.
var required = []requirement{
	{"pidfd_open(2)", "5.3", func() error {
		fd, err := unix.PidfdOpen(os.Getpid(), 0)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}},
	{"SO_MEMINFO", "4.12", func() error {
		return withTCPSocket(func(fd int) error {
			// The kernel copies as much of the array as asked for: the
			// first word will do.
			_, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MEMINFO)
			return err
		})
	}},
}

// Check probes the features nsgate cannot do without and returns one error
// naming the first that is missing and the kernel that brought it.
func Check() error { return check(required) }

func check(reqs []requirement) error {
	for _, r := range reqs {
		if err := r.probe(); err != nil {
			return fmt.Errorf("this kernel lacks %s (Linux %s; nsgate needs Linux %s or later): %w", r.name, r.version, Oldest, err)
		}
	}
	return nil
}
