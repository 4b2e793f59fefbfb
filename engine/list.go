package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ferrysync/ferry/backends"
)

// listConcurrency is how many List calls ListTarget keeps in flight: enough
// to hide a remote target's round trips, few enough not to crowd its server.
const listConcurrency = 8

// ListTarget walks the target recursively with up to 8 List calls in flight
// and returns its entries sorted in ComparePaths order, never descending
// into a symlink. Partial files are returned apart (partials), so stale ones
// can be cleaned up (see StalePartials). Excluded directories are returned
// but not entered; excluded entries are returned too, so that the planner
// knows a directory holding them is not empty (it never touches them).
//
// A directory that cannot be listed, or an entry that is not a direct child
// with a safe name, is a problem: it is returned and the walk goes on, and
// the caller must plan no deletes (PlanOptions.Incomplete). err is non-nil
// only if the root cannot be listed (a missing root wraps
// backends.ErrNotExist) or ctx is cancelled (wrapping ctx.Err()). b must be
// safe for concurrent use, as every Backend is.
func ListTarget(ctx context.Context, b backends.Backend, f *Filter, log *slog.Logger) (entries, partials []backends.FileInfo, problems []Problem, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := b.List(ctx, "")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("list target root: %w", err)
	}
	l := &lister{ctx: ctx, b: b, f: f, log: log}
	l.cond = sync.NewCond(&l.mu)
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	l.mu.Lock()
	l.add("", root)
	l.mu.Unlock()
	var wg sync.WaitGroup
	for range listConcurrency {
		wg.Go(l.work)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("list target: %w", err)
	}
	SortEntries(l.entries)
	SortEntries(l.partials)
	slices.SortFunc(l.problems, func(a, b Problem) int { return ComparePaths(a.Path, b.Path) })
	return l.entries, l.partials, l.problems, nil
}

// lister is a pool of workers sharing a stack of directories to list; a
// stack rather than a queue keeps it short on wide trees.
type lister struct {
	ctx context.Context
	b   backends.Backend
	f   *Filter
	log *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond // signalled when todo grows, a worker goes idle, or ctx ends
	todo     []string
	active   int // workers inside a List call
	entries  []backends.FileInfo
	partials []backends.FileInfo
	problems []Problem
}

func (l *lister) work() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for len(l.todo) == 0 && l.active > 0 && l.ctx.Err() == nil {
			l.cond.Wait()
		}
		if len(l.todo) == 0 || l.ctx.Err() != nil {
			// Nothing left and nobody who could add more, or cancelled.
			l.cond.Broadcast()
			return
		}
		dir := l.todo[len(l.todo)-1]
		l.todo = l.todo[:len(l.todo)-1]
		l.active++
		l.mu.Unlock()
		list, err := l.b.List(l.ctx, dir)
		l.mu.Lock()
		l.active--
		switch {
		case err == nil:
			l.add(dir, list)
		case l.ctx.Err() == nil:
			l.log.Warn("list target: skipping directory", "path", dir, "err", err)
			l.problems = append(l.problems, Problem{Path: dir, Err: fmt.Errorf("list %s: %w", dir, err)})
		}
		l.cond.Broadcast()
	}
}

// add records the listing of dir and queues its subdirectories. l.mu is held.
func (l *lister) add(dir string, list []backends.FileInfo) {
	for _, e := range list {
		parent, name := backends.Split(e.Path)
		if parent != dir || backends.CheckName(name) != nil {
			l.problems = append(l.problems, Problem{Path: e.Path,
				Err: fmt.Errorf("listing of %q returned %q: %w", dir, e.Path, backends.ErrUnsafePath)})
			continue
		}
		if backends.IsPartialName(name) {
			l.partials = append(l.partials, e)
			continue
		}
		l.entries = append(l.entries, e)
		if e.IsDir() && !l.f.excludedSelf(e.Path, true) {
			l.todo = append(l.todo, e.Path)
		}
	}
}

// StalePartials returns the partial files that no upload of p will resume:
// their names do not match any planned upload's path, size and mtime (see
// backends.PartialName). Remove them before p's deletes run, or a directory
// holding one cannot be removed.
func StalePartials(partials []backends.FileInfo, p Plan) []backends.FileInfo {
	if len(partials) == 0 {
		return nil
	}
	live := make(map[string]struct{})
	for _, op := range p.Ops {
		if op.Kind == OpUpload {
			live[backends.PartialName(op.Path, op.Src.Size, op.Src.ModTime)] = struct{}{}
		}
	}
	var stale []backends.FileInfo
	for _, pf := range partials {
		if _, ok := live[pf.Path]; !ok {
			stale = append(stale, pf)
		}
	}
	return stale
}

// ComparePaths orders slash-separated paths element by element, which is
// byte order with '/' below every other byte. In this order a directory's
// whole subtree follows it without a gap ("a", "a/b", "a-c"; plain string
// order puts "a-c" between them), which is what lets MakePlan merge two
// trees in one pass.
func ComparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		switch {
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		}
		return 1
	}
	return cmp.Compare(len(a), len(b))
}

// SortEntries sorts es by Path in ComparePaths order.
func SortEntries(es []backends.FileInfo) {
	slices.SortFunc(es, func(a, b backends.FileInfo) int { return ComparePaths(a.Path, b.Path) })
}
