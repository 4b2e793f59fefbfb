package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/backends"
)

// Options configures a local Backend. The zero value is durable.
type Options struct {
	// NoFsync skips making uploads durable: data and renames reach the disk
	// whenever the kernel writes them back. Faster, but a power loss can
	// leave an empty or torn file at a final name.
	NoFsync bool
	// Logger receives debug lines about commit rounds and warnings about
	// names in the target that ferry refuses. Nil discards them.
	Logger *slog.Logger
}

// Backend is a target directory on a local filesystem. It is safe for
// concurrent use. Every method checks its context before any I/O; Upload
// checks it again between chunks, List between entries, and Open's reader on
// each Read. A system call already running is not interrupted. Errors name
// the operation and path and wrap the backends classes (ErrNotExist,
// ErrPermission, ErrNoSpace, ErrUnsafePath for a path or link that would
// leave the root).
type Backend struct {
	root   *os.Root
	name   string
	opts   Options
	log    *slog.Logger
	commit *committer // nil with NoFsync
	dirs   *dirCache
	closed atomic.Bool
}

// New opens the target directory root. It fails when root does not exist or
// is not a directory. The Backend holds root open until Close; a root that is
// moved meanwhile is followed to its new place.
func New(root string, opts Options) (*Backend, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("local target %s: %w", root, classify(err))
	}
	if !fi.IsDir() {
		return nil, backends.Permanent(fmt.Errorf("local target %s: not a directory", root))
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("local target %s: %w", root, classify(err))
	}
	captureEscapeErr(r)
	dirs, err := newDirCache(r)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("local target %s: %w", root, classify(err))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Backend{root: r, name: root, opts: opts, log: log.With("target", root), dirs: dirs}
	if !opts.NoFsync {
		b.commit = newCommitter(b.log, syncFilesystems)
	}
	return b, nil
}

// rel turns a backend path into a name for os.Root, which calls the root ".".
func rel(p string) string {
	if p == "" {
		return "."
	}
	return p
}

// check refuses unsafe paths, a closed backend and a cancelled context, in
// that order, before any I/O.
func (b *Backend) check(ctx context.Context, op string, paths ...string) error {
	for _, p := range paths {
		if err := backends.CheckPath(p); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if b.closed.Load() {
		return fmt.Errorf("%s %s: %w", op, paths[0], errClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, paths[0], err)
	}
	return nil
}

// info converts what lstat says about p into a FileInfo. Only regular files
// report a size, so that backends agree on what a directory's size is.
func (b *Backend) info(p string, fi fs.FileInfo) (backends.FileInfo, error) {
	out := backends.FileInfo{
		Path:    p,
		ModTime: fi.ModTime(),
		Mode:    fi.Mode() & (fs.ModeType | fs.ModePerm),
	}
	if fi.Mode().IsRegular() {
		out.Size = fi.Size()
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		t, err := b.root.Readlink(rel(p))
		if err != nil {
			return backends.FileInfo{}, wrap("readlink", p, err)
		}
		out.LinkTarget = t
	}
	return out, nil
}

// Stat describes path without following a final symlink. A missing path
// wraps ErrNotExist; a path that leads out of the root through a symlink
// wraps ErrUnsafePath.
func (b *Backend) Stat(ctx context.Context, path string) (backends.FileInfo, error) {
	if err := b.check(ctx, "stat", path); err != nil {
		return backends.FileInfo{}, err
	}
	fi, err := b.root.Lstat(rel(path))
	if err != nil {
		return backends.FileInfo{}, wrap("stat", path, err)
	}
	return b.info(path, fi)
}

// List returns the entries of dir. Names that fail CheckName (a newline, an
// invalid UTF-8 sequence) are left out and reported, together with the valid
// entries, in an error wrapping ErrUnsafePath. The context is checked once
// per entry, so a huge directory stops promptly when it is cancelled.
func (b *Backend) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	if err := b.check(ctx, "list", dir); err != nil {
		return nil, err
	}
	f, err := b.root.OpenFile(rel(dir), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, wrap("list", dir, err)
	}
	defer f.Close()
	// Readdir, unlike ReadDir, stats each entry relative to the open
	// directory rather than by a path name that could be swapped meanwhile.
	fis, err := f.Readdir(-1)
	if err != nil {
		return nil, wrap("list", dir, err)
	}
	out := make([]backends.FileInfo, 0, len(fis))
	var bad []error
	for _, fi := range fis {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		if err := backends.CheckName(fi.Name()); err != nil {
			b.log.Warn("skipping a name ferry does not handle", "dir", dir, "name", fi.Name())
			bad = append(bad, err)
			continue
		}
		info, err := b.info(backends.Join(dir, fi.Name()), fi)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("list %s: %d names skipped: %w", dir, len(bad), errors.Join(bad...))
	}
	return out, nil
}

