// Package seccomp confines nsgate to the system calls it uses
// (--enable-seccomp): a classic-BPF filter that allows the calls listed in
// syscalls_amd64.go and makes every other one fail with EPERM, installed on
// every thread at once (SECCOMP_FILTER_FLAG_TSYNC), so that the Go runtime's
// threads are covered too. A refused call is an error, not a kill: the log
// then names what failed.
package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits on little-endian machines
)

// x32Bit marks the x32 ABI's system call numbers on amd64: refused.
const x32Bit = 0x40000000

// rule is one allowed call; if mask is not zero, only when the first
// argument's low 32 bits have all of mask's bits set (clone: threads only).
type rule struct {
	nr   uint32
	mask uint32
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// Filter returns the BPF program for the rules of this architecture.
func Filter() ([]unix.SockFilter, error) {
	if auditArch == 0 {
		return nil, fmt.Errorf("no system call list for %s", runtime.GOARCH)
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		and  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	deny := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	prog := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS), // another ABI: not ours
		stmt(ld, offNr),
		jump(jge, x32Bit, 0, 1),
		stmt(ret, deny),
	}
	for _, nr := range enosys {
		prog = append(prog, jump(jeq, nr, 0, 1), stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)))
	}
	for _, r := range allowed {
		if r.mask == 0 {
			prog = append(prog, jump(jeq, r.nr, 0, 1), stmt(ret, unix.SECCOMP_RET_ALLOW))
			continue
		}
		// nr matches: load arg0, test the mask, reload nr for the rest.
		prog = append(prog,
			jump(jeq, r.nr, 0, 5),
			stmt(ld, offArg0),
			stmt(and, r.mask),
			jump(jeq, r.mask, 0, 1),
			stmt(ret, unix.SECCOMP_RET_ALLOW),
			stmt(ret, deny),
		)
	}
	prog = append(prog, stmt(ret, deny))
	if len(prog) > 4096 {
		return nil, errors.New("filter too long")
	}
	return prog, nil
}

// Apply installs the filter on every thread of the process. It sets
// no_new_privs first, which an unprivileged process needs for a filter.
func Apply() error {
	prog, err := Filter()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): %w", e)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not take the filter", r)
	}
	return nil
}
