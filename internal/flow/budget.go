package flow

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Budget is the number of flows the TCP, UDP and ICMP tables may hold
// together: each holds a host descriptor, and all of them come out of
// nsgate's RLIMIT_NOFILE. A Table given a Budget (SetBudget) counts its
// flows in it and is Full when the budget is spent.
type Budget struct {
	Max  int
	used int
}

// Used returns the flows counted now.
func (b *Budget) Used() int { return b.used }

// Limits are the flow limits in force, all derived from RLIMIT_NOFILE
// (Derive) unless --max-flows sets Flows.
type Limits struct {
	NoFile   int // RLIMIT_NOFILE, which the Go runtime raised to its hard limit at start
	Reserve  int // descriptors flows never take: the API socket and its clients, forwards, the DNS relay, --pcap
	Flows    int // TCP, UDP and ICMP flows together
	HalfOpen int // TCP flows in their handshake (the SYN backlog)
	UDP      int // UDP flows
	Ping     int // ICMP echo flows
}

// Bounds of the derived limits.
const (
	minReserve     = 64
	maxReserve     = 1024
	defaultFlows   = 65536
	minFlows       = 16
	minHalfOpen    = 32
	maxHalfOpen    = 4096
	defaultUDP     = 16384
	defaultPing    = 1024
	halfOpenShare  = 16 // HalfOpen is Flows/halfOpenShare, within bounds
	udpShare       = 2  // UDP flows take at most half the budget
	pingShare      = 16
	reserveDivisor = 16 // Reserve is NoFile/ReserveDivisor, within bounds
)

// Derive computes the limits for a descriptor limit of nofile and
// --max-flows maxFlows (0: not given): a reserve of nofile/16 (64 to
// 1024), and flows up to 65,536 in what is left.
func Derive(nofile, maxFlows int) (Limits, error) {
	l := Limits{NoFile: nofile, Reserve: min(max(nofile/reserveDivisor, minReserve), maxReserve)}
	room := nofile - l.Reserve
	switch {
	case maxFlows == 0:
		l.Flows = min(defaultFlows, room)
		if l.Flows < minFlows {
			return l, fmt.Errorf("RLIMIT_NOFILE %d leaves %d descriptors for flows after a reserve of %d: at least %d are needed", nofile, room, l.Reserve, minFlows)
		}
	case maxFlows < minFlows:
		return l, fmt.Errorf("--max-flows %d: at least %d", maxFlows, minFlows)
	case maxFlows > room:
		return l, fmt.Errorf("--max-flows %d: RLIMIT_NOFILE %d leaves only %d descriptors for flows (after a reserve of %d); raise the limit (ulimit -n) or ask for fewer", maxFlows, nofile, room, l.Reserve)
	default:
		l.Flows = maxFlows
	}
	l.HalfOpen = HalfOpenFor(l.Flows)
	l.UDP = min(max(l.Flows/udpShare, 1), defaultUDP)
	l.Ping = min(max(l.Flows/pingShare, 1), defaultPing)
	return l, nil
}

// HalfOpenFor returns the cap on TCP handshakes under way for a budget of
// flows: flows/16, within 32 and 4096.
func HalfOpenFor(flows int) int { return min(max(flows/halfOpenShare, minHalfOpen), maxHalfOpen) }

// Info describes one open flow, for the API's list_flows.
type Info struct {
	Proto   string // "tcp", "udp", "icmp"
	Key     Key
	State   string // TCP's state; "" for the others
	Inbound bool   // opened by a port forward's client
	Age     time.Duration
	ToHost  uint64 // payload bytes from the namespace to the host
	ToNS    uint64 // payload bytes from the host to the namespace
}

// NoFile returns RLIMIT_NOFILE's soft limit, which the Go runtime raises to
// the hard limit when nsgate starts (and restores for the commands it runs).
func NoFile() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 1 << 20 // unlimited, or unknown: the kernel's default nr_open
	}
	return int(r.Cur)
}
