package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Backend is an SFTP target. It is safe for concurrent use; calls share a
// small pool of connections that are kept alive while idle and rebuilt on
// the next call after a loss.
type Backend struct {
	cfg   *resolved
	hk    *hostKeys
	keys  *keys
	log   *slog.Logger
	root  string
	slots []slot
	rr    atomic.Uint32

	closed    atomic.Bool
	closeOnce sync.Once

	warmCtx    context.Context // background dials; cancelled by Close
	warmCancel context.CancelFunc
	warmWG     sync.WaitGroup

	bulk chan struct{} // uploads past one batch in flight (see SmallFileConcurrency)
	// calls counts the operations in flight that take any connection of
	// the pool (do's and bulk uploads): the pool grows only while several
	// overlap (see get).
	calls atomic.Int64

	splitAt  int64         // uploads with this much left to send use two connections
	splitRTT time.Duration // ... when the connection's round trip is at least this

	verifiedBy sync.Map // verification methods used so far, logged once each

	hashMu    sync.Mutex
	hashState int // 0 unknown, 1 sha256sum works, 2 it does not
}

// Dial resolves cfg (SSH config, defaults), connects once to check the host
// key, the credentials and the root directory, and returns the Backend.
// Errors wrap backends.ErrAuth for an unknown or changed host key or refused
// credentials (permanent) and backends.ErrUnreachable when the server could
// not be reached (retryable). The root is created if it is missing. Dial
// returns when ctx is cancelled, with ctx's error.
func Dial(ctx context.Context, cfg Config) (*Backend, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	hk, err := newHostKeys(r.knownHosts, r.AcceptNewHostKey)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w: %w", r.addr, backends.ErrAuth, err)
	}
	k, err := loadKeys(r)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", r.addr, err)
	}
	if err := loadHopCreds(r); err != nil {
		return nil, fmt.Errorf("sftp %s: %w", r.addr, err)
	}
	b := &Backend{cfg: r, hk: hk, keys: k, log: r.Logger, root: path.Clean(r.Root),
		slots: make([]slot, r.Connections), bulk: make(chan struct{}, maxBulkUploads),
		splitAt: splitThreshold, splitRTT: splitRoundTrip}
	b.warmCtx, b.warmCancel = context.WithCancel(context.Background())
	c, err := b.connAt(ctx, 0)
	if err != nil {
		return nil, fmt.Errorf("sftp %s: %w", r.addr, err)
	}
	err = callCtx(ctx, func() error {
		fi, err := c.sftp.Stat(b.root)
		if errors.Is(err, fs.ErrNotExist) {
			b.log.Info("creating target root", "addr", r.addr, "root", b.root)
			if err := c.sftp.MkdirAll(b.root); err != nil {
				return fmt.Errorf("creating it: %w", err)
			}
			return nil
		}
		if err == nil && !fi.IsDir() {
			return backends.Permanent(fmt.Errorf("not a directory"))
		}
		return err
	})
	if err != nil {
		// Classified before Close, which would make any error look like a
		// lost connection.
		err = classify(c, "target root", r.addr+":"+b.root, err)
		b.Close()
		return nil, err
	}
	return b, nil
}

// smallFileConcurrency is SmallFileConcurrency's answer, and
// maxBulkUploads how many of those may be uploads past one batch: the
// engine's default for every target (32), which bounds what they queue.
// On loopback, 10,000 files of 4 KiB with 32, 64 and 128 in flight took
// 1.94, 1.79 and 1.64 s of CPU (client and server, median of 6, load 6):
// more files per round of answers, fewer writes and wake-ups per file.
const (
	smallFileConcurrency = 128
	maxBulkUploads       = 32
)

// SmallFileConcurrency is how many small files and other operations the
// engine keeps in flight against this target by default: a batched upload
// costs the link little (its requests share channel writes with those of
// the others, see first), so many in flight keep the server busy with few
// round trips' wait; uploads past one batch are held to maxBulkUploads
// among them.
func (b *Backend) SmallFileConcurrency() int { return smallFileConcurrency }

