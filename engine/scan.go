package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"

	"github.com/ferrysync/ferry/backends"
)

// ErrSpecialFile marks a source entry that is neither a regular file, a
// directory nor a symlink (socket, fifo, device): ferry skips it.
var ErrSpecialFile = errors.New("special file (socket, fifo or device) skipped")

// Incomplete reports whether problems from Scan or ListTarget mean that
// entries may be missing from a list, so that nothing may be deleted
// (PlanOptions.Incomplete). Skipped special files do not count: they were
// read, and are only not copied.
func Incomplete(problems []Problem) bool {
	for _, p := range problems {
		if !errors.Is(p.Err, ErrSpecialFile) {
			return true
		}
	}
	return false
}

// Scan walks the local directory root and returns its entries sorted by Path
// in ComparePaths order (directories included, the root itself not), never
// following a symlink; the root itself may be a symlink to a directory.
// Excluded paths and ferry's partial files are left out, and excluded
// directories are not entered. A few goroutines read directories side by
// side, a bounded number ahead of the one being returned.
//
// Problems with single entries (unreadable directories or files, names that
// fail backends.CheckName, special files such as sockets, fifos and devices)
// are returned and the walk goes on. err is non-nil only if root itself
// cannot be read (a missing root gives an error wrapping fs.ErrNotExist) or
// ctx is cancelled (an error wrapping ctx.Err()). Scan reads only; it is
// safe to run several at once.
func Scan(ctx context.Context, root string, f *Filter, log *slog.Logger) ([]backends.FileInfo, []Problem, error) {
	var out []backends.FileInfo
	problems, err := walkSource(ctx, root, f, log, nil, func(dir string, e *scanEntry) error {
		out = append(out, e.info(backends.Join(dir, e.name)))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, problems, nil
}

// walkSource checks root and calls fn for each entry Scan would return, in
// the same order, with the entry's parent directory. fn must not keep e;
// an error from fn ends the walk and is returned as it is. Other errors
// are those of Scan.
// A walk of the same root and filter started earlier (pre, see preWalk)
// is taken over instead of starting one.
func walkSource(ctx context.Context, root string, f *Filter, log *slog.Logger, pre *preWalk, fn func(dir string, e *scanEntry) error) ([]Problem, error) {
	w := pre.take(root, f)
	if w == nil {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("scan source %s: %w", root, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("scan source %s: not a directory", root)
		}
		w = newWalker(ctx, root, f, log)
	}
	defer w.Close()
	var problems []Problem
	add := func(p Problem) { problems = append(problems, p) }
	for {
		dir, e, ok, err := w.next(add)
		if err != nil {
			return nil, fmt.Errorf("scan source %s: %w", root, err)
		}
		if !ok {
			return problems, nil
		}
		if err := fn(dir, e); err != nil {
			return problems, err
		}
	}
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "irregular file"
}

// preWalk is a walk of the source started before the plan needs it, so
// that the scan runs while the target is being opened (a dial is mostly
// waiting for the server). Its workers read at most their window of
// directories ahead until the walk is taken over. The first walkSource of
// the same root and filter takes it; close stops it if none did.
type preWalk struct {
	root string
	f    *Filter
	mu   sync.Mutex
	w    *walker
}

// startPreWalk starts a walk of root, which must be a readable directory
// (the caller has checked).
func startPreWalk(ctx context.Context, root string, f *Filter, log *slog.Logger) *preWalk {
	return &preWalk{root: root, f: f, w: newWalker(ctx, root, f, log)}
}

// take hands over the walk if it is one of root and f not taken yet; nil
// otherwise, and for a nil p.
func (p *preWalk) take(root string, f *Filter) *walker {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w == nil || p.root != root || p.f != f {
		return nil
	}
	w := p.w
	p.w = nil
	return w
}

// close stops the walk unless it was taken.
func (p *preWalk) close() {
	if p == nil {
		return
	}
	if w := p.take(p.root, p.f); w != nil {
		w.Close()
	}
}
