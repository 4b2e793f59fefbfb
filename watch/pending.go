package watch

import (
	"container/heap"
	"errors"
	"io/fs"
	"os"
	"time"
)

// pendEntry is a path that changed and is waiting to be quiet and settled.
type pendEntry struct {
	due     time.Time // when to look at it next
	last    time.Time // when its last event came
	heapDue time.Time // due of its live heap item; others for it are stale
	// The last size and mtime seen, and when they were first seen.
	seen   bool
	size   int64
	mtime  time.Time
	seenAt time.Time
}

type dueItem struct {
	due  time.Time
	path string
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// pendingSet holds the changed paths with a heap of when each is due. An
// entry whose due moves later keeps its heap item, which is pushed again
// when it surfaces, so a burst of events costs no heap work per event.
type pendingSet struct {
	m     map[string]*pendEntry
	h     dueHeap
	grown bool // m held many entries: make a new one when it empties, as maps never shrink
}

func newPendingSet() pendingSet { return pendingSet{m: make(map[string]*pendEntry)} }

func (p *pendingSet) len() int             { return len(p.m) }
func (p *pendingSet) has(path string) bool { _, ok := p.m[path]; return ok }

func (p *pendingSet) clear() {
	p.m, p.h, p.grown = make(map[string]*pendEntry), nil, false
}

// touch records an event for path at now and sets its due time, keeping
// what was seen of it.
func (p *pendingSet) touch(path string, now, due time.Time) {
	e := p.m[path]
	if e == nil {
		e = &pendEntry{}
		p.m[path] = e
		p.grown = p.grown || len(p.m) > 4096
	}
	e.last, e.due = now, due
	p.schedule(path, e)
}

// schedule makes sure a heap item surfaces no later than e.due.
func (p *pendingSet) schedule(path string, e *pendEntry) {
	if e.heapDue.IsZero() || e.due.Before(e.heapDue) {
		e.heapDue = e.due
		heap.Push(&p.h, dueItem{due: e.due, path: path})
	}
}

// next is when the earliest heap item is due.
func (p *pendingSet) next() (time.Time, bool) {
	if len(p.h) == 0 {
		return time.Time{}, false
	}
	return p.h[0].due, true
}

// flushDue hints every pending path that is quiet and settled by now, and
// puts the others back for later.
func (w *Watcher) flushDue(now time.Time) {
	p := &w.pend
	for len(p.h) > 0 && !p.h[0].due.After(now) {
		it := heap.Pop(&p.h).(dueItem)
		e := p.m[it.path]
		if e == nil || !it.due.Equal(e.heapDue) {
			continue // stale item
		}
		e.heapDue = time.Time{}
		if e.due.After(now) { // touched again meanwhile
			p.schedule(it.path, e)
			continue
		}
		if wait := w.settleWait(it.path, e, now); wait > 0 {
			e.due = now.Add(wait)
			p.schedule(it.path, e)
			continue
		}
		delete(p.m, it.path)
		if h := w.opts.emitHook; h != nil {
			h(it.path, now)
		}
		w.emit(Hint{Path: it.path})
	}
	if len(p.m) == 0 && p.grown {
		p.m, p.h, p.grown = make(map[string]*pendEntry), nil, false
	}
}

// settleWait is how much longer path must stay unchanged before its hint.
// A file counts as unchanged since its mtime, or since the watcher first saw
// its current size and mtime, whichever is longer ago; an mtime in the
// future counts for nothing. A missing path counts as unchanged since its
// last event: an editor that renames a file away and then writes it anew
// must not make the engine delete it on the target meanwhile. Directories
// and paths that cannot be stat'ed need no wait.
func (w *Watcher) settleWait(path string, e *pendEntry, now time.Time) time.Duration {
	settle := w.opts.Settle
	if settle <= 0 {
		return 0
	}
	fi, err := os.Lstat(w.abs(path))
	if errors.Is(err, fs.ErrNotExist) {
		return max(0, settle-now.Sub(e.last))
	}
	if err != nil || fi.IsDir() {
		return 0
	}
	size, mtime := fi.Size(), fi.ModTime()
	if !e.seen || size != e.size || !mtime.Equal(e.mtime) {
		// Taken after the stat, so no write that the stat saw is later.
		e.seen, e.size, e.mtime, e.seenAt = true, size, mtime, time.Now()
	}
	stable := max(0, now.Sub(e.seenAt))
	if age := now.Sub(mtime); age > stable {
		stable = age
	}
	if stable >= settle {
		return 0
	}
	return settle - stable
}

// readySet is the batch of hints waiting for the reader, one per path.
type readySet struct {
	list []Hint
	idx  map[string]int
}

func newReadySet() readySet { return readySet{idx: make(map[string]int)} }

func (r *readySet) len() int { return len(r.list) }

func (r *readySet) add(h Hint) {
	if i, ok := r.idx[h.Path]; ok {
		r.list[i].Rescan = r.list[i].Rescan || h.Rescan
		return
	}
	r.idx[h.Path] = len(r.list)
	r.list = append(r.list, h)
}

// reset starts a new batch; the old list now belongs to the reader.
func (r *readySet) reset() {
	if len(r.list) > 4096 {
		r.idx = make(map[string]int)
	} else {
		clear(r.idx)
	}
	r.list = nil
}
