package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPassCountsExactly(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	msg := random(3<<20 + 5)
	roundTrip(t, c, msg)
	n := int64(len(msg))
	if p.BytesUp() != n || p.BytesDown() != n {
		t.Fatalf("proxy counted up %d down %d, want %d each", p.BytesUp(), p.BytesDown(), n)
	}
	conns := p.Conns()
	if len(conns) != 1 || conns[0].BytesUp() != n || conns[0].BytesDown() != n || conns[0].ID() != 1 {
		t.Fatalf("per-connection counts wrong: %d conns", len(conns))
	}
	if p.Accepted() != 1 {
		t.Fatalf("accepted %d", p.Accepted())
	}
	// A half-close passes through: the upstream sees EOF, not a reset.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	ec := e.conn(t, 0)
	ec.wait(t)
	if ec.err != io.EOF {
		t.Fatalf("upstream read ended with %v, want EOF", ec.err)
	}
	waitFor(t, "connection closed", conns[0].Closed)
}

func TestReset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reset func(p *Proxy)
	}{
		{"global", func(p *Proxy) { p.Reset() }},
		{"one connection", func(p *Proxy) { p.Conns()[0].Reset() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEcho(t)
			p := newProxy(t, e.ln.Addr().String())
			c := dial(t, p)
			roundTrip(t, c, []byte("hello"))
			tc.reset(p)
			if err := readErr(c); !isReset(err) {
				t.Fatalf("client read after reset: %v, want connection reset", err)
			}
			ec := e.conn(t, 0)
			ec.wait(t)
			if !isReset(ec.err) {
				t.Fatalf("upstream read after reset: %v, want connection reset", ec.err)
			}
			// New connections still work.
			roundTrip(t, dial(t, p), []byte("again"))
		})
	}
}

func TestBlackHole(t *testing.T) {
	for _, tc := range []struct {
		name   string
		on     func(p *Proxy)
		global bool
	}{
		{"global", func(p *Proxy) { p.BlackHole() }, true},
		{"one connection", func(p *Proxy) { p.Conns()[0].BlackHole() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEcho(t)
			p := newProxy(t, e.ln.Addr().String())
			c := dial(t, p)
			roundTrip(t, c, []byte("before"))
			tc.on(p)
			msg := []byte("into the hole")
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("write into black hole: %v (the socket must stay open)", err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			var ne net.Error
			if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read from black hole: %v, want a timeout", err)
			}
			if got := e.conn(t, 0).got.Load(); got != int64(len("before")) {
				t.Fatalf("upstream got %d bytes through the black hole", got)
			}
			if p.Conns()[0].Closed() {
				t.Fatal("black hole closed the connection")
			}
			// A new connection: hangs if the hole is global, flows if not.
			c2 := dial(t, p)
			if _, err := c2.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			_ = c2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c2.Read(make([]byte, 1))
			if hung := errors.As(err, &ne) && ne.Timeout(); hung != tc.global {
				t.Fatalf("new connection read: %v; want hung=%v", err, tc.global)
			}
			// Pass releases what was held.
			p.Pass()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("after Pass read %q, %v; want %q", got, err, msg)
			}
		})
	}
}

func TestDataLimit(t *testing.T) {
	const limit = 100_003
	for _, tc := range []struct {
		name string
		set  func(p *Proxy)
	}{
		{"global", func(p *Proxy) { p.DataLimit(limit) }},
		{"one connection", func(p *Proxy) { p.Conns()[0].DataLimit(limit) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEcho(t)
			p := newProxy(t, e.ln.Addr().String())
			c := dial(t, p)
			roundTrip(t, c, []byte("warm up"))
			tc.set(p)
			expectReset(t, c, random(1<<20))
			ec := e.conn(t, 0)
			ec.wait(t)
			if got := ec.got.Load() - int64(len("warm up")); got != limit {
				t.Fatalf("upstream got %d bytes after the limit was set, want exactly %d", got, limit)
			}
			if got := p.Conns()[0].BytesUp() - int64(len("warm up")); got != limit {
				t.Fatalf("proxy counted %d bytes up, want %d", got, limit)
			}
		})
	}
}

func TestDataLimitGlobalHoldsForNewConnections(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	p.DataLimit(10)
	c := dial(t, p)
	expectReset(t, c, random(100))
	ec := e.conn(t, 0)
	ec.wait(t)
	if got := ec.got.Load(); got != 10 {
		t.Fatalf("upstream got %d, want 10", got)
	}
	p.Pass()
	roundTrip(t, dial(t, p), random(1000))
}

func TestResetAfterFiresOnce(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	const at = 1<<20 + 12_345
	c := dial(t, p)
	roundTrip(t, c, []byte("busy"))
	other := dial(t, p)
	roundTrip(t, other, []byte("idle"))
	p.ResetAfter(at)
	if !p.Armed() {
		t.Fatal("not armed")
	}
	expectReset(t, c, random(4<<20))
	ec := e.conn(t, 0)
	ec.wait(t)
	if got := ec.got.Load() - 4; got != at {
		t.Fatalf("upstream got %d bytes, want exactly %d", got, at)
	}
	// The link died: the idle connection went with it.
	if err := readErr(other); !isReset(err) {
		t.Fatalf("other connection: %v, want reset", err)
	}
	if p.Armed() {
		t.Fatal("still armed after firing")
	}
	// One shot: the next connection carries more than at bytes untouched.
	roundTrip(t, dial(t, p), random(at+1))
}