// Close closes every connection and waits for their goroutines. Calls in
// flight fail with an error wrapping backends.ErrUnreachable; calls after
// Close fail.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.warmCancel()
		b.warmWG.Wait()
		for i := range b.slots {
			s := &b.slots[i]
			s.mu.Lock()
			if s.c != nil {
				s.c.sftp.Close()
				s.c.kill("backend closed")
				s.c.wg.Wait()
				s.c = nil
				s.cur.Store(nil)
			}
			s.mu.Unlock()
		}
	})
	return nil
}

// String names the target for logs.
func (b *Backend) String() string {
	return fmt.Sprintf("sftp://%s@%s/%s", b.cfg.User, b.cfg.addr, strings.TrimPrefix(b.root, "/"))
}

// full returns the server path of p, which CheckPath has accepted.
func (b *Backend) full(p string) string {
	if p == "" {
		return b.root
	}
	return path.Join(b.root, p)
}

// callCtx runs fn, returning early with ctx's error once ctx is done; pkg/sftp
// calls take no context, and fn then finishes in the background (a dead
// connection is closed by the keepalive, which ends it).
func callCtx(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctx.Done() == nil {
		return fn()
	}
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs fn on a pooled connection and classifies its error. An operation
// that can safely run twice is run once more, on another connection, when
// its connection turned out to be dead (a server restart is only seen on
// the next request): that is the transparent part of reconnecting.
func (b *Backend) do(ctx context.Context, op, p string, fn func(c *conn) error) error {
	return b.doOn(ctx, b.get, op, p, fn)
}

// doSmall is do for a small change of metadata (mkdir, mtime, mode): it
// goes where small uploads go (see first), so that a run of small files
// and folders keeps to one connection and never grows the pool.
func (b *Backend) doSmall(ctx context.Context, op, p string, fn func(c *conn) error) error {
	return b.doOn(ctx, b.first, op, p, fn)
}

// doOn is do with the connection picked by get.
func (b *Backend) doOn(ctx context.Context, get func(context.Context) (*conn, error), op, p string, fn func(c *conn) error) error {
	if err := backends.CheckPath(p); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	b.calls.Add(1)
	defer b.calls.Add(-1)
	for attempt := 0; ; attempt++ {
		c, err := get(ctx)
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, p, err)
		}
		err = classify(c, op, p, callCtx(ctx, func() error { return fn(c) }))
		if cause := failureCause(c, b.full(p), err, 1); cause != nil {
			err = cause
		}
		if err == nil || attempt > 0 || notIdempotent[op] || c.alive() || ctx.Err() != nil ||
			!errors.Is(err, backends.ErrUnreachable) {
			return err
		}
		b.log.Debug("sftp retrying on another connection", "op", op, "path", p, "err", err)
	}
}

// notIdempotent lists the operations that must not be run twice: a second
// remove or rename after a first that did reach the server would fail.
var notIdempotent = map[string]bool{"remove": true, "rename": true}

func toInfo(p string, fi os.FileInfo) backends.FileInfo {
	return backends.FileInfo{Path: p, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
}

// Stat describes path without following a final symlink. See backends.Backend.
func (b *Backend) Stat(ctx context.Context, p string) (backends.FileInfo, error) {
	var out backends.FileInfo
	err := b.do(ctx, "stat", p, func(c *conn) error {
		full := b.full(p)
		fi, err := c.sftp.Lstat(full)
		if err != nil {
			return err
		}
		out = toInfo(p, fi)
		if out.IsSymlink() {
			out.LinkTarget, err = c.sftp.ReadLink(full)
		}
		return err
	})
	return out, err
}

// List returns the children of dir. Names from the server that fail
// backends.CheckName are left out and reported, together with the valid
// entries, in an error wrapping ErrUnsafePath (permanent). See
// backends.Backend.
func (b *Backend) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	var out []backends.FileInfo
	err := b.do(ctx, "list", dir, func(c *conn) error {
		full := b.full(dir)
		fis, err := c.sftp.ReadDir(full)
		if err != nil {
			return err
		}
		out = make([]backends.FileInfo, 0, len(fis))
		var bad []error
		for _, fi := range fis {
			if err := backends.CheckName(fi.Name()); err != nil {
				b.log.Warn("skipping a name ferry does not handle", "dir", full, "name", fmt.Sprintf("%q", fi.Name()))
				bad = append(bad, err)
				continue
			}
			info := toInfo(backends.Join(dir, fi.Name()), fi)
			if info.IsSymlink() {
				if info.LinkTarget, err = c.sftp.ReadLink(path.Join(full, fi.Name())); err != nil {
					return err
				}
			}
			out = append(out, info)
		}
		if len(bad) > 0 {
			return fmt.Errorf("entries of %s: %d names skipped: %w", full, len(bad), errors.Join(bad...))
		}
		return nil
	})
	return out, err
}

