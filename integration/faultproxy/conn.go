package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Conn is one client connection through the proxy. Its switches add to the
// proxy's global ones: a connection is black-holed when either says so, the
// longer latency and both bandwidth caps apply. Methods are safe for
// concurrent use.
type Conn struct {
	p      *Proxy
	id     int
	client *net.TCPConn
	ctx    context.Context // cancelled when the connection closes
	cancel context.CancelFunc
	done   chan struct{}

	up, down atomic.Int64
	closed   atomic.Bool
	once     sync.Once

	// Guarded by p.mu.
	upstream *net.TCPConn
	own      faults
	global   int64 // what is left of the proxy's DataLimit; -1 none
}

var errClosed = errors.New("connection closed")

// ID numbers connections from 1 in accept order.
func (c *Conn) ID() int { return c.id }

// BytesUp returns the bytes forwarded from the client to the upstream.
func (c *Conn) BytesUp() int64 { return c.up.Load() }

// BytesDown returns the bytes forwarded from the upstream to the client.
func (c *Conn) BytesDown() int64 { return c.down.Load() }

// Closed reports whether the connection has ended, by reset or normally.
func (c *Conn) Closed() bool { return c.closed.Load() }

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Reset closes this connection with a TCP reset on both sides.
func (c *Conn) Reset() { c.reset() }

// Pass turns this connection's own faults off; global ones still apply.
func (c *Conn) Pass() {
	c.set(func(f *faults) { *f = noFaults() })
}

// BlackHole stops forwarding on this connection in both directions, keeping
// its sockets open, until Pass.
func (c *Conn) BlackHole() { c.set(func(f *faults) { f.blackHole = true }) }

// DataLimit resets this connection once n more bytes have gone upstream on it.
func (c *Conn) DataLimit(n int64) { c.set(func(f *faults) { f.budget = n }) }

// Latency delays each chunk on this connection by d; 0 turns it off.
func (c *Conn) Latency(d time.Duration) { c.set(func(f *faults) { f.latency = d }) }

// Bandwidth caps this connection at bytesPerSec in each direction; 0 lifts it.
func (c *Conn) Bandwidth(bytesPerSec int64) {
	c.set(func(f *faults) { f.up, f.down = newLimiter(bytesPerSec), newLimiter(bytesPerSec) })
}

func (c *Conn) set(change func(*faults)) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	change(&c.own)
	c.p.notify()
}

// reset closes both sockets with RST (SO_LINGER 0).
func (c *Conn) reset() {
	c.end(func(up *net.TCPConn) {
		if up != nil {
			_ = up.SetLinger(0)
			up.Close()
		}
		_ = c.client.SetLinger(0)
		c.client.Close()
	})
}

// cutGrace bounds how long a cut connection waits for the upstream to read
// what was forwarded and close its side.
const cutGrace = 5 * time.Second

// cut ends the connection at a byte count: the client gets a reset at once,
// while the upstream gets end-of-stream after the bytes already forwarded.
// A reset would make the upstream's kernel drop bytes it had received but
// its program had not read yet; this way the server reads exactly what the
// proxy counted. Whatever the upstream still sends is dropped.
func (c *Conn) cut() {
	c.end(func(up *net.TCPConn) {
		_ = c.client.SetLinger(0)
		c.client.Close()
		if up == nil {
			return
		}
		_ = up.CloseWrite()
		_ = up.SetReadDeadline(time.Now().Add(cutGrace))
		_, _ = io.Copy(io.Discard, up)
		up.Close()
	})
}

// finish closes both sockets normally once both directions have ended.
func (c *Conn) finish() {
	c.end(func(up *net.TCPConn) {
		if up != nil {
			up.Close()
		}
		c.client.Close()
	})
}

func (c *Conn) end(closeSockets func(up *net.TCPConn)) {
	c.once.Do(func() {
		c.p.mu.Lock()
		c.closed.Store(true)
		up := c.upstream
		c.p.mu.Unlock()
		c.cancel()
		closeSockets(up)
		close(c.done)
	})
}

