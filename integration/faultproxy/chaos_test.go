package faultproxy

import (
	"net"
	"sync"
	"testing"
	"time"
)

func TestChaos(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())

	// Clients keep talking, reconnecting after every failure.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
				for {
					if _, err := c.Write(buf[:1000]); err != nil {
						break
					}
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			}
		}()
	}

	var mu sync.Mutex
	var logged []string
	ch := p.StartChaos(ChaosOptions{
		Seed: 7, Interval: 10 * time.Millisecond, Hold: 5 * time.Millisecond, DataLimit: 5000,
		Log: func(m string) { mu.Lock(); logged = append(logged, m); mu.Unlock() },
	})
	time.Sleep(time.Second)
	counts := ch.Stop()
	ch.Stop()
	close(stop)
	wg.Wait()

	total := 0
	for _, k := range AllKinds {
		if counts[k] == 0 {
			t.Errorf("no %s in a second of faults every ~10ms: %v", k, counts)
		}
		total += counts[k]
	}
	mu.Lock()
	n := len(logged)
	mu.Unlock()
	if total != n || total < 20 {
		t.Fatalf("%d faults counted, %d logged; want equal and at least 20", total, n)
	}
	if p.Accepted() < 10 {
		t.Fatalf("only %d connections under chaos", p.Accepted())
	}
	// Stop leaves the proxy passing traffic.
	roundTrip(t, dial(t, p), random(100<<10))
}

func TestChaosIsSeeded(t *testing.T) {
	seq := func() []string {
		e := newEcho(t)
		p := newProxy(t, e.ln.Addr().String())
		var mu sync.Mutex
		var got []string
		ch := p.StartChaos(ChaosOptions{Seed: 99, Interval: 2 * time.Millisecond, Hold: time.Millisecond,
			Log: func(m string) { mu.Lock(); got = append(got, m); mu.Unlock() }})
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= 15 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		ch.Stop()
		return got[:15]
	}
	a, b := seq(), seq()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("fault %d: %q then %q with the same seed", i, a[i], b[i])
		}
	}
}
