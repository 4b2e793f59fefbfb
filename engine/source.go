package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/ferrysync/ferry/backends"
)

// fileSource is a backends.Source over an open local file. Its size, mtime
// and mode are those of the planned entry; Check proves the file still has
// them through the path, which must still name the file opened, so that a
// file rewritten in place or replaced by a rename is never published.
//
// It holds a bare descriptor rather than an *os.File: an os.File registers
// every regular file with the runtime's poller (which refuses it) and
// toggles its blocking mode, four wasted system calls per file on a tree of
// small files. The descriptor is opened non-blocking, so a source swapped
// for a FIFO after the scan cannot hang the open; regular files ignore the
// flag.
//
// ReadAt is safe for concurrent use, also with Close (a read after Close
// fails, it never reads a reused descriptor). When a limiter is set, every
// read first takes its bytes from the shared token bucket, waiting under
// ctx, so a cancelled upload stops waiting at once.
type fileSource struct {
	ctx     context.Context
	path    string // local path, for Check and messages
	entry   backends.FileInfo
	limiter *rate.Limiter
	// counted is the number of bytes reported to onRead; it never passes
	// the size, so a resume check that reads the tail twice does not
	// inflate progress.
	counted atomic.Int64
	onRead  func(n int64)

	mu sync.RWMutex // read-held by ReadAt and checkFd, write-held by Close
	fd int          // -1 once closed
	// dev and ino identify the file opened, set once at open.
	dev, ino uint64
}

// errSourceClosed is returned by reads after Close.
var errSourceClosed = errors.New("source file closed")

// openSource opens the local file at path for an upload of the planned entry.
// It fails with an error wrapping backends.ErrSourceChanged when the file no
// longer matches the entry's size and mtime (or is no longer a regular
// file), and with one wrapping fs.ErrNotExist when it is gone.
func openSource(ctx context.Context, path string, entry backends.FileInfo, limiter *rate.Limiter, onRead func(int64)) (*fileSource, error) {
	fd, err := openRaw(path)
	if err != nil {
		return nil, fmt.Errorf("open source %s: %w", path, err)
	}
	s := &fileSource{ctx: ctx, fd: fd, path: path, entry: entry, limiter: limiter, onRead: onRead}
	if err := s.checkFd(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openRaw opens path read-only and non-blocking, retrying on EINTR.
func openRaw(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != unix.EINTR {
			if err != nil {
				return -1, &fs.PathError{Op: "open", Path: path, Err: err}
			}
			return fd, nil
		}
	}
}

func (s *fileSource) ReadAt(p []byte, off int64) (int, error) {
	if s.limiter != nil {
		if err := waitBytes(s.ctx, s.limiter, len(p)); err != nil {
			return 0, err
		}
	}
	n, err := s.pread(p, off)
	if n > 0 && s.onRead != nil {
		s.count(int64(n))
	}
	return n, err
}

// pread fills p from off on as io.ReaderAt asks: it returns fewer bytes
// than len(p) only with an error, io.EOF at the end of the file.
func (s *fileSource) pread(p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return 0, fmt.Errorf("read source %s: %w", s.path, errSourceClosed)
	}
	if off < 0 {
		return 0, fmt.Errorf("read source %s: negative offset %d", s.path, off)
	}
	var n int
	for n < len(p) {
		m, err := unix.Pread(s.fd, p[n:], off+int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, &fs.PathError{Op: "read", Path: s.path, Err: err}
		case m == 0:
			return n, io.EOF
		}
		n += m
	}
	return n, nil
}

// count reports n more bytes read, never more than the size in total.
func (s *fileSource) count(n int64) {
	for {
		old := s.counted.Load()
		add := min(n, s.entry.Size-old)
		if add <= 0 {
			return
		}
		if s.counted.CompareAndSwap(old, old+add) {
			s.onRead(add)
			return
		}
	}
}

func (s *fileSource) Size() int64        { return s.entry.Size }
func (s *fileSource) ModTime() time.Time { return s.entry.ModTime }
func (s *fileSource) Mode() fs.FileMode  { return s.entry.Mode.Perm() }

// Check implements backends.Source: the path must still name the file
// that was opened, with the planned size and mtime. It costs one lstat of
// the path. The open descriptor needs no fstat of its own: while the path
// names the same inode, the lstat shows that inode's size and mtime, so a
// file rewritten in place is caught as surely as one replaced by a rename.
func (s *fileSource) Check() error {
	var st unix.Stat_t
	var err error
	for {
		err = unix.Lstat(s.path, &st)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("source %s vanished: %w", s.path, backends.ErrSourceChanged)
		}
		return fmt.Errorf("stat source %s: %w", s.path, err)
	}
	if uint64(st.Dev) != s.dev || uint64(st.Ino) != s.ino {
		return fmt.Errorf("source %s was replaced: %w", s.path, backends.ErrSourceChanged)
	}
	return s.matches(&st)
}

// checkFd fstats the descriptor, compares it with the planned entry and
// notes its identity for Check.
func (s *fileSource) checkFd() error {
	var st unix.Stat_t
	s.mu.RLock()
	err := errSourceClosed
	if s.fd >= 0 {
		for {
			err = unix.Fstat(s.fd, &st)
			if err != unix.EINTR {
				break
			}
		}
	}
	s.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("stat source %s: %w", s.path, err)
	}
	s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	return s.matches(&st)
}

// matches reports whether st is a regular file of the planned size and
// mtime.
func (s *fileSource) matches(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("source %s is no longer a regular file: %w", s.path, backends.ErrSourceChanged)
	}
	mtime := time.Unix(st.Mtim.Unix())
	if st.Size != s.entry.Size || !mtime.Equal(s.entry.ModTime) {
		return fmt.Errorf("source %s now has size %d mtime %s, planned %d %s: %w",
			s.path, st.Size, mtime.Format(time.RFC3339Nano),
			s.entry.Size, s.entry.ModTime.Format(time.RFC3339Nano), backends.ErrSourceChanged)
	}
	return nil
}

// Close closes the file. It waits for reads in flight; a second Close
// returns an error.
func (s *fileSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return fmt.Errorf("close source %s: %w", s.path, errSourceClosed)
	}
	fd := s.fd
	s.fd = -1
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close source %s: %w", s.path, err)
	}
	return nil
}

// waitBytes takes n bytes from the limiter, in pieces no larger than its
// burst, waiting under ctx.
func waitBytes(ctx context.Context, l *rate.Limiter, n int) error {
	burst := l.Burst()
	for n > 0 {
		k := min(n, burst)
		if err := l.WaitN(ctx, k); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("bandwidth limit: %w", err)
		}
		n -= k
	}
	return nil
}

// newLimiter returns a token bucket of bytesPerSec, or nil for no limit. The
// burst is a tenth of a second's worth (at least 4 KiB, at most 1 MiB), so
// the rate holds over short spans too while reads stay reasonably large.
func newLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := min(max(bytesPerSec/10, 4<<10), 1<<20)
	return rate.NewLimiter(rate.Limit(bytesPerSec), int(burst))
}

var _ backends.Source = (*fileSource)(nil)