func (c *Conn) run() {
	defer c.p.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.DialContext(c.ctx, "tcp", c.p.upstream)
	if err != nil {
		// The upstream refused or is gone: the client sees a reset, as it
		// would from a server that is down.
		c.reset()
		return
	}
	up := nc.(*net.TCPConn)
	c.p.mu.Lock()
	c.upstream = up
	c.p.mu.Unlock()
	if c.closed.Load() {
		// Reset while dialling: end did not see the upstream socket.
		_ = up.SetLinger(0)
		up.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.pipe(c.client, up, true)
	}()
	go func() {
		defer wg.Done()
		c.pipe(up, c.client, false)
	}()
	wg.Wait()
	c.finish()
}

// pipe copies src to dst through the faults until either side fails. An EOF
// is passed on as a half-close; any other failure resets the connection.
func (c *Conn) pipe(src, dst *net.TCPConn, upward bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if c.forward(dst, buf[:n], upward) != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.CloseWrite()
			} else {
				c.reset()
			}
			return
		}
	}
}

// forward writes chunk to dst, waiting out black holes, latency and bandwidth
// caps, and applying data limits and FireAfter at the exact byte.
func (c *Conn) forward(dst *net.TCPConn, chunk []byte, upward bool) error {
	for len(chunk) > 0 {
		if err := c.waitPass(); err != nil {
			return err
		}
		latency, limiters := c.shaping(upward)
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-c.done:
				t.Stop()
				return errClosed
			}
		}
		piece := chunk
		for _, l := range limiters {
			piece = piece[:min(len(piece), l.Burst())]
		}
		for _, l := range limiters {
			if err := l.WaitN(c.ctx, len(piece)); err != nil {
				return errClosed
			}
		}

		c.p.mu.Lock()
		if c.p.global.blackHole || c.own.blackHole {
			// Switched on while this piece waited: hold it.
			c.p.mu.Unlock()
			continue
		}
		n := int64(len(piece))
		var cut bool
		var fire Fault
		if upward {
			cutAt, fireAt := int64(-1), int64(-1)
			for _, b := range []int64{c.own.budget, c.global} {
				if b >= 0 && (cutAt < 0 || b < cutAt) {
					cutAt = b
				}
			}
			if c.p.trig != nil {
				fireAt = c.p.trig.remaining
			}
			if cutAt >= 0 && cutAt <= n {
				n, cut = cutAt, true
			}
			if fireAt >= 0 && fireAt <= n {
				n, cut, fire = fireAt, fireAt == cutAt, c.p.trig.fault
				c.p.trig = nil
			}
			if c.own.budget >= 0 {
				c.own.budget -= n
			}
			if c.global >= 0 {
				c.global -= n
			}
			if c.p.trig != nil {
				c.p.trig.remaining -= n
			}
		}
		c.p.mu.Unlock()

		if n > 0 {
			if _, err := dst.Write(piece[:n]); err != nil {
				c.reset()
				return err
			}
			if upward {
				c.up.Add(n)
				c.p.bytesUp.Add(n)
			} else {
				c.down.Add(n)
				c.p.bytesDown.Add(n)
			}
		}
		switch fire {
		case FaultReset:
			for _, o := range c.p.Conns() {
				if o != c {
					o.reset()
				}
			}
			c.cut()
			return errClosed
		case FaultBlackHole:
			c.p.BlackHole()
		}
		if cut {
			c.cut()
			return errClosed
		}
		chunk = chunk[n:]
	}
	return nil
}

// waitPass blocks while the connection is black-holed.
func (c *Conn) waitPass() error {
	for {
		c.p.mu.Lock()
		blocked := c.p.global.blackHole || c.own.blackHole
		changed := c.p.changed
		c.p.mu.Unlock()
		if !blocked {
			return nil
		}
		select {
		case <-changed:
		case <-c.done:
			return errClosed
		}
	}
}

// shaping returns the latency and bandwidth limiters that apply now.
func (c *Conn) shaping(upward bool) (time.Duration, []*rate.Limiter) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	var ls []*rate.Limiter
	for _, f := range []*faults{&c.p.global, &c.own} {
		l := f.down
		if upward {
			l = f.up
		}
		if l != nil {
			ls = append(ls, l)
		}
	}
	return max(c.p.global.latency, c.own.latency), ls
}
