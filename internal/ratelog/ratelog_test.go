package ratelog

import (
	"sync"
	"testing"
	"time"
)

type lines struct {
	mu sync.Mutex
	l  []string
}

func (s *lines) add(line string) { s.mu.Lock(); s.l = append(s.l, line); s.mu.Unlock() }
func (s *lines) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.l...)
}

func TestFold(t *testing.T) {
	var out lines
	l := New(out.add, 500*time.Millisecond)
	for i := 0; i < 10000; i++ {
		l.Printf("tcp: connect to %v: %v", i, "too many open files")
	}
	l.Printf("udp: %d", 1) // another format prints at once
	if got := out.get(); len(got) != 2 || got[0] != "tcp: connect to 0: too many open files" || got[1] != "udp: 1" {
		t.Fatalf("after the burst: %q", got)
	}
	time.Sleep(700 * time.Millisecond)
	got := out.get()
	if len(got) != 3 || got[2] != "tcp: connect to 9999: too many open files (9999 more like this)" {
		t.Fatalf("after the interval: %q", got)
	}
	// The window was quiet since the summary: the next one prints at once.
	time.Sleep(500 * time.Millisecond)
	l.Printf("tcp: connect to %v: %v", 7, "refused")
	if got := out.get(); len(got) != 4 || got[3] != "tcp: connect to 7: refused" {
		t.Fatalf("after a quiet interval: %q", got)
	}
	l.Printf("tcp: connect to %v: %v", 8, "refused")
	l.Close() // the pending repeat is summarised
	l.Printf("udp: %d", 2)
	if got := out.get(); len(got) != 5 || got[4] != "tcp: connect to 8: refused (1 more like this)" {
		t.Fatalf("after Close: %q", got)
	}
}

// A flood that lasts produces one line per interval per message, whatever
// its rate, from any number of goroutines.
func TestBound(t *testing.T) {
	var out lines
	l := New(out.add, 20*time.Millisecond)
	var wg sync.WaitGroup
	stop := time.Now().Add(200 * time.Millisecond)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				l.Printf("flood %d", i)
				l.Printf("other %d", i)
			}
		}()
	}
	wg.Wait()
	l.Close()
	// Per format: the first line, one summary per 20 ms interval, and
	// Close's; timers may run late, never more often.
	if n := len(out.get()); n < 4 || n > 2*(1+200/20+1) {
		t.Fatalf("%d lines for a 200 ms flood of 2 messages at 20 ms intervals", n)
	}
}
