package tcp

import (
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

// TestRecheckList: a flow whose window the timer rechecks is on a list
// that Tick walks; once the socket has room the window update goes out and
// the flow leaves the list, and a flow that goes away leaves it too.
func TestRecheckList(t *testing.T) {
	tbl, env, _, _, _ := established(t, kernelNoPeekOff())
	idx := env.Idx
	tbl.setRecheck(idx, tbl.flows.At(idx), true)
	if len(tbl.rechecks) != 1 {
		t.Fatalf("recheck list %v", tbl.rechecks)
	}
	next := tbl.NextTimer()
	if next == 0 || next > env.Now()+recheckPeriod {
		t.Fatalf("NextTimer %v with a recheck pending at %v", next, env.Now())
	}
	sent := env.Sent
	env.Advance(recheckPeriod)
	tbl.Tick()
	p, err := env.Decode()
	if err != nil || env.Sent != sent+1 || p.TCP.Flags() != packet.TCPAck || p.TCP.Window() == 0 {
		t.Fatalf("window update: %v, %d frames, %+v", err, env.Sent-sent, p)
	}
	if len(tbl.rechecks) != 0 || tbl.flows.At(idx).wndRecheck {
		t.Fatalf("flow still on the recheck list: %v", tbl.rechecks)
	}
	tbl.setRecheck(idx, tbl.flows.At(idx), true)
	tbl.abort(idx, true)
	if len(tbl.rechecks) != 0 {
		t.Fatalf("a closed flow left on the recheck list: %v", tbl.rechecks)
	}
}
