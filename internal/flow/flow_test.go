package flow

import (
	"testing"

	"github.com/nsgate/nsgate/internal/packet"
)

func TestSweep(t *testing.T) {
	s := Sweep{Period: 10}
	if got := s.Next(100, false); got != 0 {
		t.Fatalf("empty table: Next = %d, want 0", got)
	}
	if s.Due(1000) {
		t.Fatal("due before it was armed")
	}
	if got := s.Next(100, true); got != 110 {
		t.Fatalf("Next = %d, want 110", got)
	}
	if got := s.Next(105, true); got != 110 {
		t.Fatalf("re-arming moved the sweep: %d", got)
	}
	if s.Due(109) {
		t.Fatal("due early")
	}
	if !s.Due(110) || s.Next(110, true) != 120 {
		t.Fatalf("not due at 110, or not rescheduled: next %d", s.Next(110, true))
	}
}

func key(port uint16) Key {
	return Key{NS: packet.AddrFrom4([4]byte{10, 0, 2, 100}), Dst: packet.AddrFrom4([4]byte{192, 0, 2, 1}), NSPort: port, DstPort: 80}
}

// TestTable: slots are reused before the table grows, generations tell a
// stale event from a live flow, Remove resets the slot to the empty value,
// and Full and Len count flows.
func TestTable(t *testing.T) {
	type fl struct{ fd int }
	tb := NewTable(2, fl{fd: -1})
	a, fa := tb.Add(key(1))
	if fa.fd != -1 || a != 0 || tb.Len() != 1 || tb.Full() {
		t.Fatalf("first Add: idx %d flow %+v len %d", a, *fa, tb.Len())
	}
	fa.fd = 7
	b, _ := tb.Add(key(2))
	if b != 1 || !tb.Full() {
		t.Fatalf("second Add: idx %d full %v", b, tb.Full())
	}
	if idx, ok := tb.Lookup(key(1)); !ok || idx != a || tb.At(idx).fd != 7 || tb.Key(idx) != key(1) {
		t.Fatalf("Lookup(key 1) = %d %v", idx, ok)
	}
	genA := tb.Gen(a)
	if tb.Event(a, genA) != tb.At(a) || tb.Event(5, 0) != nil || tb.Event(-1, 0) != nil {
		t.Fatal("Event of a live flow or of no slot wrong")
	}
	tb.Remove(a)
	if tb.Live(a) || tb.At(a).fd != -1 || tb.Event(a, genA) != nil || tb.Len() != 1 {
		t.Fatalf("after Remove: live %v fd %d len %d", tb.Live(a), tb.At(a).fd, tb.Len())
	}
	if _, ok := tb.Lookup(key(1)); ok {
		t.Fatal("removed key still indexed")
	}
	c, _ := tb.Add(key(3))
	if c != a || tb.Gen(c) == genA || tb.Event(c, genA) != nil {
		t.Fatalf("freed slot not reused with a new generation: idx %d gen %d (was %d)", c, tb.Gen(c), genA)
	}
	var seen []int32
	for idx := range tb.All {
		seen = append(seen, idx)
		tb.Remove(idx) // allowed during the walk
	}
	if len(seen) != 2 || tb.Len() != 0 {
		t.Fatalf("All yielded %v, left %d", seen, tb.Len())
	}
}