// Mkdir creates path and its missing parents, refusing to pass through a
// symlink. See backends.Backend.
func (b *Backend) Mkdir(ctx context.Context, p string) error {
	return b.doSmall(ctx, "mkdir", p, func(c *conn) error { return b.safeDir(c, p, dirMake) })
}

// Remove deletes a file, a symlink or an empty directory. See
// backends.Backend.
func (b *Backend) Remove(ctx context.Context, p string) error {
	if p == "" {
		return fmt.Errorf("remove: the target root: %w", backends.ErrUnsafePath)
	}
	return b.do(ctx, "remove", p, func(c *conn) error {
		dir, _ := backends.Split(p)
		if err := b.safeDir(c, dir, dirCheck); err != nil {
			return err
		}
		full := b.full(p)
		fi, err := c.sftp.Lstat(full)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			b.forgetDirs(full)
			return c.sftp.RemoveDirectory(full)
		}
		return c.sftp.Remove(full)
	})
}

// Rename moves from to to in one step, replacing a file at to. See
// backends.Backend.
func (b *Backend) Rename(ctx context.Context, from, to string) error {
	if err := backends.CheckPath(to); err != nil || to == "" || from == "" {
		return fmt.Errorf("rename %s to %s: %w", from, to, backends.ErrUnsafePath)
	}
	return b.do(ctx, "rename", from, func(c *conn) error {
		fd, _ := backends.Split(from)
		td, _ := backends.Split(to)
		if err := b.safeDir(c, fd, dirCheck); err != nil {
			return err
		}
		if err := b.safeDir(c, td, dirCheck); err != nil {
			return err
		}
		b.forgetDirs(b.full(from))
		return b.replace(c, b.full(from), b.full(to))
	})
}

// replace renames from over to. Without posix-rename the old file is moved
// aside first and removed after, so that a name never goes missing.
func (b *Backend) replace(c *conn, from, to string) error {
	if c.raw != nil && c.raw.posixRename {
		call := c.raw.rename(from, to)
		c.raw.flush()
		return call.status()
	}
	if c.posixRename {
		return c.sftp.PosixRename(from, to)
	}
	err := c.sftp.Rename(from, to)
	if err == nil {
		return nil
	}
	if _, serr := c.sftp.Lstat(to); serr != nil {
		return err // to is absent: the rename failed for another reason
	}
	aside := path.Join(path.Dir(to), fmt.Sprintf("%saside-%d-%s", backends.PartialPrefix, time.Now().UnixNano(), path.Base(to)))
	if len(path.Base(aside)) > backends.MaxNameLen {
		aside = aside[:len(aside)-(len(path.Base(aside))-backends.MaxNameLen)]
	}
	if err := c.sftp.Rename(to, aside); err != nil {
		return fmt.Errorf("move %s aside: %w", to, err)
	}
	if err := c.sftp.Rename(from, to); err != nil {
		if rerr := c.sftp.Rename(aside, to); rerr != nil {
			b.log.Error("could not restore file moved aside", "path", to, "aside", aside, "err", rerr)
		}
		return err
	}
	if err := c.sftp.Remove(aside); err != nil {
		b.log.Warn("could not remove old file moved aside", "aside", aside, "err", err)
	}
	return nil
}

