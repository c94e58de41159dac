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
