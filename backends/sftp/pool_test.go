package sftp

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolGrowsWithoutBlockingCalls lets only the first connection through
// and holds every later dial until its context ends: calls must all be
// served by the first connection meanwhile (never waiting for a dial), the
// pool must try to grow in the background, and Close must cancel those
// dials and return promptly.
func TestPoolGrowsWithoutBlockingCalls(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 3
	var dials atomic.Int32
	held := make(chan struct{}, 8)
	var d net.Dialer
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return d.DialContext(ctx, network, addr)
		}
		held <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustUpload(t, b, "f", newSource(100, 1))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	start := time.Now()
	for range 20 {
		wg.Go(func() {
			_, err := b.Stat(ctx, "f")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Stat while the other dials hang: %v", err)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("20 Stat calls took %v: they waited for the hanging dials", took)
	}
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the pool never tried to dial a second connection")
	}
	start = time.Now()
	b.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with dials hanging: it did not cancel them", took)
	}
}

// TestPoolStaysOneWithoutOverlap runs small uploads, folders, mtimes and
// stats one at a time: one connection serves them all, and no other is
// dialled (each would cost the server a session). Calls that overlap grow
// the pool.
func TestPoolStaysOneWithoutOverlap(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 3
	var dials atomic.Int32
	var d net.Dialer
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	b := dial(t, cfg)
	ctx := t.Context()
	for i := range 5 {
		mustUpload(t, b, "d/f", newSource(100+i, uint64(i)))
		if err := b.Mkdir(ctx, "e"); err != nil {
			t.Fatal(err)
		}
		if err := b.SetModTime(ctx, "d/f", time.Unix(1e9, 0)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(ctx, "d/f"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.List(ctx, "d"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a background dial would have started
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled for calls one at a time, want 1", n)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { b.Stat(ctx, "d/f") })
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for dials.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("20 overlapping calls never grew the pool")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
