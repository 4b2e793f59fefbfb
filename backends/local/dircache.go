package local

import (
	"io/fs"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Directory descriptors.
//
// Every upload works inside its parent directory through *at system calls
// on a descriptor of that directory, so that nothing it does can follow a
// link out of the root. Opening that descriptor through os.Root walks the
// path one element at a time; done per file it was three system calls of
// about fifteen. The cache keeps the descriptors of recently used
// directories open instead, and checks on each use that the path, resolved
// from the root without following links (stillBeneath), still names the
// directory it holds: a directory that was moved, removed or replaced (by
// ferry's own Rename and Remove or by anyone else), or moved out of the
// root with a link left in its place, is then opened again through
// os.Root, which refuses a path that leads out of the root. A directory
// removed after that check is caught by the kernel, which refuses to
// create entries in it.

// maxCachedDirs bounds the descriptors the cache keeps open. Uploads are
// handed out directory by directory, so a few dozen are in use at a time.
const maxCachedDirs = 128

// dirHandle is an open directory of the target.
type dirHandle struct {
	f   *os.File // keeps fd open; opened through os.Root
	fd  int
	dev uint64 // filesystem, so a commit round syncs each one once
	ino uint64
	key string // backend path; "" is the root

	// Guarded by dirCache.mu.
	refs int
	dead bool // out of the cache; closed when refs drops to 0
}

type dirCache struct {
	root    *os.Root
	rootDir *dirHandle // never evicted; the root follows moves (see New)

	mu     sync.Mutex
	m      map[string]*dirHandle
	closed bool
}

func newDirCache(root *os.Root) (*dirCache, error) {
	c := &dirCache{root: root, m: make(map[string]*dirHandle)}
	h, err := c.open("")
	if err != nil {
		return nil, err
	}
	h.refs = 1 // held by the cache until close
	c.rootDir = h
	return c, nil
}

// open opens dir through os.Root, which refuses a path that leaves it.
// O_DIRECTORY keeps a FIFO or device under the name from being opened (a
// FIFO would block the open).
func (c *dirCache) open(dir string) (*dirHandle, error) {
	f, err := c.root.OpenFile(rel(dir), os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "stat", Path: rel(dir), Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: rel(dir), Err: syscall.ENOTDIR}
	}
	return &dirHandle{f: f, fd: fd, dev: uint64(st.Dev), ino: uint64(st.Ino), key: dir}, nil
}

// get returns a descriptor of the directory dir, which the caller releases.
// Errors are those of opening dir through os.Root.
func (c *dirCache) get(dir string) (*dirHandle, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	if dir == "" {
		c.rootDir.refs++
		c.mu.Unlock()
		return c.rootDir, nil
	}
	h := c.m[dir]
	if h != nil {
		h.refs++
	}
	c.mu.Unlock()
	if h != nil {
		if stillBeneath(c.rootDir.fd, dir, h.dev, h.ino) {
			return h, nil
		}
		c.drop(h)
		c.release(h)
	}
	h, err := c.open(dir)
	if err != nil {
		return nil, err
	}
	h.refs = 1
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		h.f.Close()
		return nil, errClosed
	}
	if old := c.m[dir]; old != nil {
		c.evictLocked(old)
	}
	if len(c.m) >= maxCachedDirs {
		for _, o := range c.m {
			if o.refs == 0 {
				c.evictLocked(o)
				break
			}
		}
	}
	if len(c.m) < maxCachedDirs {
		c.m[dir] = h
	} else {
		h.dead = true // every cached one is busy: use this one once
	}
	return h, nil
}

// drop takes h out of the cache because its path no longer names it (or
// it is gone); it is closed once no one uses it.
func (c *dirCache) drop(h *dirHandle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h != c.rootDir && c.m[h.key] == h {
		c.evictLocked(h)
	}
}

func (c *dirCache) evictLocked(h *dirHandle) {
	delete(c.m, h.key)
	h.dead = true
	if h.refs == 0 {
		h.f.Close()
	}
}

// release gives back a handle from get.
func (c *dirCache) release(h *dirHandle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h.refs--
	if h.refs == 0 && h.dead {
		h.f.Close()
	}
}

// close closes every descriptor; those in use are closed when released.
func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, h := range c.m {
		c.evictLocked(h)
	}
	c.rootDir.dead = true
	c.rootDir.refs--
	if c.rootDir.refs == 0 {
		c.rootDir.f.Close()
	}
}

// fstat retries on EINTR.
func fstat(fd int, st *unix.Stat_t) error {
	for {
		if err := unix.Fstat(fd, st); err != unix.EINTR {
			return err
		}
	}
}
