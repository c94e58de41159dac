package tcp

import (
	"time"

	"github.com/nsgate/nsgate/internal/flow"
	"golang.org/x/sys/unix"
)

// Half-open flows: what keeps a SYN flood from taking every descriptor.
//
// A half-open flow is one the namespace opened whose handshake has not
// completed on both sides: connect() under way (stConnecting), or the
// SYN-ACK sent and its ACK awaited (stSynAckSent). A SYN flood makes
// nothing else, and each holds a host socket. They are capped at
// Config.MaxHalfOpen, like the kernel's SYN backlog. At the cap, new SYNs
// are answered with SYN cookies (cookie.go), which hold nothing; refusing
// them instead would refuse every connection, the legitimate ones among
// the flood too, for as long as it lasts. A cookie's connection takes the
// place of the oldest half-open flow, which is reset (RST to the
// namespace, RST to the host). So is the oldest when the flow budget is
// spent.
//
// Once half the cap is in use, or a cookie is sent, the table counts as
// loaded for pressureHold, and handshakes get less time, as the kernel
// gives under SYN pressure: the host's connect() gives up after
// loadedSynCnt SYN retransmissions (TCP_SYNCNT: 1 + 2 + 4 s), and the
// SYN-ACK to the namespace goes again only loadedSynAckRetries times. The
// handshakes under way when pressure begins are shortened too. So a
// flood's flows are gone seconds after it stops, however long a
// blackholed destination would have kept them; the idle scan (every 5 s)
// ends any that lives past loadedHalfOpenAge.

// Retries of the SYN-ACK to the namespace: the kernel's tcp_synack_retries,
// and under load.
const (
	synAckRetries       = 5
	loadedSynAckRetries = 1
	loadedSynCnt        = 2
	// loadedHalfOpenAge is the most a handshake of a loaded table lives,
	// whatever the host's connect() does: the idle scan ends it.
	loadedHalfOpenAge = 8 * time.Second
	// pressureHold is how long the table stays loaded after the last sign
	// of pressure.
	pressureHold = 10 * time.Second
)

// flowRef names a flow slot at one generation.
type flowRef struct {
	idx int32
	gen uint32
}

// halfOpened counts flow idx as half-open, at the back of the eviction
// queue.
func (t *Table) halfOpened(idx int32, f *conn) {
	f.half = true
	t.half++
	if len(t.halfQ)-t.halfHead > 2*t.half+64 {
		// Settled and removed flows leave stale entries behind, and
		// evictions a consumed front: past twice the live ones, drop
		// both (amortised O(1)), so the queue stays near the number of
		// half-open flows however many connections come and go.
		q := t.halfQ[:0]
		for _, r := range t.halfQ[t.halfHead:] {
			if g := t.flows.Event(r.idx, r.gen); g != nil && g.half {
				q = append(q, r)
			}
		}
		t.halfQ, t.halfHead = q, 0
	}
	t.halfQ = append(t.halfQ, flowRef{idx, t.flows.Gen(idx)})
}

// settled takes f out of the half-open count: its handshake completed,
// or it is going away.
func (t *Table) settled(f *conn) {
	if f.half {
		f.half = false
		t.half--
	}
}

// evictHalfOpen resets the oldest half-open flow; it reports whether there
// was one.
func (t *Table) evictHalfOpen() bool {
	for t.halfHead < len(t.halfQ) {
		r := t.halfQ[t.halfHead]
		t.halfHead++
		if f := t.flows.Event(r.idx, r.gen); f != nil && f.half {
			t.HalfOpenResets++
			t.abort(r.idx, true)
			return true
		}
	}
	return false
}

// loaded reports whether the table is under pressure: half the half-open
// cap in use, or SYN cookies sent, within the last pressureHold. Pressure
// that begins shortens the handshakes already under way (shortenAll).
// Holding it a while, rather than reading the count alone, keeps a flood
// whose flows expire in waves from opening unshortened ones in between.
func (t *Table) loaded() bool {
	now := t.env.Now()
	if t.half >= t.cfg.MaxHalfOpen/2 {
		t.pressure(now)
	}
	return t.pressureUntil != 0 && now < t.pressureUntil
}

// pressure notes pressure at now.
func (t *Table) pressure(now time.Duration) {
	if t.pressureUntil == 0 || now >= t.pressureUntil {
		t.shortenAll()
	}
	t.pressureUntil = now + pressureHold
}

// shortenAll gives the handshakes already under way the patience of a
// loaded table, as the table becomes loaded: the kernel reads TCP_SYNCNT
// at each retransmission, so a connect() in progress gives up sooner too.
func (t *Table) shortenAll() {
	for _, r := range t.halfQ[t.halfHead:] {
		if f := t.flows.Event(r.idx, r.gen); f != nil && f.half && !f.loaded {
			f.loaded = true
			if f.state == stConnecting {
				shorten(f.fd)
			}
		}
	}
}

// shorten gives the connect() on fd fewer SYN retransmissions.
func shorten(fd int) { setInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, loadedSynCnt) }

// HalfOpen returns the number of half-open flows.
func (t *Table) HalfOpen() int { return t.half }

// stateNames are the states as list_flows shows them (the kernel's names
// for the namespace's side).
var stateNames = [...]string{stConnecting: "connecting", stSynAckSent: "syn_recv", stEstablished: "established", stSynSent: "syn_sent"}

// AppendFlows appends a description of each open flow to dst.
func (t *Table) AppendFlows(dst []flow.Info) []flow.Info {
	now := t.env.Now()
	for _, f := range t.flows.All {
		st := stateNames[f.state]
		if f.state == stEstablished && (f.nsFin || f.finSent) {
			st = "closing"
		}
		dst = append(dst, flow.Info{Proto: "tcp", Key: f.key, State: st, Inbound: f.inbound,
			Age: now - f.opened, ToHost: f.toHost, ToNS: f.toNS})
	}
	return dst
}
