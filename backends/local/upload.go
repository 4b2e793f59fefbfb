package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/backends"
)

const (
	// resumeWindow is how far below a partial's end its content is
	// compared with the source before resuming. Writes here are sequential
	// through the page cache, so after a killed process the partial is
	// exactly what was written; the window guards against a partial that
	// some other writer left with a torn tail.
	resumeWindow = 4 << 20
	// chunkSize is the unit of copying and of checking for cancellation.
	chunkSize = 1 << 20
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// errBusy: another upload, in this process or another, holds the partial.
var errBusy = errors.New("partial file is being written by another upload")

// Upload publishes src at path atomically (see backends.Backend). Data goes
// to the partial file backends.PartialName, created 0600 or resumed from its
// verified length, then gets src's mode and mtime, is made durable (unless
// NoFsync) and is renamed over path, replacing a file or a symlink there (a
// symlink is replaced, never followed). The parent of path must exist.
//
// Failures: a directory at path, ErrNoSpace, ErrPermission, ErrUnsafePath
// and ErrSourceChanged remove the partial; other errors (a source read error,
// a cancelled context) keep it for the next attempt. The context is checked
// between 1 MiB chunks; once the durable rename has been handed to the
// commit round the call waits for that round (see commit.go). Safe for
// concurrent use on different paths; a second concurrent upload of the same
// content to the same path fails with a retryable error while the first
// holds the partial.
func (b *Backend) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	var res backends.UploadResult
	if err := b.check(ctx, "upload", path); err != nil {
		return res, err
	}
	if path == "" {
		return res, fmt.Errorf("upload: empty path names the root: %w", backends.ErrUnsafePath)
	}
	size := src.Size()
	if size < 0 {
		return res, backends.Permanent(fmt.Errorf("upload %s: negative source size %d", path, size))
	}
	part := backends.PartialName(path, size, src.ModTime())
	// Work inside the parent directory: every later call then names one
	// element, which spares os.Root a walk from the top each time.
	dir, base := backends.Split(path)
	_, partBase := backends.Split(part)
	r := b.root
	if dir != "" {
		var err error
		if r, err = b.root.OpenRoot(dir); err != nil {
			return res, fmt.Errorf("upload %s: %w", path, classify(err))
		}
		defer r.Close()
	}
	f, resumed, err := b.openPartial(r, partBase, src, size)
	if err != nil {
		return res, b.fail(path, part, err)
	}
	res.Resumed = resumed
	res.Sent, err = copyChunks(ctx, f, src, resumed, size, b.commit != nil)
	if err == nil {
		err = src.Check()
	}
	if err == nil {
		err = b.seal(r, f, partBase, src)
	}
	if err != nil {
		f.Close()
		return res, b.fail(path, part, err)
	}
	rename := func() error {
		err := r.Rename(partBase, base)
		if err != nil {
			if fi, lerr := r.Lstat(base); lerr == nil && fi.IsDir() {
				return backends.Permanent(fmt.Errorf("a directory is in the way: %w", err))
			}
		}
		return err
	}
	if b.commit == nil {
		err = rename()
	} else {
		err = b.commitUpload(ctx, r, dir, f, rename)
	}
	f.Close()
	if err != nil {
		return res, b.fail(path, part, err)
	}
	res.Verified = "size"
	return res, nil
}

// commitUpload hands the rename to the commit rounds, with the directory
// whose entry it changes.
func (b *Backend) commitUpload(ctx context.Context, r *os.Root, dir string, f *os.File, rename func() error) error {
	d, err := r.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return b.commit.do(ctx, f, []dirRef{{d, dir}}, rename)
}

// fail classifies err, removes the partial when the next attempt cannot use
// it, and wraps the error with the path.
func (b *Backend) fail(path, part string, err error) error {
	err = classify(err)
	cancelled := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	if !cancelled && !errors.Is(err, errBusy) &&
		(errors.Is(err, backends.ErrSourceChanged) || backends.IsPermanent(err)) {
		if rerr := b.root.Remove(part); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			b.log.Warn("could not remove partial file", "path", part, "err", rerr)
		}
	}
	return fmt.Errorf("upload %s: %w", path, err)
}

