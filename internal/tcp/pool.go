package tcp

import (
	"github.com/nsgate/nsgate/internal/flow"
	"github.com/nsgate/nsgate/internal/packet"
	"golang.org/x/sys/unix"
)

// Sockets made ahead of need. A namespace's SYN waits for socket(),
// connect() and the SYN-ACK's write; of these, only connect() depends on
// the SYN. So, as passt does, nsgate keeps a few sockets of each address
// family already made and tuned (tune: SO_PEEK_OFF, TCP_NODELAY,
// keep-alives), and makes the next one when the loop has nothing else to do
// (Idle), while the namespace's application wakes up to the SYN-ACK. A
// connection then costs the same system calls, but four of them leave the
// path between the namespace's connect() and its first byte reaching the
// host.
//
// A family's pool is filled only once a connection has used that family,
// so that a host without IPv6, or a namespace that never opens a TCP
// connection, holds no spare sockets. They count against the descriptor
// reserve (flow.Derive), not the flows' budget.

// poolSize is how many spare sockets a family keeps. Idle makes one a turn
// of the loop, as fast as connections opened one a turn use them; a burst
// of SYNs in one batch of frames takes them all, and the SYNs past them
// make their own sockets (dial), as before the pool.
const poolSize = 4

// sockPool holds the spare sockets, IPv4 at index 0 and IPv6 at 1.
type sockPool struct {
	fds  [2][poolSize]int
	n    [2]int
	used [2]bool // the family has carried a connection: keep its pool filled
}

func poolIndex(family int) int {
	if family == unix.AF_INET6 {
		return 1
	}
	return 0
}

var poolFamilies = [2]int{unix.AF_INET, unix.AF_INET6}

// take returns a spare, tuned socket of family, or -1 if there is none;
// it also marks the family for refilling.
func (p *sockPool) take(family int) int {
	i := poolIndex(family)
	p.used[i] = true
	if p.n[i] == 0 {
		return -1
	}
	p.n[i]--
	return p.fds[i][p.n[i]]
}

// refill makes at most one spare socket, for the first family in use
// whose pool is short. A failure (the descriptor limit, say) stops the
// refills of that family until a connection uses it again: open then
// makes its socket itself and reports what failed.
func (t *Table) refill() {
	p := &t.pool
	for i, family := range poolFamilies {
		if !p.used[i] || p.n[i] == poolSize {
			continue
		}
		fd, err := newSocket(family)
		if err == nil {
			if err = t.tune(fd); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			p.used[i] = false
			return
		}
		p.fds[i][p.n[i]] = fd
		p.n[i]++
		return
	}
}

// Close closes the spare sockets. The engine calls it once its loop has
// returned.
func (t *Table) Close() {
	p := &t.pool
	for i := range p.fds {
		for _, fd := range p.fds[i][:p.n[i]] {
			unix.Close(fd)
		}
		p.n[i], p.used[i] = 0, false
	}
}

// spare returns how many spare sockets the pool holds for addr's family.
func (t *Table) spare(addr packet.Addr) int { return t.pool.n[poolIndex(flow.Family(addr))] }

// newSocket makes a non-blocking TCP socket of family.
func newSocket(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}
