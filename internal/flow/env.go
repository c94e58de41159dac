// Package flow holds what the protocol translators (tcp, udp, icmp) share:
// Env, the engine's event loop as a translator sees it (frame buffer and
// tap writer, epoll registration, clock, log); Table, the flow table with
// slots, generations and an index by Key; and Sweep, the idle scan's
// schedule. Declared once, so that every translator sees the same contract.
package flow

import (
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

// Env is the engine as a protocol translator sees it.
type Env interface {
	// Frame returns the buffer for the next frame to the namespace.
	Frame() []byte
	// Send writes Frame()[:n] to the tap. o.CsumStart > 0 marks a partial
	// checksum: the field at CsumStart+CsumOffset holds the pseudo-header
	// sum only, and the namespace's kernel treats the frame as a virtio
	// guest's (CHECKSUM_PARTIAL), computing nothing for local delivery.
	// o.GSO marks a super-frame, which only a translator told it may
	// (GSO in its config) sends.
	Send(n int, o packet.Offload)
	// Watch adds (add) or modifies fd in the event loop for events,
	// reporting them for flow (idx, gen).
	Watch(fd int, events uint32, idx int32, gen uint32, add bool) error
	// Unwatch removes fd from the event loop.
	Unwatch(fd int)
	// Now returns the monotonic time since the engine's clock started: a
	// point in time, as a Duration so that timeouts add to it.
	Now() time.Duration
	// Logf logs a message.
	Logf(format string, args ...any)
}

// Sweep schedules a periodic pass over a flow table (idle expiry), so that
// the translators share one rule: armed when the table has flows, due once
// per Period.
type Sweep struct {
	Period time.Duration
	next   time.Duration
}

// Next returns when the sweep is due, or 0 if the table is empty (active
// false). It arms the sweep the first time the table has flows.
func (s *Sweep) Next(now time.Duration, active bool) time.Duration {
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
func (s *Sweep) Due(now time.Duration) bool {
	if s.next == 0 || now < s.next {
		return false
	}
	s.next = now + s.Period
	return true
}
