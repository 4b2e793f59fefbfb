package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// DefaultVersionRotate is how long a long-running job keeps adding old
// versions to one folder before it starts the next.
const DefaultVersionRotate = time.Hour

// KeepVersions wraps a target of a long-running backup job, which has no
// runs to stamp: before an Upload or a Rename replaces a regular file, the
// file is moved into v.Dir/<stamp>/<path>. A folder takes the versions of
// up to an hour (rotate; 0 means DefaultVersionRotate), and a path that
// already has a version in it starts the next folder, so no version ever
// replaces another. Each new folder prunes the old ones by v.Keep. A move
// that fails fails the Upload or Rename (permanently, unless cancelled),
// so the old file stays where it was. Safe for concurrent use.
func KeepVersions(b backends.Backend, v *Versions, rotate time.Duration, log *slog.Logger) backends.Backend {
	if rotate <= 0 {
		rotate = DefaultVersionRotate
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &versionWrapper{Backend: b, v: v, rotate: rotate, log: log, dirs: map[string]bool{}}
}

type versionWrapper struct {
	backends.Backend
	v      *Versions
	rotate time.Duration
	log    *slog.Logger

	mu      sync.Mutex
	stamp   string
	stampAt time.Time
	dirs    map[string]bool
}

// Unwrap lets capabilities of the target be found through the wrapper.
func (w *versionWrapper) Unwrap() backends.Backend { return w.Backend }

// Upload keeps the file it replaces first.
func (w *versionWrapper) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	if err := w.keep(ctx, path); err != nil {
		return backends.UploadResult{}, err
	}
	return w.Backend.Upload(ctx, path, src)
}

// Rename keeps the file it replaces first.
func (w *versionWrapper) Rename(ctx context.Context, from, to string) error {
	if err := w.keep(ctx, to); err != nil {
		return err
	}
	return w.Backend.Rename(ctx, from, to)
}

// keep moves the regular file at path, if any, into the current folder.
func (w *versionWrapper) keep(ctx context.Context, path string) error {
	fi, err := w.Backend.Stat(ctx, path)
	switch {
	case errors.Is(err, backends.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsRegular():
		return nil
	}
	for range 3 {
		dir, err := w.folder(ctx, false)
		if err != nil {
			return w.fail(ctx, path, err)
		}
		to := backends.Join(dir, path)
		if _, err := w.Backend.Stat(ctx, to); err == nil {
			// This folder has a version of path already: never replace it.
			if _, err := w.folder(ctx, true); err != nil {
				return w.fail(ctx, path, err)
			}
			continue
		} else if !errors.Is(err, backends.ErrNotExist) {
			return w.fail(ctx, path, err)
		}
		parent, _ := backends.Split(to)
		if err := w.mkdir(ctx, parent); err != nil {
			return w.fail(ctx, path, err)
		}
		if err := w.Backend.Rename(ctx, path, to); err != nil {
			return w.fail(ctx, path, err)
		}
		w.log.Debug("kept old version", "path", path, "to", to)
		return nil
	}
	return w.fail(ctx, path, errors.New("no free versions folder"))
}

func (w *versionWrapper) fail(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return backends.Permanent(fmt.Errorf("keep old version of %s: %w", path, err))
}

// folder returns the folder for versions moved now, starting a new one when
// the current is older than rotate or when next is set, and pruning then.
func (w *versionWrapper) folder(ctx context.Context, next bool) (string, error) {
	now := w.v.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stamp != "" && !next && now.Sub(w.stampAt) < w.rotate {
		return backends.Join(w.v.Dir, w.stamp), nil
	}
	names, times, err := listStamps(ctx, w.Backend, w.v.Dir)
	if err != nil {
		return "", err
	}
	w.stamp, w.stampAt = nextStamp(now, times), now
	// The new folder counts as one of those kept.
	var drop []string
	switch keep := w.v.Keep; {
	case keep.Count == 1:
		drop = names
	case keep.Count > 1:
		keep.Count--
		drop = PruneStamps(names, keep, now)
	default:
		drop = PruneStamps(names, keep, now)
	}
	for _, n := range drop {
		if err := removeAll(ctx, w.Backend, backends.Join(w.v.Dir, n)); err != nil {
			w.log.Warn("pruning old versions failed", "folder", n, "err", err)
			break
		}
	}
	if len(drop) > 0 {
		w.log.Info("pruned old versions", "folders", len(drop))
	}
	return backends.Join(w.v.Dir, w.stamp), nil
}

func (w *versionWrapper) mkdir(ctx context.Context, dir string) error {
	w.mu.Lock()
	done := w.dirs[dir]
	w.mu.Unlock()
	if done {
		return nil
	}
	if err := w.Backend.Mkdir(ctx, dir); err != nil {
		return err
	}
	w.mu.Lock()
	w.dirs[dir] = true
	w.mu.Unlock()
	return nil
}

var _ backends.Wrapper = (*versionWrapper)(nil)

// ExcludeVersions returns the exclude pattern that keeps a versions folder
// (relative to the target root) out of a job's listing and planning.
func ExcludeVersions(dir string) string { return "/" + escapeGlob(dir) }
