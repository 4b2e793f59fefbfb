package sftp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// TestDeadLinkReleasesEveryBlockedCall black-holes the one connection while
// several uploads and metadata calls are blocked on it: once the keepalive
// has missed its answers the connection is closed and every call must
// return within interval x misses plus slack, each either done (on a new
// connection) or failed with a retryable error. A call left waiting on the
// dead link (the kernel would keep it for a quarter of an hour) fails the
// test. Neither the stall detector nor a context may end them.
func TestDeadLinkReleasesEveryBlockedCall(t *testing.T) {
	const (
		interval = 250 * time.Millisecond
		missed   = 4
		slack    = 3 * time.Second
	)
	e := newEnv(t, serverOpts{})
	cfg, p := proxied(t, e)
	cfg.Connections = 1
	cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed = interval, missed
	cfg.StallTimeout = time.Hour
	b := dial(t, cfg)
	ctx := context.Background()
	if err := b.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	p.pauseAt.Store(p.up.Load() + 6<<20)
	type result struct {
		name string
		took time.Duration
		err  error
	}
	calls := map[string]func() error{}
	for i := range 3 {
		src := newSource(16<<20, uint64(40+i))
		calls[fmt.Sprintf("upload %d", i)] = func() error {
			_, err := b.Upload(ctx, fmt.Sprintf("d/big%d", i), src)
			return err
		}
	}
	var start time.Time
	results := make(chan result, len(calls)+2)
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		defer wg.Done()
		err := f()
		results <- result{name, time.Since(start), err}
	}
	start = time.Now()
	for name, f := range calls {
		wg.Add(1)
		go run(name, f)
	}
	select {
	case <-p.paused:
	case <-time.After(30 * time.Second):
		t.Fatal("the link was never paused: the uploads sent less than 6 MiB")
	}
	paused := time.Now()
	// Two more calls join the dead link once it is dead.
	wg.Add(2)
	go run("stat", func() error { _, err := b.Stat(ctx, "d"); return err })
	go run("list", func() error { _, err := b.List(ctx, "d"); return err })
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	bound := interval*missed + slack
	select {
	case <-done:
	case <-time.After(bound + 10*time.Second):
		p.cut() // release them so the test can end
		<-done
		t.Fatalf("calls still blocked %v after the link died", time.Since(paused))
	}
	close(results)
	for r := range results {
		after := start.Add(r.took).Sub(paused)
		t.Logf("%s: returned %v after the black hole: %v", r.name, after.Round(time.Millisecond), r.err)
		if after > bound {
			t.Errorf("%s returned %v after the black hole, want within %v", r.name, after, bound)
		}
		if r.err != nil && backends.IsPermanent(r.err) {
			t.Errorf("%s: a dead link gave a permanent error: %v", r.name, r.err)
		}
	}
}
