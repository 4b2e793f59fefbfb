package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ferrysync/ferry/backends"
)

// listWalk is a targetStream that lists the target as it is read: up to 8
// List calls run ahead of the merge, in the order the merge needs them, so
// that a run without state does not hold the target's tree either. What
// it returns, problems and partial files included, is what ListTarget
// returns, one entry at a time.
type listWalk struct {
	tw  treeWalk[backends.FileInfo]
	b   backends.Backend
	f   *Filter
	log *slog.Logger
	cur *backends.FileInfo
	// cancel cuts the List calls still running when the walk is closed
	// before its end: a failed scan must not wait on a slow server.
	cancel context.CancelFunc

	mu       sync.Mutex // guards partials, filled by the readers
	partials []backends.FileInfo
	problems []Problem // read only by the consumer
}

// newListWalk starts listing b. Close must be called.
func newListWalk(ctx context.Context, b backends.Backend, f *Filter, log *slog.Logger) *listWalk {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &listWalk{b: b, f: f, log: log}
	l.tw.ctx, l.cancel = context.WithCancel(ctx)
	l.tw.read = l.read
	l.tw.enter = func(_ string, e *backends.FileInfo) (string, bool) {
		return e.Path, e.IsDir() && !f.excludedSelf(e.Path, true)
	}
	l.tw.start(listConcurrency, 64)
	return l
}

// read lists dir, keeping what ListTarget keeps, sorted.
func (l *listWalk) read(dir string) ([]backends.FileInfo, []Problem, error) {
	list, err := l.b.List(l.tw.ctx, dir)
	if err != nil {
		if dir == "" {
			return nil, nil, fmt.Errorf("list target root: %w", err)
		}
		if l.tw.ctx.Err() == nil {
			l.log.Warn("list target: skipping directory", "path", dir, "err", err)
		}
		return nil, nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var problems []Problem
	out := list[:0]
	for _, e := range list {
		parent, name := backends.Split(e.Path)
		if parent != dir || backends.CheckName(name) != nil {
			problems = append(problems, Problem{Path: e.Path,
				Err: fmt.Errorf("listing of %q returned %q: %w", dir, e.Path, backends.ErrUnsafePath)})
			continue
		}
		if backends.IsPartialName(name) {
			l.mu.Lock()
			l.partials = append(l.partials, e)
			l.mu.Unlock()
			continue
		}
		out = append(out, e)
	}
	SortEntries(out)
	// A name listed twice would reach the merge twice, and its second
	// copy look like an entry the source lacks: keep one, and let the
	// problem stop the run's deletes.
	out = slices.CompactFunc(out, func(a, b backends.FileInfo) bool {
		if a.Path != b.Path {
			return false
		}
		problems = append(problems, Problem{Path: a.Path,
			Err: fmt.Errorf("listing of %q returned %q twice: %w", dir, a.Path, backends.ErrUnsafePath)})
		return true
	})
	return out, problems, nil
}

func (l *listWalk) next() (bool, error) {
	_, e, ok, err := l.tw.next(func(p Problem) { l.problems = append(l.problems, p) })
	l.cur = e
	return ok, err
}

func (l *listWalk) appendPath(b []byte) []byte       { return append(b, l.cur.Path...) }
func (l *listWalk) meta() (backends.FileInfo, error) { return *l.cur, nil }
func (l *listWalk) info() (backends.FileInfo, error) { return *l.cur, nil }
func (l *listWalk) incomplete() bool                 { return len(l.problems) > 0 }

// Close stops the listing, cancelling the List calls in flight, and
// returns the partial files found, sorted.
func (l *listWalk) Close() []backends.FileInfo {
	l.cancel()
	l.tw.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	SortEntries(l.partials)
	return l.partials
}
