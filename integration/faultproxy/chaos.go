package faultproxy

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Kind names a kind of fault that Chaos injects.
type Kind string

// The kinds of fault Chaos knows.
const (
	KindReset     Kind = "reset"      // every connection reset at once
	KindBlackHole Kind = "black hole" // bytes stop both ways for Hold
	KindDataLimit Kind = "data limit" // the link dies after a random number of bytes
	KindLatency   Kind = "latency"    // each chunk delayed by Latency for Hold
	KindBandwidth Kind = "bandwidth"  // throughput capped at Bandwidth for Hold
	KindRefuse    Kind = "refuse new" // new connections closed at once for Hold
)

// AllKinds lists every Kind.
var AllKinds = []Kind{KindReset, KindBlackHole, KindDataLimit, KindLatency, KindBandwidth, KindRefuse}

// ChaosOptions shape a run of random faults. The same options, seed
// included, give the same sequence of faults at the same moments.
type ChaosOptions struct {
	Seed uint64
	// Kinds to choose from; empty means AllKinds.
	Kinds []Kind
	// Interval is the mean time between faults (each gap is drawn from
	// 0.5 to 1.5 times it); default 1s.
	Interval time.Duration
	// Hold is how long a lasting fault stays before traffic passes again;
	// default Interval/2.
	Hold time.Duration
	// Latency, Bandwidth (bytes/s) and DataLimit (the most bytes a link
	// carries before it dies) size their faults; defaults 50ms, 256 KiB/s
	// and 1 MiB.
	Latency   time.Duration
	Bandwidth int64
	DataLimit int64
	// Log, when set, is told of each fault as it is injected.
	Log func(msg string)
}

// Chaos injects random faults into a proxy until stopped.
type Chaos struct {
	p    *Proxy
	o    ChaosOptions
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	counts map[Kind]int
}

// StartChaos starts injecting faults into p as opts say, from a goroutine
// of its own. Stop it before closing p.
func (p *Proxy) StartChaos(opts ChaosOptions) *Chaos {
	if len(opts.Kinds) == 0 {
		opts.Kinds = AllKinds
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Hold <= 0 {
		opts.Hold = opts.Interval / 2
	}
	if opts.Latency <= 0 {
		opts.Latency = 50 * time.Millisecond
	}
	if opts.Bandwidth <= 0 {
		opts.Bandwidth = 256 << 10
	}
	if opts.DataLimit <= 0 {
		opts.DataLimit = 1 << 20
	}
	c := &Chaos{p: p, o: opts, stop: make(chan struct{}), done: make(chan struct{}), counts: map[Kind]int{}}
	go c.run()
	return c
}

// Stop ends the chaos, lets traffic pass normally again (Pass) and returns
// how many faults of each kind were injected. Safe to call more than once.
func (c *Chaos) Stop() map[Kind]int {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	c.p.Pass()
	return c.Counts()
}

// Counts returns how many faults of each kind were injected so far. A data
// limit counts when it is armed; it fires only if that many bytes flow
// before the next fault.
func (c *Chaos) Counts() map[Kind]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[Kind]int, len(c.counts))
	for k, n := range c.counts {
		out[k] = n
	}
	return out
}

// wait sleeps for d and reports false if stopped first.
func (c *Chaos) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

func (c *Chaos) run() {
	defer close(c.done)
	r := rand.New(rand.NewPCG(c.o.Seed, 0xc4a05))
	for {
		gap := time.Duration(float64(c.o.Interval) * (0.5 + r.Float64()))
		if !c.wait(gap) {
			return
		}
		kind := c.o.Kinds[r.IntN(len(c.o.Kinds))]
		limit := 1 + r.Int64N(c.o.DataLimit)
		c.mu.Lock()
		c.counts[kind]++
		c.mu.Unlock()
		if c.o.Log != nil {
			msg := string(kind)
			if kind == KindDataLimit {
				msg = fmt.Sprintf("%s after %d bytes", kind, limit)
			}
			c.o.Log(msg)
		}
		lasting := true
		switch kind {
		case KindReset:
			c.p.Reset()
			lasting = false
		case KindDataLimit:
			c.p.ResetAfter(limit)
			lasting = false
		case KindBlackHole:
			c.p.BlackHole()
		case KindLatency:
			c.p.Latency(c.o.Latency)
		case KindBandwidth:
			c.p.Bandwidth(c.o.Bandwidth)
		case KindRefuse:
			c.p.RefuseNew()
		}
		if lasting {
			ok := c.wait(c.o.Hold)
			c.p.Pass()
			if !ok {
				return
			}
		}
	}
}
