package seccomp

import "golang.org/x/sys/unix"

const auditArch = unix.AUDIT_ARCH_X86_64

// allowed is every system call nsgate makes once it serves, found by
// running the integration suites with the filter on (make test runs the TCP,
// UDP, DNS, ping and forward suites that way) and by strace -f of a
// sandboxed nsgate, and kept to that. Everything else gets EPERM.
var allowed = []rule{
	// The event loop, the tap and the host sockets.
	{nr: unix.SYS_EPOLL_WAIT}, {nr: unix.SYS_EPOLL_PWAIT}, {nr: unix.SYS_EPOLL_CTL},
	{nr: unix.SYS_EPOLL_CREATE1}, {nr: unix.SYS_EVENTFD2}, // the Go netpoller starts lazily
	{nr: unix.SYS_READ}, {nr: unix.SYS_WRITE}, {nr: unix.SYS_READV}, {nr: unix.SYS_WRITEV},
	{nr: unix.SYS_CLOSE}, {nr: unix.SYS_FCNTL}, {nr: unix.SYS_POLL}, {nr: unix.SYS_PPOLL},
	{nr: unix.SYS_SOCKET}, {nr: unix.SYS_CONNECT}, {nr: unix.SYS_BIND}, {nr: unix.SYS_LISTEN},
	{nr: unix.SYS_ACCEPT4}, {nr: unix.SYS_SHUTDOWN},
	{nr: unix.SYS_SENDTO}, {nr: unix.SYS_RECVFROM}, {nr: unix.SYS_SENDMSG}, {nr: unix.SYS_RECVMSG},
	{nr: unix.SYS_SENDMMSG}, {nr: unix.SYS_RECVMMSG},
	{nr: unix.SYS_SETSOCKOPT}, {nr: unix.SYS_GETSOCKOPT}, {nr: unix.SYS_GETSOCKNAME}, {nr: unix.SYS_GETPEERNAME},
	// Removing the API socket file on exit.
	{nr: unix.SYS_UNLINKAT},
	// nsgate -- CMD: waiting for the command, passing signals on to it.
	{nr: unix.SYS_WAITID}, {nr: unix.SYS_WAIT4}, {nr: unix.SYS_PIDFD_SEND_SIGNAL}, {nr: unix.SYS_KILL},
	// The Go runtime: memory, threads (clone for threads only), signals,
	// time, and exit.
	{nr: unix.SYS_MMAP}, {nr: unix.SYS_MUNMAP}, {nr: unix.SYS_MADVISE}, {nr: unix.SYS_MPROTECT},
	{nr: unix.SYS_FUTEX}, {nr: unix.SYS_NANOSLEEP}, {nr: unix.SYS_SCHED_YIELD},
	{nr: unix.SYS_CLONE, mask: unix.CLONE_THREAD | unix.CLONE_VM},
	{nr: unix.SYS_SET_ROBUST_LIST}, {nr: unix.SYS_RSEQ},
	{nr: unix.SYS_RT_SIGRETURN}, {nr: unix.SYS_RT_SIGPROCMASK}, {nr: unix.SYS_RT_SIGACTION},
	{nr: unix.SYS_SIGALTSTACK}, {nr: unix.SYS_GETTID}, {nr: unix.SYS_GETPID}, {nr: unix.SYS_TGKILL},
	{nr: unix.SYS_CLOCK_GETTIME}, {nr: unix.SYS_GETRANDOM},
	// The runtime's periodic GOMAXPROCS update (Go 1.25+): CPU affinity,
	// and the cgroup CPU limit through a file it keeps open.
	{nr: unix.SYS_SCHED_GETAFFINITY}, {nr: unix.SYS_PREAD64},
	{nr: unix.SYS_EXIT}, {nr: unix.SYS_EXIT_GROUP},
}

// enosys are refused with ENOSYS rather than EPERM, so that the C library
// falls back: clone3's flags are out of a filter's reach, clone's are not.
var enosys = []uint32{unix.SYS_CLONE3}
