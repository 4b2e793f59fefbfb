package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/ferrysync/ferry/backends"
)

// upload copies one source file, retrying retryable failures with backoff
// and re-planning it from a fresh stat when it changed under the upload.
func (e *executor) upload(ctx context.Context, op Op) {
	entry := op.Src
	local := filepath.Join(e.srcRoot, filepath.FromSlash(op.Path))
	e.prog.FileStarted(op.Path, entry.Size)
	changes := 0
	for attempt := 0; ; {
		var reported atomic.Int64
		onRead := func(n int64) {
			reported.Add(n)
			e.prog.Bytes(op.Path, n)
		}
		res, err := e.uploadOnce(ctx, local, op.Path, entry, onRead)
		if err == nil {
			if rest := entry.Size - reported.Load(); rest != 0 {
				e.prog.Bytes(op.Path, rest)
			}
			e.prog.FileDone(op.Path, entry.Size, res.Resumed)
			e.count(func(r *Report) {
				r.Uploaded++
				r.UploadedBytes += entry.Size
				r.SentBytes += res.Sent
				r.ResumedBytes += res.Resumed
			})
			e.log.Debug("uploaded", "path", op.Path, "size", entry.Size, "resumed", res.Resumed, "verified", res.Verified)
			return
		}
		if n := reported.Load(); n != 0 {
			e.prog.Bytes(op.Path, -n)
		}
		if ctx.Err() != nil {
			// Cancelled: the partial stays for the next run; not a problem
			// of this file.
			return
		}
		switch {
		case errors.Is(err, backends.ErrSourceChanged):
			changes++
			next, gone, perr := e.replan(ctx, local, op.Path, entry, changes)
			if gone {
				e.vanished(op.Path)
				e.prog.FileFailed(op.Path, err)
				return
			}
			if perr != nil {
				e.problem(op.Path, perr)
				e.prog.FileFailed(op.Path, perr)
				return
			}
			entry = next
			continue // a change is not a failure: no backoff, no retry used
		case errors.Is(err, errSourceGone):
			e.vanished(op.Path)
			e.prog.FileFailed(op.Path, err)
			return
		case backends.IsPermanent(err) || attempt >= e.opts.Retries:
			e.problem(op.Path, err)
			e.prog.FileFailed(op.Path, err)
			return
		}
		d := e.opts.Backoff.DelayFor(attempt, err)
		attempt++
		e.log.Debug("retrying upload", "path", op.Path, "attempt", attempt, "wait", d, "err", err)
		if err := e.opts.Sleep(ctx, d); err != nil {
			return
		}
	}
}

// errSourceGone marks a source file that no longer exists.
var errSourceGone = errors.New("source file vanished")

// uploadOnce opens the source and makes one Upload attempt.
func (e *executor) uploadOnce(ctx context.Context, local, path string, entry backends.FileInfo, onRead func(int64)) (backends.UploadResult, error) {
	src, err := openSource(ctx, local, entry, e.limiter, onRead)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return backends.UploadResult{}, fmt.Errorf("%w: %w", errSourceGone, err)
		}
		if errors.Is(err, backends.ErrSourceChanged) {
			return backends.UploadResult{}, err
		}
		// An unreadable source does not get better by retrying.
		return backends.UploadResult{}, backends.Permanent(err)
	}
	defer src.Close()
	return e.target.Upload(ctx, path, src)
}

