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

var (
	bufPool   = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	smallPool = sync.Pool{New: func() any { b := make([]byte, smallCopy); return &b }}
)

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
	// element of a directory opened inside the root (see dircache.go).
	dir, base := backends.Split(path)
	_, partBase := backends.Split(part)
	d, err := b.dirs.get(dir)
	if err != nil {
		return res, fmt.Errorf("upload %s: %w", path, classify(err))
	}
	defer func() {
		if d != nil {
			b.dirs.release(d)
		}
	}()
	f, resumed, err := b.openPartial(d, partBase, src, size)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory was removed after the cache looked at it (the
		// kernel refuses new entries in a removed directory): look it up
		// again, once.
		b.dirs.drop(d)
		b.dirs.release(d)
		if d, err = b.dirs.get(dir); err != nil {
			d = nil
			return res, fmt.Errorf("upload %s: %w", path, classify(err))
		}
		f, resumed, err = b.openPartial(d, partBase, src, size)
	}
	if err != nil {
		return res, b.fail(path, part, err)
	}
	res.Resumed = resumed
	res.Sent, err = copyChunks(ctx, f, src, resumed, size, b.commit != nil)
	if err == nil {
		err = src.Check()
	}
	if err == nil {
		err = b.seal(d, f, partBase, src, resumed > 0)
	}
	if err != nil {
		closeFd(f)
		return res, b.fail(path, part, err)
	}
	rename := func() error {
		err := renameat(d.fd, partBase, base)
		if err != nil {
			var st unix.Stat_t
			if lerr := unix.Fstatat(d.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); lerr == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return backends.Permanent(fmt.Errorf("a directory is in the way: %w", err))
			}
		}
		return err
	}
	if b.commit == nil {
		err = rename()
	} else {
		data := syncRef{fd: f, dev: d.dev}
		err = b.commit.do(ctx, &data, []syncRef{dirRef(d)}, rename)
	}
	closeFd(f)
	if err != nil {
		return res, b.fail(path, part, err)
	}
	res.Verified = "size"
	return res, nil
}

// renameat renames old to new inside the directory dirfd, replacing a
// file or link at new (never following it).
func renameat(dirfd int, old, new string) error {
	for {
		err := unix.Renameat(dirfd, old, dirfd, new)
		if err != unix.EINTR {
			if err != nil {
				return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
			}
			return nil
		}
	}
}

// closeFd closes a descriptor this package opened. Errors are of no use:
// the data was written with pwrite, whose errors were seen. A variable, so
// that a test can catch a descriptor closed twice (which, once the number
// is reused, would close another upload's file).
var closeFd = func(fd int) { unix.Close(fd) }

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

// partialFlags open a partial for writing; O_NOFOLLOW refuses a link
// planted under its name.
const partialFlags = unix.O_RDWR | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openat opens name in the directory d, retrying on EINTR.
func openat(d *dirHandle, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(d.fd, name, flags, mode)
		if err != unix.EINTR {
			if err != nil {
				return -1, &fs.PathError{Op: "open", Path: name, Err: err}
			}
			return fd, nil
		}
	}
}

// openPartial opens the partial file for writing, locked against other
// uploads, and returns its descriptor and how many of its leading bytes are
// kept. A new partial is created 0600, so that nobody reads a file that is
// not yet published.
func (b *Backend) openPartial(d *dirHandle, part string, src backends.Source, size int64) (int, int64, error) {
	fd, err := openat(d, part, partialFlags|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err == nil {
		if err := lock(fd); err != nil {
			closeFd(fd)
			return -1, 0, err
		}
		return fd, 0, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return -1, 0, err
	}
	// Left by an earlier attempt. Our partial is a regular file; anything
	// else under its name is removed rather than followed.
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, part, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		flags := 0
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			flags = unix.AT_REMOVEDIR
		}
		if err := unix.Unlinkat(d.fd, part, flags); err != nil {
			return -1, 0, &fs.PathError{Op: "remove", Path: part, Err: err}
		}
		return b.openPartial(d, part, src, size)
	}
	fd, err = openat(d, part, partialFlags, 0)
	if errors.Is(err, fs.ErrPermission) {
		// A failed commit can leave the final, read-only mode on it.
		if cerr := unix.Fchmodat(d.fd, part, 0o600, 0); cerr == nil {
			fd, err = openat(d, part, partialFlags, 0)
		}
	}
	if err != nil {
		return -1, 0, err
	}
	keep, err := b.resume(fd, part, src, size)
	if err != nil {
		closeFd(fd)
		return -1, 0, err
	}
	return fd, keep, nil
}

