package loop

import "testing"

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

func TestAlloc(t *testing.T) {
	var slots []int
	var free []int32
	if a, b := Alloc(&slots, &free, 7), Alloc(&slots, &free, 7); a != 0 || b != 1 || len(slots) != 2 || slots[1] != 7 {
		t.Fatalf("new slots %d %d, table %v", a, b, slots)
	}
	free = append(free, 0)
	if c := Alloc(&slots, &free, 7); c != 0 || len(free) != 0 || len(slots) != 2 {
		t.Fatalf("freed slot not reused: got %d, free %v, table %v", c, free, slots)
	}
}
