// Package ratelog folds repeated log messages, so that no traffic a
// namespace or a VM sends can make nsgate write more than a bounded number
// of lines: a flood that hits one error a million times logs it once, then
// once per interval with a count.
//
// Messages are told apart by their format string, not their arguments: a
// SYN flood to ten thousand ports is one message. The format strings are
// nsgate's own constants, so there are finitely many, and each can print at
// most 1 + 1/interval lines per second of flood: with the default interval
// of 10 s, 7 lines a minute each.
package ratelog

import (
	"fmt"
	"sync"
	"time"
)

// DefaultInterval is how often a repeated message is summarised.
const DefaultInterval = 10 * time.Second

// Logger folds messages and writes the result with its output function.
// Any goroutine may call it.
type Logger struct {
	out      func(line string)
	interval time.Duration
	mu       sync.Mutex
	keys     map[string]*fold
	closed   bool
}

// fold is one format string's window: while it is open, repeats are
// counted and the last one kept for the summary.
type fold struct {
	count int
	last  []any
	timer *time.Timer
}

// New returns a Logger that writes lines with out, folding repeats over
// interval (0: DefaultInterval).
func New(out func(line string), interval time.Duration) *Logger {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Logger{out: out, interval: interval, keys: map[string]*fold{}}
}

// Printf logs a message, or counts it if the same format was logged less
// than an interval ago.
func (l *Logger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if f := l.keys[format]; f != nil {
		f.count++
		f.last = args
		return
	}
	l.out(fmt.Sprintf(format, args...))
	f := &fold{}
	l.keys[format] = f
	f.timer = time.AfterFunc(l.interval, func() { l.expire(format) })
}

// expire ends format's window: the repeats, if any, are summarised in one
// line and a new window opens, so that a flood that goes on prints one line
// per interval; a quiet window closes, and the next message prints at once.
func (l *Logger) expire(format string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[format]
	if l.closed || f == nil {
		return
	}
	if f.count == 0 {
		delete(l.keys, format)
		return
	}
	l.summarise(format, f)
	f.count, f.last = 0, nil
	f.timer.Reset(l.interval)
}

func (l *Logger) summarise(format string, f *fold) {
	l.out(fmt.Sprintf(format, f.last...) + fmt.Sprintf(" (%d more like this)", f.count))
}

// Close writes the summaries still pending and stops the timers; later
// messages are dropped.
func (l *Logger) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	for format, f := range l.keys {
		f.timer.Stop()
		if f.count > 0 {
			l.summarise(format, f)
		}
	}
	l.keys = nil
}