// Mkdir creates path and its missing parents with mode 0755. An existing
// directory (or a link to one inside the root) is not an error. With fsync
// on, new directories are durable when Mkdir returns, so that files
// published into them later cannot vanish with them.
func (b *Backend) Mkdir(ctx context.Context, path string) error {
	if err := b.check(ctx, "mkdir", path); err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	if fi, err := b.root.Lstat(path); err == nil && fi.IsDir() {
		return nil
	}
	var created []string // path and its ancestors; each may be new
	for p := path; p != ""; p, _ = backends.Split(p) {
		created = append(created, p)
	}
	return b.publish(ctx, "mkdir", func() error {
		return wrap("mkdir", path, b.root.MkdirAll(path, 0o755))
	}, created...)
}

// Remove deletes a file, a symlink (not what it points to) or an empty
// directory. A non-empty directory is an error. The removal is not synced:
// one lost in a crash leaves an extra file that the next run removes again.
func (b *Backend) Remove(ctx context.Context, path string) error {
	if err := b.check(ctx, "remove", path); err != nil {
		return err
	}
	if path == "" {
		return backends.Permanent(fmt.Errorf("remove: refusing to remove the target root"))
	}
	return wrap("remove", path, b.root.Remove(path))
}

// Rename moves from to to in one step, replacing a file or symlink at to.
// With fsync on it returns once the rename is durable, sharing a commit
// round with concurrent uploads; a context cancelled during that short wait
// is not noticed, because the rename has already happened.
func (b *Backend) Rename(ctx context.Context, from, to string) error {
	if err := b.check(ctx, "rename", from, to); err != nil {
		return err
	}
	if from == "" || to == "" {
		return backends.Permanent(fmt.Errorf("rename %q to %q: the target root cannot move: %w", from, to, backends.ErrUnsafePath))
	}
	op := func() error { return wrap("rename", from+" to "+to, b.root.Rename(from, to)) }
	return b.publish(ctx, "rename", op, to, from)
}

// publish runs op and then, with fsync on, waits until the directory
// entries it changed are durable, sharing a commit round with concurrent
// uploads. changed lists the paths whose entries op created, replaced or
// removed; their parent directories are synced.
func (b *Backend) publish(ctx context.Context, opName string, op func() error, changed ...string) error {
	if err := op(); err != nil || b.commit == nil {
		return err
	}
	var handles []*dirHandle
	defer func() {
		for _, h := range handles {
			b.dirs.release(h)
		}
	}()
	var dirs []syncRef
	for _, p := range changed {
		dir, _ := backends.Split(p)
		if slices.ContainsFunc(dirs, func(d syncRef) bool { return d.key == dir }) {
			continue
		}
		h, err := b.dirs.get(dir)
		if err != nil {
			return wrap(opName, p, err)
		}
		handles = append(handles, h)
		dirs = append(dirs, dirRef(h))
	}
	if err := b.commit.do(ctx, nil, dirs, nil); err != nil {
		return fmt.Errorf("%s %s: %w", opName, changed[0], err)
	}
	return nil
}

// SetModTime sets the modification time of path, with nanoseconds. A symlink
// gets its own time set; what it points to is not touched. Like Chmod it is
// not synced on its own: a time lost in a crash is set again by the next
// run, and the next commit round's journal commit usually carries it.
func (b *Backend) SetModTime(ctx context.Context, path string, t time.Time) error {
	if err := b.check(ctx, "set mtime", path); err != nil {
		return err
	}
	return wrap("set mtime", path, b.atParent(path, func(dirfd int, name string) error {
		return setTimesAt(dirfd, name, t)
	}))
}

