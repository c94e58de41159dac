package flow

import (
	"fmt"

	"github.com/nsgate/nsgate/internal/packet"
)

// Key identifies a flow: the namespace's address and port, and the address
// and port it talks to. ICMP echo flows put the echo identifier in NSPort
// and leave DstPort zero, as conntrack does. It is pointer-free and
// family-neutral (tailscale's flowtrack.Tuple is the model), so map lookups
// neither allocate nor give the garbage collector pointers to chase.
type Key struct {
	NS, Dst         packet.Addr
	NSPort, DstPort uint16
}

// String is the flow as logs show it: namespace side first.
func (k Key) String() string {
	return fmt.Sprintf("%v:%d -> %v:%d", k.NS, k.NSPort, k.Dst, k.DstPort)
}

// Table is a flow table: slots that keep their index for the flow's life
// (epoll reports a flow by index), a generation per slot so that an event
// queued for a flow that has since gone is recognised, and an index by Key.
// A freed slot is reset to the empty value given to NewTable and reused
// before the table grows. A *F is valid until the next Add, which may move
// the slots. Only the event loop touches it.
type Table[F any] struct {
	slots  []slot[F]
	free   []int32
	index  map[Key]int32
	empty  F
	max    int
	budget *Budget // nil: only max applies
}

type slot[F any] struct {
	flow F
	key  Key
	gen  uint32
	used bool
}

// NewTable returns an empty table of at most max flows, whose free slots
// hold empty.
func NewTable[F any](max int, empty F) *Table[F] {
	return &Table[F]{index: make(map[Key]int32), empty: empty, max: max}
}

// Len returns the number of flows.
func (t *Table[F]) Len() int { return len(t.index) }

// Max returns the most flows the table holds.
func (t *Table[F]) Max() int { return t.max }

// SetBudget makes the table count its flows in b, shared with other
// tables: Full also when b is spent.
func (t *Table[F]) SetBudget(b *Budget) { t.budget = b }

// Full reports whether Add would exceed the table's size or its budget.
func (t *Table[F]) Full() bool {
	return len(t.index) >= t.max || t.budget != nil && t.budget.used >= t.budget.Max
}

// Lookup returns the slot of the flow k.
func (t *Table[F]) Lookup(k Key) (int32, bool) {
	idx, ok := t.index[k]
	return idx, ok
}

// Add takes a slot for a new flow k and returns its index and the flow, set
// to the empty value; the slot's generation moves on. The caller checks Full
// and that k is not there yet.
func (t *Table[F]) Add(k Key) (int32, *F) {
	var idx int32
	if n := len(t.free); n > 0 {
		idx = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.slots = append(t.slots, slot[F]{flow: t.empty})
		idx = int32(len(t.slots) - 1)
	}
	s := &t.slots[idx]
	s.key, s.used = k, true
	s.gen++
	t.index[k] = idx
	if t.budget != nil {
		t.budget.used++
	}
	return idx, &s.flow
}

// At returns the flow in slot idx, which the caller knows to be in use (or
// to hold the empty value, if the flow went away).
func (t *Table[F]) At(idx int32) *F { return &t.slots[idx].flow }

// Gen returns the generation of slot idx.
func (t *Table[F]) Gen(idx int32) uint32 { return t.slots[idx].gen }

// Key returns the key of the flow in slot idx.
func (t *Table[F]) Key(idx int32) Key { return t.slots[idx].key }

// Live reports whether slot idx holds a flow.
func (t *Table[F]) Live(idx int32) bool { return t.slots[idx].used }

// Event returns the flow an epoll event names, or nil if that flow has gone
// (freed earlier in the batch, or freed and reused).
func (t *Table[F]) Event(idx int32, gen uint32) *F {
	if idx < 0 || int(idx) >= len(t.slots) {
		return nil
	}
	s := &t.slots[idx]
	if !s.used || s.gen&genMask != gen&genMask {
		return nil
	}
	return &s.flow
}

// genMask is the part of a generation that epoll tokens carry (the engine
// keeps the top byte for the descriptor's kind).
const genMask = 0xffffff

// Remove frees slot idx: the flow leaves the index and the slot holds the
// empty value again.
func (t *Table[F]) Remove(idx int32) {
	s := &t.slots[idx]
	if !s.used {
		return
	}
	delete(t.index, s.key)
	if t.budget != nil {
		t.budget.used--
	}
	s.flow, s.key, s.used = t.empty, Key{}, false
	t.free = append(t.free, idx)
}

// All yields every flow in use with its slot index. Removing the flow
// yielded (or any other) during the walk is allowed.
func (t *Table[F]) All(yield func(int32, *F) bool) {
	for i := range t.slots {
		if t.slots[i].used && !yield(int32(i), &t.slots[i].flow) {
			return
		}
	}
}
