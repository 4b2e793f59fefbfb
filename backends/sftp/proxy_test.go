package sftp

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy forwards connections to a server and can stop them dead (pause:
// no byte is read or written, the sockets stay open), cut them, or cut once
// a number of bytes went upstream. It counts bytes sent upstream.
type proxy struct {
	target string
	up     atomic.Int64 // bytes client -> server
	cutAt  atomic.Int64 // cut all links once up reaches this (0: never)
	// pauseAt pauses all links once up reaches it (0: never); paused is
	// closed when that happened.
	pauseAt atomic.Int64
	paused  chan struct{}

	mu    sync.Mutex
	cond  *sync.Cond
	links []*link
	wg    sync.WaitGroup
}

type link struct {
	client, server net.Conn
	paused         bool
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{target: target, paused: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	t.Cleanup(p.close)
	return p
}

// dial is a Config.Dial that routes through the proxy.
func (p *proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	var d net.Dialer
	sc, err := d.DialContext(ctx, "tcp", p.target)
	if err != nil {
		return nil, err
	}
	l := &link{client: b, server: sc}
	p.mu.Lock()
	p.links = append(p.links, l)
	p.mu.Unlock()
	p.wg.Add(2)
	go p.pump(l, b, sc, true)
	go p.pump(l, sc, b, false)
	return a, nil
}

func (p *proxy) pump(l *link, from, to net.Conn, upstream bool) {
	defer p.wg.Done()
	defer from.Close()
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		for l.paused {
			p.cond.Wait()
		}
		p.mu.Unlock()
		n, err := from.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for l.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if upstream {
				total := p.up.Add(int64(n))
				if pa := p.pauseAt.Load(); pa > 0 && total >= pa && p.pauseAt.CompareAndSwap(pa, 0) {
					p.pause()
					close(p.paused)
					p.mu.Lock()
					for l.paused { // this buffer is held back like the rest
						p.cond.Wait()
					}
					p.mu.Unlock()
				}
				if c := p.cutAt.Load(); c > 0 && total >= c {
					p.cutAt.Store(0)
					go p.cut()
					return
				}
			}
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pause stops every current link; later links flow.
func (p *proxy) pause() {
	p.mu.Lock()
	for _, l := range p.links {
		l.paused = true
	}
	p.mu.Unlock()
}

// cut closes every current link.
func (p *proxy) cut() {
	p.mu.Lock()
	links := p.links
	p.links = nil
	for _, l := range links {
		l.paused = false
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, l := range links {
		l.client.Close()
		l.server.Close()
	}
}

func (p *proxy) close() {
	p.cut()
	p.wg.Wait()
}