// SetModTime sets the mtime of a file or directory. A symlink is refused
// with ErrUnsupported: SFTP would set the time of what it points to. See
// backends.Backend.
func (b *Backend) SetModTime(ctx context.Context, p string, t time.Time) error {
	if err := checkTime(t); err != nil {
		return fmt.Errorf("set mtime %s: %w", p, err)
	}
	return b.doSmall(ctx, "set mtime", p, func(c *conn) error {
		full, err := b.notLink(c, p)
		if err != nil {
			return err
		}
		return setTimes(c, full, t)
	})
}

// Chmod sets the permission bits of a file or directory; a symlink is
// refused as in SetModTime.
func (b *Backend) Chmod(ctx context.Context, p string, mode fs.FileMode) error {
	return b.doSmall(ctx, "chmod", p, func(c *conn) error {
		full, err := b.notLink(c, p)
		if err != nil {
			return err
		}
		return c.sftp.Chmod(full, mode.Perm())
	})
}

// notLink checks that p's directory chain and p itself are no symlinks.
func (b *Backend) notLink(c *conn, p string) (string, error) {
	dir, _ := backends.Split(p)
	if p != "" {
		if err := b.safeDir(c, dir, dirCheck); err != nil {
			return "", err
		}
	}
	full := b.full(p)
	fi, err := c.sftp.Lstat(full)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("%s is a symlink: %w", full, backends.ErrUnsupported)
	}
	return full, nil
}

// Open reads the file at p from offset on. Reads after a lost connection
// fail with an error wrapping ErrUnreachable; cancelling ctx fails the next
// Read. See backends.Backend.
func (b *Backend) Open(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	var rc *reader
	err := b.do(ctx, "open", p, func(c *conn) error {
		f, err := c.sftp.Open(b.full(p))
		if err != nil {
			return err
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return err
		}
		rc = &reader{ctx: ctx, c: c, f: f, p: p}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rc, nil
}

type reader struct {
	ctx  context.Context
	c    *conn
	f    interface{ io.ReadCloser }
	p    string
	once sync.Once
}

func (r *reader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.f.Read(b)
	if err != nil && err != io.EOF {
		err = classify(r.c, "read", r.p, err)
	}
	return n, err
}

func (r *reader) Close() error {
	var err error
	r.once.Do(func() { err = r.f.Close() })
	return err
}

// Symlink creates a link at p to target, replacing a file or link at p in
// one step (a link made beside it, then renamed over).
func (b *Backend) Symlink(ctx context.Context, target, p string) error {
	if p == "" {
		return fmt.Errorf("symlink: the target root: %w", backends.ErrUnsafePath)
	}
	return b.do(ctx, "symlink", p, func(c *conn) error {
		dir, _ := backends.Split(p)
		if err := b.safeDir(c, dir, dirCheck); err != nil {
			return err
		}
		tmp := b.full(backends.PartialName(p, int64(len(target)), time.Unix(0, 0)))
		c.sftp.Remove(tmp)
		if err := c.sftp.Symlink(target, tmp); err != nil {
			return err
		}
		if err := b.replace(c, tmp, b.full(p)); err != nil {
			c.sftp.Remove(tmp)
			return err
		}
		return nil
	})
}

// FreeSpace reports the bytes available to this user under p, from
// statvfs@openssh.com; servers without it return ErrUnsupported.
func (b *Backend) FreeSpace(ctx context.Context, p string) (int64, error) {
	var free int64
	err := b.do(ctx, "free space", p, func(c *conn) error {
		var err error
		free, err = b.freeSpace(c, b.full(p))
		return err
	})
	return free, err
}

func (b *Backend) freeSpace(c *conn, full string) (int64, error) {
	if !c.statVFS {
		return 0, fmt.Errorf("server lacks statvfs@openssh.com: %w", backends.ErrUnsupported)
	}
	st, err := c.sftp.StatVFS(full)
	if err != nil {
		return 0, err
	}
	return int64(st.Bavail * st.Frsize), nil
}

// Compile-time checks of the capabilities.
var (
	_ backends.Backend       = (*Backend)(nil)
	_ backends.Hasher        = (*Backend)(nil)
	_ backends.Symlinker     = (*Backend)(nil)
	_ backends.Chmoder       = (*Backend)(nil)
	_ backends.SpaceReporter = (*Backend)(nil)
)
