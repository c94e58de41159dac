// Package sandbox confines nsgate once it has opened everything it needs
// from the filesystem (--enable-sandbox): nsgate re-executes itself, keeping
// its descriptors, and sandbox.c, an ELF constructor, builds the sandbox
// before the Go runtime starts. The mount namespace and capability sets are
// per thread, and a Go program has several threads by the time main runs:
// set up any later, some threads would stay outside.
package sandbox

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// #cgo CFLAGS: -Wall -Werror
import "C"

// Role is the value of _NSGATE_ROLE that makes the constructor build the
// sandbox.
const Role = "sandbox"

// Exec re-executes nsgate into the sandbox with the same arguments and
// env (plus the role): the descriptors in keep stay open across the exec,
// every other one closes. It returns only on failure.
func Exec(keep []int, env []string) error {
	for _, fd := range keep {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("sandbox: keep fd %d open: %w", fd, err)
		}
	}
	env = append(env, "_NSGATE_ROLE="+Role)
	// The binary's own path, not /proc/self/exe: the process name (comm)
	// comes from it, and ps and pgrep should still say nsgate.
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	err = syscall.Exec(self, os.Args, env)
	return fmt.Errorf("sandbox: re-execute %s: %w", self, err)
}
