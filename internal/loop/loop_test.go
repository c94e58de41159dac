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