func TestFireAfterBlackHole(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	p.FireAfter(5000, FaultBlackHole)
	msg := random(20000)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	ec := e.conn(t, 0)
	waitFor(t, "5000 bytes upstream", func() bool { return ec.got.Load() >= 5000 })
	time.Sleep(100 * time.Millisecond)
	if got := ec.got.Load(); got != 5000 {
		t.Fatalf("upstream got %d, want 5000 then nothing", got)
	}
	p.Pass()
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("after Pass: %v", err)
	}
}

func TestLatency(t *testing.T) {
	const d = 80 * time.Millisecond
	for _, tc := range []struct {
		name string
		set  func(p *Proxy)
	}{
		{"global", func(p *Proxy) { p.Latency(d) }},
		{"one connection", func(p *Proxy) { p.Conns()[0].Latency(d) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEcho(t)
			p := newProxy(t, e.ln.Addr().String())
			c := dial(t, p)
			roundTrip(t, c, []byte("x"))
			tc.set(p)
			start := time.Now()
			roundTrip(t, c, []byte("y"))
			// Delayed on the way up and on the way down.
			if el := time.Since(start); el < 2*d {
				t.Fatalf("round trip took %v, want at least %v", el, 2*d)
			}
			// Five round trips would take 10d with the delay still on.
			p.Pass()
			start = time.Now()
			for range 5 {
				roundTrip(t, c, []byte("z"))
			}
			if el := time.Since(start); el >= 5*d {
				t.Fatalf("5 round trips after Pass took %v", el)
			}
		})
	}
}

func TestBandwidth(t *testing.T) {
	const bps = 400 << 10
	for _, tc := range []struct {
		name string
		set  func(p *Proxy)
	}{
		{"global", func(p *Proxy) { p.Bandwidth(bps) }},
		{"one connection", func(p *Proxy) { p.Conns()[0].Bandwidth(bps) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEcho(t)
			p := newProxy(t, e.ln.Addr().String())
			c := dial(t, p)
			roundTrip(t, c, []byte("x"))
			tc.set(p)
			msg := random(200 << 10)
			start := time.Now()
			roundTrip(t, c, msg)
			// 200 KiB at 400 KiB/s is 0.5 s, less the first burst.
			el := time.Since(start)
			if el < 400*time.Millisecond || el > 3*time.Second {
				t.Fatalf("200 KiB at 400 KiB/s took %v", el)
			}
			// 2 MiB would take 5 s with the cap still on.
			p.Pass()
			start = time.Now()
			roundTrip(t, c, random(2<<20))
			if el := time.Since(start); el > 2500*time.Millisecond {
				t.Fatalf("2 MiB after Pass took %v", el)
			}
		})
	}
}

func TestRefuseNew(t *testing.T) {
	e := newEcho(t)
	p := newProxy(t, e.ln.Addr().String())
	open := dial(t, p)
	roundTrip(t, open, []byte("a"))
	p.RefuseNew()
	refused := dial(t, p)
	if err := readErr(refused); err != io.EOF && !isReset(err) {
		t.Fatalf("refused connection read: %v, want EOF or reset", err)
	}
	roundTrip(t, open, []byte("open connections go on"))
	if p.Accepted() != 2 || len(p.Conns()) != 1 {
		t.Fatalf("accepted %d, forwarded %d; want 2 and 1", p.Accepted(), len(p.Conns()))
	}
	p.Pass()
	roundTrip(t, dial(t, p), []byte("b"))
}

func TestUpstreamDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The proxy takes its port first, so it cannot get the closed one.
	p := newProxy(t, ln.Addr().String())
	ln.Close()
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		if isReset(err) {
			return // reset before connect returned: seen as a reset too
		}
		t.Fatal(err)
	}
	defer c.Close()
	if err := readErr(c); !isReset(err) {
		t.Fatalf("read with the upstream down: %v, want reset", err)
	}
}

// TestConcurrentSwitching flips every switch while traffic flows on several
// connections; it is for the race detector and for Close under load.
func TestConcurrentSwitching(t *testing.T) {
	e := newEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
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
				_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
				for range 20 {
					if _, err := c.Write(buf[:100+i]); err != nil {
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
	switches := []func(){
		p.Pass, p.Reset, p.BlackHole, p.RefuseNew,
		func() { p.DataLimit(300) }, func() { p.Latency(time.Millisecond) },
		func() { p.Bandwidth(1 << 20) }, func() { p.ResetAfter(1000) },
		func() {
			for _, c := range p.Open() {
				c.BlackHole()
				c.DataLimit(50)
				c.Latency(time.Millisecond)
				c.Bandwidth(100 << 10)
				c.Pass()
			}
		},
	}
	r := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		switches[r.IntN(len(switches))]()
		time.Sleep(time.Millisecond)
	}
	// Close with connections in every state, then let the clients go.
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	close(stop)
	wg.Wait()
	if p.Accepted() == 0 || p.BytesUp() == 0 {
		t.Fatalf("no traffic: accepted %d, up %d", p.Accepted(), p.BytesUp())
	}
	for _, c := range p.Conns() {
		if !c.Closed() {
			t.Fatalf("connection %d open after Close", c.ID())
		}
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("proxy still accepts after Close")
	}
}
