package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrysync/ferry/backends"
)

// fileSource is a backends.Source over an open local file. Its size, mtime
// and mode are those of the planned entry; Check proves the file still has
// them, through the open descriptor and through the path, so that a file
// rewritten in place or replaced by a rename is never published.
//
// ReadAt is safe for concurrent use (os.File.ReadAt is). When a limiter is
// set, every read first takes its bytes from the shared token bucket, waiting
// under ctx, so a cancelled upload stops waiting at once.
type fileSource struct {
	ctx     context.Context
	f       *os.File
	path    string // local path, for Check and messages
	entry   backends.FileInfo
	limiter *rate.Limiter
	// counted is the number of bytes reported to onRead; it never passes
	// the size, so a resume check that reads the tail twice does not
	// inflate progress.
	counted atomic.Int64
	onRead  func(n int64)
}

// openSource opens the local file at path for an upload of the planned entry.
// It fails with an error wrapping backends.ErrSourceChanged when the file no
// longer matches the entry's size and mtime, and with one wrapping
// fs.ErrNotExist when it is gone.
func openSource(ctx context.Context, path string, entry backends.FileInfo, limiter *rate.Limiter, onRead func(int64)) (*fileSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open source %s: %w", path, err)
	}
	s := &fileSource{ctx: ctx, f: f, path: path, entry: entry, limiter: limiter, onRead: onRead}
	if err := s.checkFd(); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

func (s *fileSource) ReadAt(p []byte, off int64) (int, error) {
	if s.limiter != nil {
		if err := waitBytes(s.ctx, s.limiter, len(p)); err != nil {
			return 0, err
		}
	}
	n, err := s.f.ReadAt(p, off)
	if n > 0 && s.onRead != nil {
		s.count(int64(n))
	}
	return n, err
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

// Check implements backends.Source: both the open descriptor and the path
// must still show the planned size and mtime, and the path must still name
// the file that was opened.
func (s *fileSource) Check() error {
	if err := s.checkFd(); err != nil {
		return err
	}
	fi, err := os.Lstat(s.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("source %s vanished: %w", s.path, backends.ErrSourceChanged)
		}
		return fmt.Errorf("stat source %s: %w", s.path, err)
	}
	fdi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat source %s: %w", s.path, err)
	}
	if !os.SameFile(fi, fdi) {
		return fmt.Errorf("source %s was replaced: %w", s.path, backends.ErrSourceChanged)
	}
	return nil
}

func (s *fileSource) checkFd() error {
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat source %s: %w", s.path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("source %s is no longer a regular file: %w", s.path, backends.ErrSourceChanged)
	}
	if fi.Size() != s.entry.Size || !fi.ModTime().Equal(s.entry.ModTime) {
		return fmt.Errorf("source %s now has size %d mtime %s, planned %d %s: %w",
			s.path, fi.Size(), fi.ModTime().Format(time.RFC3339Nano),
			s.entry.Size, s.entry.ModTime.Format(time.RFC3339Nano), backends.ErrSourceChanged)
	}
	return nil
}

// Close closes the file.
func (s *fileSource) Close() error { return s.f.Close() }

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
