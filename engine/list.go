package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/ferrysync/ferry/backends"
)

// listConcurrency is how many List calls a listing keeps in flight: enough
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
	// The walk hands directories out in path order, so the result needs
	// no sort of its own.
	l := newListWalk(ctx, b, f, log)
	for {
		ok, err := l.next()
		if err != nil {
			l.Close()
			if ctx.Err() != nil {
				return nil, nil, nil, fmt.Errorf("list target: %w", ctx.Err())
			}
			return nil, nil, nil, err
		}
		if !ok {
			break
		}
		entries = append(entries, *l.cur)
	}
	partials = l.Close()
	if ctx.Err() != nil {
		return nil, nil, nil, fmt.Errorf("list target: %w", ctx.Err())
	}
	return entries, partials, l.problems, nil
}

// StalePartials returns the partial files that no upload of p will resume:
// their keys do not match any planned upload's path, size and mtime (see
// backends.PartialKey). Remove them before p's deletes run, or a directory
// holding one cannot be removed.
func StalePartials(partials []backends.FileInfo, p Plan) []backends.FileInfo {
	if len(partials) == 0 {
		return nil
	}
	live := make(map[string]struct{})
	for _, op := range p.Ops {
		if op.Kind == OpUpload {
			if key, ok := backends.PartialKey(backends.PartialName(op.Path, op.Src.Size, op.Src.ModTime)); ok {
				live[key] = struct{}{}
			}
		}
	}
	var stale []backends.FileInfo
	for _, pf := range partials {
		key, ok := backends.PartialKey(pf.Path)
		if _, live := live[key]; !ok || !live {
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
