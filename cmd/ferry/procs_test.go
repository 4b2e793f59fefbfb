package main

import (
	"runtime"
	"testing"

	"github.com/ferrysync/ferry/engine"
)

func TestOneProcWhileSending(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	if before < 2 {
		runtime.GOMAXPROCS(2)
		before = 2
	}
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	c := &engine.Counter{}
	p := newOneProcWhileSending(c)
	p.Totals(3, 30)
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Fatalf("GOMAXPROCS %d while sending, want 1", got)
	}
	if s := c.Snapshot(); s.TotalFiles != 3 || s.TotalBytes != 30 {
		t.Fatalf("totals did not reach the wrapped progress: %+v", s)
	}
	p.restore()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d after restore, want %d", got, before)
	}
	p.Totals(1, 1) // a second plan of the same run changes nothing
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d after a Totals past restore, want %d", got, before)
	}

	t.Setenv("GOMAXPROCS", "2")
	p = newOneProcWhileSending(c)
	p.Totals(1, 1)
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d with GOMAXPROCS set by the user, want it left at %d", got, before)
	}
	p.restore()
}