// atParent calls fn with a descriptor of path's parent directory, opened
// inside the root, and path's last element, so that fn's *at system call
// cannot follow a link out of the root.
func (b *Backend) atParent(path string, fn func(dirfd int, name string) error) error {
	dir, name := backends.Split(path)
	if path == "" {
		dir, name = "", "."
	}
	d, err := b.dirs.get(dir)
	if err != nil {
		return err
	}
	defer b.dirs.release(d)
	return fn(d.fd, name)
}

// Open reads the regular file at path from offset on (a symlink inside the
// root is followed). The returned reader fails once ctx is cancelled.
func (b *Backend) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	if err := b.check(ctx, "open", path); err != nil {
		return nil, err
	}
	// Non-blocking, so that a FIFO under the name cannot block the open;
	// it is refused below as not a regular file.
	f, err := b.root.OpenFile(rel(path), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, wrap("open", path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = backends.Permanent(fmt.Errorf("not a regular file (%s)", fi.Mode().Type()))
	}
	if err == nil && offset != 0 {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, wrap("open", path, err)
	}
	return &ctxFile{ctx: ctx, f: f}, nil
}

// ctxFile stops reads once its context is cancelled.
type ctxFile struct {
	ctx context.Context
	f   *os.File
}

func (c *ctxFile) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.f.Read(p)
}

func (c *ctxFile) Close() error { return c.f.Close() }

// Symlink makes path a symbolic link to target, replacing a file or link at
// path atomically: the link is made under a temporary name and renamed over
// path. target is stored as given; it is data, and is never followed by this
// backend out of the root. A directory at path is an error.
func (b *Backend) Symlink(ctx context.Context, target, path string) error {
	if err := b.check(ctx, "symlink", path); err != nil {
		return err
	}
	if path == "" || target == "" {
		return backends.Permanent(fmt.Errorf("symlink %q -> %q: empty path or target: %w", path, target, backends.ErrUnsafePath))
	}
	dir, _ := backends.Split(path)
	tmp := backends.Join(dir, fmt.Sprintf("%slink-%x", backends.PartialPrefix, randomTag()))
	if err := b.root.Symlink(target, tmp); err != nil {
		return wrap("symlink", path, err)
	}
	err := b.publish(ctx, "symlink", func() error {
		if err := b.root.Rename(tmp, path); err != nil {
			return wrap("symlink", path, err)
		}
		return nil
	}, path)
	if err != nil {
		b.root.Remove(tmp)
	}
	return err
}

// Chmod sets the permission bits of path. Symlinks have no mode of their
// own on Linux: for one, Chmod fails with ErrUnsupported.
func (b *Backend) Chmod(ctx context.Context, path string, mode fs.FileMode) error {
	if err := b.check(ctx, "chmod", path); err != nil {
		return err
	}
	fi, err := b.root.Lstat(rel(path))
	if err != nil {
		return wrap("chmod", path, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("chmod %s: symlink: %w", path, backends.ErrUnsupported)
	}
	return wrap("chmod", path, b.root.Chmod(rel(path), mode.Perm()))
}

// FreeSpace reports the bytes available to an unprivileged writer in the
// filesystem that holds the directory path.
func (b *Backend) FreeSpace(ctx context.Context, path string) (int64, error) {
	if err := b.check(ctx, "free space", path); err != nil {
		return 0, err
	}
	f, err := b.root.OpenFile(rel(path), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return 0, wrap("free space", path, err)
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, wrap("free space", path, err)
	}
	var st unix.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fstatfs(int(fd), &st) }); err != nil {
		serr = err
	}
	if serr != nil {
		return 0, wrap("free space", path, serr)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Close releases the root. Uploads still running fail; calls after Close
// fail.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return errClosed
	}
	b.dirs.close()
	return b.root.Close()
}

var (
	_ backends.Backend       = (*Backend)(nil)
	_ backends.Symlinker     = (*Backend)(nil)
	_ backends.Chmoder       = (*Backend)(nil)
	_ backends.SpaceReporter = (*Backend)(nil)
)
