// Package flowtest provides a fake flow.Env for the translators' tests, as
// wireguard-go's tuntest does for tun devices: frames go to a buffer and the
// last one is kept, epoll registrations are recorded, and the clock moves
// only when the test advances it, so that timer tests neither sleep nor
// reach into the translators' internals.
package flowtest

import (
	"fmt"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

// Env is a fake flow.Env. Its fields are the test's to read.
type Env struct {
	buf  []byte
	last []byte
	// LastN is the length of the last frame sent; Sent counts frames.
	LastN, Sent int
	// Offload is the last frame's: its partial checksum (CsumStart 0: the
	// frame was complete) and segmentation.
	Offload packet.Offload
	// The last Watch call.
	Fd     int
	Idx    int32
	Gen    uint32
	Events uint32
	// Watched counts descriptors registered and not yet unwatched.
	Watched int
	// Logged is the last line logged.
	Logged string
	now    time.Duration
}

// New returns an Env whose clock reads one second.
func New() *Env {
	return &Env{buf: make([]byte, 70000), last: make([]byte, 70000), now: time.Second}
}

// Frame implements flow.Env.
func (e *Env) Frame() []byte { return e.buf }

// Send implements flow.Env. The frame is copied into preallocated memory (the
// fake itself allocates nothing), and a partial checksum is completed as the
// namespace's kernel would: the field holds the pseudo-header sum, and the
// sum runs from CsumStart to the end. A super-frame is kept whole.
func (e *Env) Send(n int, o packet.Offload) {
	e.LastN = copy(e.last, e.buf[:n])
	e.Sent++
	e.Offload = o
	if err := o.Complete(e.last[:n]); err != nil {
		panic(fmt.Sprintf("a translator sent %v", err)) // the tap would drop it; a test must see it
	}
}

// Watch implements flow.Env.
func (e *Env) Watch(fd int, events uint32, idx int32, gen uint32, add bool) error {
	if add {
		e.Watched++
	}
	e.Fd, e.Events, e.Idx, e.Gen = fd, events, idx, gen
	return nil
}

// Unwatch implements flow.Env.
func (e *Env) Unwatch(fd int) { e.Watched-- }

// Now implements flow.Env: the fake clock.
func (e *Env) Now() time.Duration { return e.now }

// Advance moves the clock on by d.
func (e *Env) Advance(d time.Duration) { e.now += d }

// Logf implements flow.Env: it keeps the line.
func (e *Env) Logf(format string, args ...any) { e.Logged = fmt.Sprintf(format, args...) }

// Last returns the last frame sent (valid until the next Send).
func (e *Env) Last() []byte { return e.last[:e.LastN] }

// Decode decodes the last frame sent with packet.Decode, which verifies
// the IPv4, UDP and ICMP checksums.
func (e *Env) Decode() (*packet.Parsed, error) {
	var p packet.Parsed
	if err := p.Decode(e.Last()); err != nil {
		return nil, err
	}
	return &p, nil
}