// openPartial opens the partial file for writing, locked against other
// uploads, and returns how many of its leading bytes are kept. A new partial
// is created 0600, so that nobody reads a file that is not yet published.
func (b *Backend) openPartial(r *os.Root, part string, src backends.Source, size int64) (*os.File, int64, error) {
	f, err := r.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f, 0, lock(f)
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, 0, err
	}
	// Left by an earlier attempt. Our partial is a regular file; anything
	// else under its name is removed rather than followed.
	if fi, err := r.Lstat(part); err == nil && !fi.Mode().IsRegular() {
		if err := r.Remove(part); err != nil {
			return nil, 0, err
		}
		return b.openPartial(r, part, src, size)
	}
	f, err = r.OpenFile(part, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrPermission) {
		// A failed commit can leave the final, read-only mode on it.
		if cerr := r.Chmod(part, 0o600); cerr == nil {
			f, err = r.OpenFile(part, os.O_RDWR, 0)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	keep, err := b.resume(f, src, size)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, keep, nil
}

func (b *Backend) resume(f *os.File, src backends.Source, size int64) (int64, error) {
	if err := lock(f); err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	keep, err := backends.ResumeOffset(f, fi.Size(), src, size, resumeWindow)
	if err != nil {
		return 0, err
	}
	if keep != fi.Size() {
		if err := f.Truncate(keep); err != nil {
			return 0, err
		}
	}
	b.log.Debug("resuming partial upload", "partial", f.Name(), "had", fi.Size(), "kept", keep)
	return keep, f.Chmod(0o600)
}

// lock takes an exclusive, non-blocking flock on f; it is released when f
// is closed, also when the process dies.
func lock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB) }); err != nil {
		return err
	}
	if errors.Is(lerr, syscall.EWOULDBLOCK) {
		f.Close()
		return backends.Retryable(errBusy)
	}
	if lerr != nil {
		f.Close()
	}
	return lerr
}

// writebackEvery is how much a durable upload writes before it asks the
// kernel to start writing it out, so that the final fsync finds little left
// to do instead of the whole file.
const writebackEvery = 8 << 20

// copyChunks copies src[off:size] into f at the same offsets. A source that
// ends early is an ErrSourceChanged. With early set, written data is handed
// to the disk as the copy goes on.
func copyChunks(ctx context.Context, f *os.File, src backends.Source, off, size int64, early bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var sent int64
	flushed := off
	for off < size {
		if early && off-flushed >= writebackEvery {
			startWriteback(f, flushed, off-flushed)
			flushed = off
		}
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		n := min(int64(len(buf)), size-off)
		got, rerr := src.ReadAt(buf[:n], off)
		if got > 0 {
			if _, err := f.WriteAt(buf[:got], off); err != nil {
				return sent, err
			}
			off += int64(got)
			sent += int64(got)
		}
		if int64(got) < n {
			if rerr == nil || rerr == io.EOF {
				return sent, fmt.Errorf("source ended at byte %d of %d: %w", off, size, backends.ErrSourceChanged)
			}
			return sent, fmt.Errorf("read source at byte %d: %w", off, rerr)
		}
	}
	return sent, nil
}

// seal gives the written partial src's mode and mtime and checks its size.
func (b *Backend) seal(r *os.Root, f *os.File, part string, src backends.Source) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != src.Size() {
		// Someone else changed the partial under us.
		return fmt.Errorf("partial %s has %d bytes, want %d", part, fi.Size(), src.Size())
	}
	if err := f.Chmod(src.Mode().Perm()); err != nil {
		return err
	}
	byName := func() error { return r.Chtimes(part, src.ModTime(), src.ModTime()) }
	return setFileTimes(f, byName, src.ModTime())
}

// timespec converts t without the overflow of UnixNano outside 1678..2262.
// A time the platform cannot hold becomes the epoch.
func timespec(t time.Time) unix.Timespec {
	ts, _ := unix.TimeToTimespec(t)
	return ts
}

// randomTag names temporary files that no other writer picks.
func randomTag() []byte {
	b := make([]byte, 8)
	rand.Read(b)
	return b
}
