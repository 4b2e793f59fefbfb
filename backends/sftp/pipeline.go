package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// pipeline writes src[start:end) to one partial file through one or more
// open handles (one per connection): pkg/sftp handles by `workers`
// goroutines with one request in flight each, handles of ferry's own
// session by a few streamers with many each. Chunks are handed out in
// offset order and a new one may only start
// within `window` chunks of the lowest unfinished one, so whatever the
// failure, every byte below (size of the partial - window*chunk) was
// written: the invariant backends.ResumeOffset relies on. This holds across
// handles too, which is what makes splitting one file over two connections
// safe to resume.
type pipeline struct {
	src        backends.Source
	files      []io.WriterAt
	conns      []*conn
	start, end int64
	chunk      int64
	window     int64 // in chunks
	workers    int
	stall      time.Duration
	grace      time.Duration // after cancel, how long in-flight writes may take before their connections are closed

	mu     sync.Mutex
	cond   *sync.Cond
	next   int64 // next chunk index to hand out
	low    int64 // lowest chunk index not yet finished
	done   []bool
	err    error
	stuck  bool
	acked  atomic.Int64
	failAt *conn // connection whose write failed first
}

// writeErr is a failed write request, with the connection it went over.
type writeErr struct {
	c   *conn
	off int64
	err error
}

func (e *writeErr) Error() string { return fmt.Sprintf("write at %d: %v", e.off, e.err) }
func (e *writeErr) Unwrap() error { return e.err }

// errStalled marks an upload aborted by the stall detector.
var errStalled = errors.New("upload stalled")

// run writes the range and returns the bytes acknowledged by the server. It
// returns once every request it started has finished; on ctx cancel or a
// stall it closes the connections if requests do not finish soon, which
// fails them.
func (pl *pipeline) run(ctx context.Context) (int64, error) {
	total := (pl.end - pl.start + pl.chunk - 1) / pl.chunk
	if total == 0 {
		return 0, nil
	}
	pl.window = max(1, min(pl.window, total))
	pl.cond = sync.NewCond(&pl.mu)
	pl.done = make([]bool, pl.window)
	finished := make(chan struct{})
	var wg sync.WaitGroup
	for fi, f := range pl.files {
		rf, ok := f.(*rawFile)
		if !ok {
			continue
		}
		for range streamers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pl.streamer(fi, rf, total, max(1, int(pl.window)/streamers))
			}()
		}
	}
	for i := range min(int64(pl.workers), total) {
		if _, ok := pl.files[int(i)%len(pl.files)].(*rawFile); ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pl.worker(int(i)%len(pl.files), total)
		}()
	}
	var wdg sync.WaitGroup
	wdg.Add(1)
	go func() {
		defer wdg.Done()
		pl.watch(ctx, finished)
	}()
	wg.Wait()
	close(finished)
	wdg.Wait()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.acked.Load(), pl.err
}

func (pl *pipeline) worker(fi int, total int64) {
	f := pl.files[fi]
	buf := make([]byte, pl.chunk)
	for {
		idx, ok := pl.take(total)
		if !ok {
			return
		}
		off, n, ok := pl.readChunk(buf, idx)
		if !ok {
			return
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			pl.fail(&writeErr{c: pl.conns[fi], off: off, err: err}, pl.conns[fi])
			return
		}
		pl.complete(idx, n)
	}
}

// readChunk reads chunk idx of the source into buf and returns where it
// goes; a short read means the source changed, which fails the pipeline
// (ok is false).
func (pl *pipeline) readChunk(buf []byte, idx int64) (off, n int64, ok bool) {
	off = pl.start + idx*pl.chunk
	n = min(pl.chunk, pl.end-off)
	m, err := pl.src.ReadAt(buf[:n], off)
	if int64(m) < n {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("source ends before %d bytes: %w", pl.src.Size(), backends.ErrSourceChanged)
		}
		pl.fail(fmt.Errorf("read source at %d: %w", off, err), nil)
		return off, n, false
	}
	return off, n, true
}

// streamers is how many goroutines write through one handle of ferry's own
// session: a few, so that reading the source and encrypting overlap, each
// with many requests in flight.
var streamers = 4