func (b *Backend) resume(fd int, part string, src backends.Source, size int64) (int64, error) {
	if err := lock(fd); err != nil {
		return 0, err
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, backends.Permanent(fmt.Errorf("partial %s is not a regular file", part))
	}
	keep, err := backends.ResumeOffset(fdReader(fd), st.Size, src, size, resumeWindow)
	if err != nil {
		return 0, err
	}
	if keep != st.Size {
		if err := unix.Ftruncate(fd, keep); err != nil {
			return 0, err
		}
	}
	b.log.Debug("resuming partial upload", "partial", part, "had", st.Size, "kept", keep)
	return keep, unix.Fchmod(fd, 0o600)
}

// fdReader reads an open descriptor at offsets.
type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	var n int
	for n < len(p) {
		m, err := unix.Pread(int(r), p[n:], off+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, err
		case m == 0:
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// pwriteAll writes all of p at off.
func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrShortWrite
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}

// lock takes an exclusive, non-blocking flock on fd; it is released when fd
// is closed, also when the process dies. fd stays open on failure: its
// opener closes it.
func lock(fd int) error {
	var err error
	for {
		if err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != unix.EINTR {
			break
		}
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return backends.Retryable(errBusy)
	}
	return err
}

// writebackEvery is how much a durable upload writes before it asks the
// kernel to start writing it out, so that the final fsync finds little left
// to do instead of the whole file.
const writebackEvery = 8 << 20

// copyChunks copies src[off:size] into fd at the same offsets. A source
// that ends early is an ErrSourceChanged. With early set, written data is
// handed to the disk as the copy goes on.
func copyChunks(ctx context.Context, fd int, src backends.Source, off, size int64, early bool) (int64, error) {
	if off >= size {
		return 0, nil
	}
	// Small files, most of a tree, take small buffers, so that a few dozen
	// concurrent uploads do not each keep a chunk-sized one in use.
	pool := &bufPool
	if size-off <= smallCopy {
		pool = &smallPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	var sent int64
	flushed := off
	for off < size {
		if early && off-flushed >= writebackEvery {
			startWriteback(fd, flushed, off-flushed)
			flushed = off
		}
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		n := min(int64(len(buf)), size-off)
		got, rerr := src.ReadAt(buf[:n], off)
		if got > 0 {
			if err := pwriteAll(fd, buf[:got], off); err != nil {
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

// smallCopy is the size of the buffers for small files.
const smallCopy = 64 << 10

// seal gives the written partial src's mode and mtime. A resumed partial,
// which another writer could have touched before the lock was taken, has
// its size checked too; a new one was created here and written in full.
func (b *Backend) seal(d *dirHandle, fd int, part string, src backends.Source, resumed bool) error {
	if resumed {
		var st unix.Stat_t
		if err := fstat(fd, &st); err != nil {
			return err
		}
		if st.Size != src.Size() {
			return fmt.Errorf("partial %s has %d bytes, want %d", part, st.Size, src.Size())
		}
	}
	if err := unix.Fchmod(fd, uint32(src.Mode().Perm())); err != nil {
		return err
	}
	byName := func() error {
		ts := timespec(src.ModTime())
		return unix.UtimesNanoAt(d.fd, part, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return setFileTimes(fd, byName, src.ModTime())
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
