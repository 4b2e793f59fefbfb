package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Fault is what FireAfter does once its byte count is reached.
type Fault int

const (
	// FaultReset ends every open connection, as if the link died.
	FaultReset Fault = iota + 1
	// FaultBlackHole turns the global black hole on; Pass turns it off.
	FaultBlackHole
)

func (f Fault) String() string {
	switch f {
	case FaultReset:
		return "reset"
	case FaultBlackHole:
		return "black hole"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// faults is one set of switches: the proxy's global set, or one connection's.
type faults struct {
	blackHole bool
	latency   time.Duration
	// budget is how many more bytes may go upstream before the connection is
	// cut; -1 is no limit.
	budget int64
	up     *rate.Limiter // nil: no bandwidth cap
	down   *rate.Limiter
}

func noFaults() faults { return faults{budget: -1} }

type trigger struct {
	remaining int64
	fault     Fault
}

// Proxy forwards connections from its own address to an upstream address,
// injecting the faults it is told to. All methods are safe for concurrent use
// and take effect on connections already open.
type Proxy struct {
	upstream string
	ln       net.Listener
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	bytesUp, bytesDown, accepted atomic.Int64

	mu      sync.Mutex
	global  faults
	limit   int64 // the global DataLimit, given to new connections; -1 none
	refuse  bool
	trig    *trigger
	conns   []*Conn
	changed chan struct{} // closed and replaced when a switch changes
	closed  bool
	nextID  int
}

// New starts a proxy on a free port of 127.0.0.1 that forwards to upstream
// ("host:port"). It fails when it cannot listen. Close stops it.
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy to %s: listen: %w", upstream, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		upstream: upstream, ln: ln, ctx: ctx, cancel: cancel,
		global: noFaults(), limit: -1, changed: make(chan struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's address, "127.0.0.1:PORT", for the client to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

// Close stops accepting, resets every connection and waits until all of the
// proxy's goroutines have returned. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := append([]*Conn(nil), p.conns...)
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, c := range conns {
		// Wake a cut that waits for its upstream to finish reading.
		p.mu.Lock()
		if c.upstream != nil {
			_ = c.upstream.SetDeadline(time.Now())
		}
		p.mu.Unlock()
		c.reset()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: try again shortly.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		p.accepted.Add(1)
		tc := client.(*net.TCPConn)
		p.mu.Lock()
		if p.refuse || p.closed {
			p.mu.Unlock()
			tc.Close()
			continue
		}
		p.nextID++
		c := &Conn{p: p, id: p.nextID, client: tc, own: noFaults(), done: make(chan struct{})}
		c.ctx, c.cancel = context.WithCancel(p.ctx)
		c.global = p.limit
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go c.run()
	}
}

// notify wakes every goroutine waiting on a switch. p.mu must be held.
func (p *Proxy) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Pass turns every fault off, globally and on every connection, and disarms
// FireAfter: traffic flows normally again, and held bytes are forwarded.
func (p *Proxy) Pass() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.global = noFaults()
	p.limit, p.refuse, p.trig = -1, false, nil
	for _, c := range p.conns {
		c.own = noFaults()
		c.global = -1
	}
	p.notify()
}

// Reset closes every open connection with a TCP reset on both sides. New
// connections are accepted as before.
func (p *Proxy) Reset() {
	for _, c := range p.Conns() {
		c.reset()
	}
}

// BlackHole stops forwarding in both directions on every connection, open
// or new, while keeping the sockets open: the client's reads and, once the
// buffers fill, its writes block. Bytes held meanwhile are forwarded after
// Pass, as a link that comes back delivers what TCP retransmits.
func (p *Proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.global.blackHole = true
	p.notify()
}

// RefuseNew makes the proxy accept new connections and close them at once,
// as a server refusing logins does. Open connections go on. Pass undoes it.
func (p *Proxy) RefuseNew() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = true
}

// DataLimit cuts each connection once n more bytes have gone upstream on
// it: open connections count from now, new ones from their start. The
// client sees a reset; the upstream reads exactly the bytes forwarded, then
// end-of-stream. The limit holds for new connections until Pass.
func (p *Proxy) DataLimit(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limit = n
	for _, c := range p.conns {
		c.global = n
	}
	p.notify()
}

// Latency delays each chunk forwarded, in both directions, by d; 0 turns it
// off. A chunk is what one read returned, so a delay also slows throughput.
func (p *Proxy) Latency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.global.latency = d
	p.notify()
}

// Bandwidth caps the proxy's throughput, all connections together, at
// bytesPerSec in each direction; 0 lifts the cap.
func (p *Proxy) Bandwidth(bytesPerSec int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.global.up, p.global.down = newLimiter(bytesPerSec), newLimiter(bytesPerSec)
	p.notify()
}

// FireAfter arms a one-shot fault: once n more bytes have gone upstream,
// all connections together, exactly n are forwarded and then f fires. For
// FaultReset the connection that carried byte n is cut as by DataLimit (its
// upstream reads exactly those bytes) and all others are reset. A new
// call replaces an armed one; Pass disarms it.
func (p *Proxy) FireAfter(n int64, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trig = &trigger{remaining: n, fault: f}
}

// ResetAfter is FireAfter(n, FaultReset): the link dies once after n more
// bytes upstream, e.g. in the middle of an upload.
func (p *Proxy) ResetAfter(n int64) { p.FireAfter(n, FaultReset) }

// Armed reports whether a FireAfter fault is still waiting to fire.
func (p *Proxy) Armed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.trig != nil
}

// BytesUp returns the bytes forwarded from clients to the upstream, in total.
func (p *Proxy) BytesUp() int64 { return p.bytesUp.Load() }

// BytesDown returns the bytes forwarded from the upstream to clients, in total.
func (p *Proxy) BytesDown() int64 { return p.bytesDown.Load() }

// Accepted returns how many connections the proxy has accepted, refused
// ones included.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Conns returns every connection forwarded so far, in accept order, closed
// ones included (see Conn.Closed).
func (p *Proxy) Conns() []*Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Conn(nil), p.conns...)
}

// Open returns the connections still open.
func (p *Proxy) Open() []*Conn {
	var out []*Conn
	for _, c := range p.Conns() {
		if !c.Closed() {
			out = append(out, c)
		}
	}
	return out
}

func newLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(burst(bytesPerSec)))
}

// burst is the largest piece forwarded at once under a cap: a twentieth of a
// second's worth keeps the flow smooth.
func burst(bytesPerSec int64) int64 { return max(bytesPerSec/20, 1) }
