package engine

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// itemKind says what a queued change asks of a target.
type itemKind int

const (
	// itemPath brings one path to the source's current state: a file is
	// uploaded or fixed, a directory's whole subtree is compared, a path the
	// source lacks is deleted (mirror mode).
	itemPath itemKind = iota
	// itemRename moves from to path on the target, then handles path as
	// itemPath does.
	itemRename
	// itemFull compares path's whole subtree, listing the target; at the root
	// it may use a source scan shared by every target.
	itemFull
)

func (k itemKind) String() string {
	switch k {
	case itemPath:
		return "sync"
	case itemRename:
		return "rename"
	case itemFull:
		return "rescan"
	}
	return "?"
}

// item is one queued change for one target. A queue holds at most one
// pending item per path; later changes to that path merge into it.
type item struct {
	kind   itemKind
	path   string
	from   string            // itemRename: the old path
	expect backends.FileInfo // itemRename: what from held in the source
	scan   *sharedScan       // itemFull of the root: a scan to reuse while fresh

	// goneSeen is set once the path was found missing in the source; it
	// is deleted when still missing after JobOptions.DeleteDelay.
	goneSeen  bool
	attempts  int
	notBefore time.Time
	dead      bool // superseded or taken; left in order until swept
}

// covers reports whether ancestor is p itself or a directory above it.
func covers(ancestor, p string) bool {
	return ancestor == "" || p == ancestor || strings.HasPrefix(p, ancestor+"/")
}

// paths lists what an item touches on the target.
func (it *item) paths() []string {
	if it.kind == itemRename {
		return []string{it.path, it.from}
	}
	return []string{it.path}
}

func (it *item) conflicts(o *item) bool {
	for _, a := range it.paths() {
		for _, b := range o.paths() {
			if covers(a, b) || covers(b, a) {
				return true
			}
		}
	}
	return false
}

// queue is one target's coalescing work queue. Items are handed out in
// arrival order, except that an item waits while a retry delay runs or while
// an item touching an overlapping path (the same path, an ancestor or a
// descendant) is in flight, so two workers never race on one subtree. Safe
// for concurrent use.
type queue struct {
	mu       sync.Mutex
	pending  map[string]*item
	order    []*item
	inflight map[*item]struct{}
	changed  chan struct{} // closed and replaced whenever work may be ready
}

func newQueue() *queue {
	return &queue{
		pending:  make(map[string]*item),
		inflight: make(map[*item]struct{}),
		changed:  make(chan struct{}),
	}
}

// signal wakes every waiting worker; q.mu must be held.
func (q *queue) signal() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// push queues it, merging it with a pending item for the same path. An item
// whose path lies under a pending (not in-flight) item is dropped: that item
// will look at the whole subtree after this change happened. A new change
// clears any retry delay of the item it merges into, and its wait for the
// path to stay gone.
func (q *queue) push(it *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pushLocked(it, true)
	q.signal()
}

func (q *queue) pushLocked(it *item, fresh bool) {
	// A pending ancestor will compare this path too; a rename is kept all
	// the same, since a move is far cheaper than the copy the ancestor's
	// comparison would make.
	for p := it.path; p != "" && it.kind != itemRename; {
		p, _ = backends.Split(p)
		if _, ok := q.pending[p]; ok {
			return
		}
	}
	if it.kind == itemRename {
		// The move takes care of the old path too.
		if old, ok := q.pending[it.from]; ok && old.kind == itemPath {
			old.dead = true
			delete(q.pending, it.from)
		}
	}
	old, ok := q.pending[it.path]
	if !ok {
		q.pending[it.path] = it
		q.order = append(q.order, it)
		return
	}
	switch {
	case it.kind == itemFull || old.kind == itemFull:
		if it.kind == itemFull && it.scan != nil {
			old.scan = it.scan
		}
		old.kind = itemFull
	case it.kind == itemRename:
		old.kind, old.from, old.expect = itemRename, it.from, it.expect
	}
	if fresh && it.notBefore.IsZero() {
		old.attempts = 0
		old.notBefore = time.Time{}
		// The wait for a path to stay gone starts again: a rename merged
		// into a delete that had waited out its delay would otherwise move
		// the file away at once, maybe in the instant an editor's save has
		// no file under the old name.
		old.goneSeen = false
	}
}

// later puts an item back to be handed out after delay, as it was.
func (q *queue) later(it *item, delay time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it.notBefore = time.Now().Add(delay)
	it.dead = false
	if _, ok := q.pending[it.path]; ok {
		return // a newer change looks again anyway
	}
	q.pushLocked(it, false)
	q.signal()
}

// retry puts a failed item back to be handed out after delay, unless a newer
// change to its path is already pending, in which case that one carries on.
func (q *queue) retry(it *item, delay time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it.attempts++
	it.notBefore = time.Now().Add(delay)
	it.dead = false
	if cur, ok := q.pending[it.path]; ok {
		if it.kind == itemFull {
			cur.kind = itemFull
		}
		return
	}
	q.pushLocked(it, false)
	q.signal()
}

// next blocks until an item may be handed out and returns it, or returns
// nil once ctx is done. The caller must call done with it.
func (q *queue) next(ctx context.Context) *item {
	for {
		q.mu.Lock()
		it, wait := q.pickLocked(time.Now())
		changed := q.changed
		q.mu.Unlock()
		if it != nil {
			return it
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// pickLocked takes the first ready item; wait is how long until a delayed
// one becomes ready (0: none is delayed).
func (q *queue) pickLocked(now time.Time) (*item, time.Duration) {
	var wait time.Duration
	live := q.order[:0]
	var picked *item
	for _, it := range q.order {
		if it.dead {
			continue
		}
		live = append(live, it)
		if picked != nil {
			continue
		}
		if d := it.notBefore.Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		busy := false
		for f := range q.inflight {
			if f.conflicts(it) {
				busy = true
				break
			}
		}
		if busy {
			continue
		}
		picked = it
		live = live[:len(live)-1]
	}
	clear(q.order[len(live):])
	q.order = live
	if picked != nil {
		delete(q.pending, picked.path)
		picked.dead = true
		q.inflight[picked] = struct{}{}
	}
	return picked, wait
}

// done ends an item handed out by next.
func (q *queue) done(it *item) {
	q.mu.Lock()
	delete(q.inflight, it)
	q.signal()
	q.mu.Unlock()
}

// counts returns the items pending and in flight.
func (q *queue) counts() (pending, inflight int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending), len(q.inflight)
}
