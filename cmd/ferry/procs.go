package main

import (
	"os"
	"runtime"
	"sync"

	"github.com/ferrysync/ferry/engine"
)

// oneProcWhileSending is an engine.Progress that leaves the Go scheduler a
// single P once the plan is made and its transfers begin (Totals), until
// restore is called. The scan and the plan before it keep every P: the
// source is walked in parallel.
//
// It is for sftp:// targets. There a transfer is a stream of small
// hand-offs: each batch of the server's answers goes from x/crypto/ssh's
// reader to its mux, to ferry's session reader, to the upload waiting for
// it. With a second P idle, nearly every hand-off woke a thread that found
// the work already taken, slept again, and left the CPU to the next
// wake-up. Measured on 2 cores, 10,000 files of 4 KiB to a loopback sshd:
// 15,000-18,000 voluntary context switches and 0.50-0.62 s of CPU in
// ferry with two Ps, 6,500-8,000 and 0.37-0.42 s with one, for the same
// or a shorter run; a 1 GiB file took as long either way. The encryption
// of one connection is serial in x/crypto/ssh, so a second P bought
// little even there.
//
// A GOMAXPROCS set in the environment is the user's choice and is left
// alone.
type oneProcWhileSending struct {
	engine.Progress
	once sync.Once
	prev int // GOMAXPROCS before Totals; 0 if it was not changed
}

func newOneProcWhileSending(p engine.Progress) *oneProcWhileSending {
	return &oneProcWhileSending{Progress: p}
}

// Totals implements engine.Progress.
func (o *oneProcWhileSending) Totals(files int, bytes int64) {
	o.once.Do(func() {
		if _, set := os.LookupEnv("GOMAXPROCS"); !set {
			o.prev = runtime.GOMAXPROCS(1)
		}
	})
	o.Progress.Totals(files, bytes)
}

// restore gives the scheduler back the Ps Totals took.
func (o *oneProcWhileSending) restore() {
	o.once.Do(func() {}) // a later Totals changes nothing
	if o.prev > 1 {
		runtime.GOMAXPROCS(o.prev)
	}
}
