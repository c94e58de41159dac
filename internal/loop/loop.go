// Package loop defines what the engine's event loop lends the protocol
// translators (tcp, udp, icmp): the frame buffer and tap writer, epoll
// registration for their host sockets, the clock and the log. Declared once,
// so that every translator sees the same contract.
package loop

// Env is the engine as a protocol translator sees it.
type Env interface {
	// Frame returns the buffer for the next frame to the namespace.
	Frame() []byte
	// Send writes Frame()[:n] to the tap. csumStart > 0 marks a partial
	// checksum: the field at csumStart+csumOffset holds the pseudo-header
	// sum only, and the namespace's kernel treats the frame as a virtio
	// guest's (CHECKSUM_PARTIAL), computing nothing for local delivery.
	Send(n int, csumStart, csumOffset uint16)
	// Watch adds (add) or modifies fd in the event loop for events,
	// reporting them for flow (idx, gen).
	Watch(fd int, events uint32, idx int32, gen uint32, add bool) error
	// Unwatch removes fd from the event loop.
	Unwatch(fd int)
	// Now returns monotonic nanoseconds.
	Now() int64
	// Logf logs a message.
	Logf(format string, args ...any)
}

// Sweep schedules a periodic pass over a flow table (idle expiry), so that
// the translators share one rule: armed when the table has flows, due once
// per Period.
type Sweep struct {
	Period int64 // nanoseconds
	next   int64
}

// Next returns when the sweep is due, or 0 if the table is empty (active
// false). It arms the sweep the first time the table has flows.
func (s *Sweep) Next(now int64, active bool) int64 {
	if !active {
		return 0
	}
	if s.next == 0 {
		s.next = now + s.Period
	}
	return s.next
}

// Due reports whether an armed sweep is due at now, and if so schedules
// the next one.
func (s *Sweep) Due(now int64) bool {
	if s.next == 0 || now < s.next {
		return false
	}
	s.next = now + s.Period
	return true
}

// Alloc returns a free slot of a flow table: the last index freed, or a new
// slot, set to empty, appended to slots. The tables keep a slot's index for
// epoll and their index maps, so slots are reused, never moved.
func Alloc[T any](slots *[]T, free *[]int32, empty T) int32 {
	if n := len(*free); n > 0 {
		idx := (*free)[n-1]
		*free = (*free)[:n-1]
		return idx
	}
	*slots = append(*slots, empty)
	return int32(len(*slots) - 1)
}