// replan re-stats a source file that changed under its upload and returns
// the entry to upload next. gone is true when the file vanished. It gives up
// with an error after MaxSourceChanges changes, or when the path is no
// longer a regular file. The partial of the old version is removed, since
// its name (which encodes size and mtime) will never be resumed.
func (e *executor) replan(ctx context.Context, local, path string, old backends.FileInfo, changes int) (next backends.FileInfo, gone bool, err error) {
	fi, err := os.Lstat(local)
	if errors.Is(err, fs.ErrNotExist) {
		return old, true, nil
	}
	if err != nil {
		return old, false, fmt.Errorf("stat source %s: %w", local, err)
	}
	if !fi.Mode().IsRegular() {
		return old, false, fmt.Errorf("source %s is no longer a regular file; run again to sync it", local)
	}
	if changes > e.opts.MaxSourceChanges {
		return old, false, fmt.Errorf("file keeps changing (%d times during the upload): %w", changes, backends.ErrSourceChanged)
	}
	next = old
	next.Size = fi.Size()
	next.ModTime = fi.ModTime()
	next.Mode = fi.Mode()
	next.Hash = ""
	if err := e.target.Remove(ctx, backends.PartialName(path, old.Size, old.ModTime)); err != nil && !errors.Is(err, backends.ErrNotExist) {
		e.log.Debug("could not remove old partial", "path", path, "err", err)
	}
	e.log.Info("source changed during upload, sending it again", "path", path, "size", next.Size)
	return next, false, nil
}

func (e *executor) vanished(path string) {
	e.log.Warn("source file vanished before it was copied", "path", path)
	e.count(func(r *Report) { r.Vanished = append(r.Vanished, path) })
}

func (e *executor) symlink(ctx context.Context, op Op) {
	sl, ok := backends.As[backends.Symlinker](e.target)
	if !ok {
		e.skipped(op.Path, fmt.Errorf("symlink -> %s: %w", op.Src.LinkTarget, backends.ErrUnsupported))
		return
	}
	err := e.retry(ctx, "symlink", op.Path, func() error {
		return sl.Symlink(ctx, op.Src.LinkTarget, op.Path)
	})
	switch {
	case err == nil:
		e.count(func(r *Report) { r.Symlinks++ })
	case ctx.Err() != nil:
	case backends.IsUnsupported(err):
		e.skipped(op.Path, err)
	default:
		e.problem(op.Path, err)
	}
}

func (e *executor) mkdir(ctx context.Context, op Op) {
	err := e.retry(ctx, "mkdir", op.Path, func() error {
		if err := e.target.Mkdir(ctx, op.Path); err != nil {
			return err
		}
		return e.chmod(ctx, op)
	})
	switch {
	case err == nil:
		e.count(func(r *Report) { r.Mkdirs++ })
	case ctx.Err() != nil:
	default:
		e.problem(op.Path, err)
	}
}

// touch sets the mtime (and the mode, where it differs) of a target entry
// whose content is already right. Symlinks keep their own times: setting
// them could follow the link.
func (e *executor) touch(ctx context.Context, op Op) {
	if op.Src.IsSymlink() {
		return
	}
	err := e.retry(ctx, "touch", op.Path, func() error {
		if err := e.target.SetModTime(ctx, op.Path, op.Src.ModTime); err != nil {
			return err
		}
		if op.Dst != nil && op.Dst.Mode.Perm() == op.Src.Mode.Perm() {
			return nil
		}
		return e.chmod(ctx, op)
	})
	switch {
	case err == nil:
		e.count(func(r *Report) { r.Touched++ })
	case ctx.Err() != nil:
	default:
		e.problem(op.Path, err)
	}
}

// chmod sets the mode of op.Path from op.Src where the target can.
func (e *executor) chmod(ctx context.Context, op Op) error {
	ch, ok := backends.As[backends.Chmoder](e.target)
	if !ok || op.Src.Mode.Perm() == 0 {
		return nil
	}
	err := ch.Chmod(ctx, op.Path, op.Src.Mode.Perm())
	if backends.IsUnsupported(err) {
		return nil
	}
	return err
}

func (e *executor) delete(ctx context.Context, op Op) {
	err := e.retry(ctx, "delete", op.Path, func() error {
		err := e.target.Remove(ctx, op.Path)
		if errors.Is(err, backends.ErrNotExist) {
			return nil // already gone: the goal is met
		}
		return err
	})
	switch {
	case err == nil:
		e.count(func(r *Report) { r.Deleted++ })
		e.log.Debug("deleted", "path", op.Path)
	case ctx.Err() != nil:
	default:
		e.problem(op.Path, err)
	}
}
