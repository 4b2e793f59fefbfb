package engine

import (
	"sync"
	"time"
)

// breaker is a target's circuit breaker: after threshold operations in a row
// failed because the target was unreachable it opens, and the target's queue
// stops handing out work (keeping it) until a probe finds the target back.
// Any success closes it and resets the count. Safe for concurrent use.
type breaker struct {
	threshold int

	mu       sync.Mutex
	streak   int
	open     bool
	openedAt time.Time
	changed  chan struct{} // closed and replaced on every open/close
}

func newBreaker(threshold int) *breaker {
	if threshold <= 0 {
		threshold = DefaultBreakAfter
	}
	return &breaker{threshold: threshold, changed: make(chan struct{})}
}

// failure counts an unreachable failure and reports whether this one opened
// the breaker.
func (b *breaker) failure() (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak++
	if !b.open && b.streak >= b.threshold {
		b.open = true
		b.openedAt = time.Now()
		b.signal()
		return true
	}
	return false
}

// success ends a streak and closes the breaker; it reports whether the
// breaker was open.
func (b *breaker) success() (closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak = 0
	if b.open {
		b.open = false
		b.signal()
		return true
	}
	return false
}

func (b *breaker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// state reports whether the breaker is open and a channel closed at its next
// change.
func (b *breaker) state() (open bool, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.changed
}

// downSince returns when the breaker opened, or the zero time when closed.
func (b *breaker) downSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return time.Time{}
	}
	return b.openedAt
}