// streamer writes through a handle of ferry's own session: it queues
// writes while the window allows (up to limit of its own), sends them
// together, and reaps the answers in order, so a request in flight costs
// no goroutine and an answer no hand-off of its own.
func (pl *pipeline) streamer(fi int, f *rawFile, total int64, limit int) {
	type flight struct {
		call   *rawCall
		idx, n int64
	}
	var q []flight
	buf := make([]byte, pl.chunk)
	for {
		queued := false
		for len(q) < limit {
			idx, ok := pl.tryTake(total)
			if !ok {
				break
			}
			off, n, ok := pl.readChunk(buf, idx)
			if !ok {
				break
			}
			// The queued request holds its own copy of buf.
			q = append(q, flight{f.rs.write(f.h, off, buf[:n]), idx, n})
			queued = true
		}
		if queued {
			f.rs.flush()
		}
		if len(q) == 0 {
			if !pl.waitWork(total) {
				return
			}
			continue
		}
		<-q[0].call.done
		if err := q[0].call.status(); err != nil {
			pl.fail(&writeErr{c: pl.conns[fi], off: pl.start + q[0].idx*pl.chunk, err: err}, pl.conns[fi])
			// The pipeline returns once nothing of it is in flight (or
			// its connection is closed, which answers everything).
			for _, fl := range q[1:] {
				<-fl.call.done
			}
			return
		}
		pl.complete(q[0].idx, q[0].n)
		q = q[1:]
	}
}

// tryTake is take without waiting: false when the window is full, the
// work is all handed out or the pipeline failed.
func (pl *pipeline) tryTake(total int64) (int64, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.err != nil || pl.next >= total || pl.next-pl.low >= pl.window {
		return 0, false
	}
	pl.next++
	return pl.next - 1, true
}

// waitWork waits, with nothing of the caller's in flight, until a chunk
// can be handed out; false once none will be.
func (pl *pipeline) waitWork(total int64) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for pl.err == nil && pl.next < total && pl.next-pl.low >= pl.window {
		pl.cond.Wait()
	}
	return pl.err == nil && pl.next < total
}

// take hands out the next chunk index once it lies within the window.
func (pl *pipeline) take(total int64) (int64, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for pl.err == nil && pl.next < total && pl.next-pl.low >= pl.window {
		pl.cond.Wait()
	}
	if pl.err != nil || pl.next >= total {
		return 0, false
	}
	pl.next++
	return pl.next - 1, true
}

func (pl *pipeline) complete(idx, n int64) {
	pl.mu.Lock()
	pl.done[idx%pl.window] = true
	for pl.low < pl.next && pl.done[pl.low%pl.window] {
		pl.done[pl.low%pl.window] = false
		pl.low++
	}
	pl.acked.Add(n)
	pl.cond.Broadcast()
	pl.mu.Unlock()
}

// fail records the first error and stops handing out work.
func (pl *pipeline) fail(err error, c *conn) {
	pl.mu.Lock()
	if pl.err == nil {
		pl.err = err
		pl.failAt = c
	}
	pl.cond.Broadcast()
	pl.mu.Unlock()
}

// watch is the stall detector and the cancel handler.
func (pl *pipeline) watch(ctx context.Context, finished <-chan struct{}) {
	tick := min(max(pl.stall/8, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	last, lastAt := pl.acked.Load(), time.Now()
	for {
		select {
		case <-finished:
			return
		case <-ctx.Done():
			pl.fail(ctx.Err(), nil)
			select {
			case <-finished:
			case <-time.After(pl.grace):
				pl.killAll("upload cancelled with writes still in flight")
			}
			return
		case now := <-t.C:
			if a := pl.acked.Load(); a != last {
				last, lastAt = a, now
				continue
			}
			if now.Sub(lastAt) >= pl.stall {
				pl.mu.Lock()
				pl.stuck = true
				pl.mu.Unlock()
				pl.fail(fmt.Errorf("%w: no bytes acknowledged for %s: %w", errStalled, now.Sub(lastAt).Round(time.Millisecond), backends.ErrUnreachable), nil)
				pl.killAll(fmt.Sprintf("upload stalled for %s", now.Sub(lastAt).Round(time.Millisecond)))
				<-finished
				return
			}
		}
	}
}

func (pl *pipeline) killAll(why string) {
	for _, c := range pl.conns {
		c.abandon(why)
	}
}
