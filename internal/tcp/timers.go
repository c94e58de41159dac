package tcp

import (
	"slices"
	"time"

	"github.com/nsgate/nsgate/internal/packet"
)

// Timer periods: window rechecks are cheap and a namespace sender may be
// waiting on them; retransmission timers have 200 ms granularity anyway.
const (
	recheckPeriod = time.Millisecond
	rtoPeriod     = 20 * time.Millisecond
	scanPeriod    = 5 * time.Second
)

// setRecheck marks (or unmarks) flow idx as one whose window the timer
// re-examines. The marked flows are kept in a list, so that the 1 ms
// recheck visits them alone, not the whole table.
func (t *Table) setRecheck(idx int32, f *conn, on bool) {
	if on == f.wndRecheck {
		return
	}
	f.wndRecheck = on
	if on {
		t.rechecks = append(t.rechecks, idx)
		return
	}
	if i := slices.Index(t.rechecks, idx); i >= 0 {
		last := len(t.rechecks) - 1
		t.rechecks[i] = t.rechecks[last]
		t.rechecks = t.rechecks[:last]
	}
}

func (t *Table) startTimer(f *conn) {
	if f.rtoAt == 0 {
		t.rtos++
	}
	f.rtoAt = t.env.Now() + f.rto
}

func (t *Table) stopTimer(f *conn) {
	if f.rtoAt != 0 {
		t.rtos--
		f.rtoAt = 0
	}
}

// NextTimer returns the monotonic time at which Tick should run next, or 0
// if nothing is timed.
func (t *Table) NextTimer() time.Duration {
	next := t.sweep.Next(t.env.Now(), t.flows.Len() > 0)
	at := func(when time.Duration) {
		if next == 0 || when < next {
			next = when
		}
	}
	if len(t.rechecks) > 0 {
		at(t.lastRecheck + recheckPeriod)
	}
	if t.rtos > 0 {
		at(t.lastRTOScan + rtoPeriod)
	}
	if a := t.nextAck(); a != 0 {
		at(a)
	}
	return next
}

// Tick runs what is due: window rechecks (the flows on the list), expired
// retransmission timers and, every few seconds, the idle scan (both over
// the whole table).
func (t *Table) Tick() {
	now := t.env.Now()
	if len(t.rechecks) > 0 && now >= t.lastRecheck+recheckPeriod {
		t.lastRecheck = now
		t.recheck()
	}
	rto := t.rtos > 0 && now >= t.lastRTOScan+rtoPeriod
	if rto {
		t.lastRTOScan = now
	}
	scan := t.sweep.Due(now)
	if !rto && !scan {
		return
	}
	for idx, f := range t.flows.All {
		if scan && t.expire(idx, f, now) {
			continue
		}
		if rto && f.rtoAt != 0 && now >= f.rtoAt {
			t.retransmit(idx, f)
		}
	}
}

// recheck sends the window update of each listed flow whose socket has
// drained since EPOLLOUT said it was writable.
func (t *Table) recheck() {
	for i := 0; i < len(t.rechecks); {
		idx := t.rechecks[i]
		f := t.flows.At(idx)
		f.mem.stale()
		wnd := t.window(f, false)
		low := f.wndLow
		f.wndLow = false // the timer, not EPOLLOUT, keeps watching
		if low {
			i++
			continue
		}
		t.setRecheck(idx, f, false) // swaps the last flow into place i
		t.sendCtlWnd(f, packet.TCPAck, f.sndNxt, wnd)
	}
}

// expire resets a flow idle past its timeout and gives back the ring of an
// idle one; it reports whether the flow is gone.
func (t *Table) expire(idx int32, f *conn, now time.Duration) bool {
	limit := t.cfg.IdleTimeout
	if f.state != stEstablished || f.nsFin || f.finSent {
		limit = closingTimeout
	}
	if now-f.lastSeen > limit || f.half && f.loaded && now-f.opened > loadedHalfOpenAge {
		t.abort(idx, true)
		return true
	}
	if f.sent.n == 0 && f.sent.buf != nil {
		t.rings.release(&f.sent) // an idle flow holds no ring
	}
	return false
}

// retransmit handles an expired retransmission timer: the SYN or SYN-ACK
// again, or the data from the oldest unacknowledged byte, with the timer
// backed off; past the retry limit the connection is reset.
func (t *Table) retransmit(idx int32, f *conn) {
	f.retries++
	if f.retries > maxRetries {
		t.abort(idx, true)
		return
	}
	f.rto = min(f.rto*2, rtoMax)
	t.stopTimer(f)
	switch f.state {
	case stSynSent:
		if f.retries > synRetries {
			t.abort(idx, false)
			return
		}
		t.sendCtl(f, packet.TCPSyn, f.iss)
		t.startTimer(f)
		return
	case stSynAckSent:
		if f.retries > synAckRetries || f.loaded && f.retries > loadedSynAckRetries {
			t.abort(idx, true)
			return
		}
		t.sendCtl(f, packet.TCPSyn|packet.TCPAck, f.iss)
		t.startTimer(f)
		return
	}
	t.rewind(f)
	if f.sndWnd == 0 {
		f.sndWnd = 1 // probe a zero window with one byte
	}
	t.push(idx)
	if t.flows.Live(idx) {
		if f.rtoAt == 0 && f.sndNxt != f.sndUna {
			t.startTimer(f)
		}
		t.update(idx)
	}
}
