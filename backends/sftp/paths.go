package sftp

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/ferrysync/ferry/backends"
)

// dirMode says what safeDir does with a missing directory.
type dirMode int

const (
	dirCheck  dirMode = iota // refuse it
	dirCreate                // make it
	// dirMake makes it, and expects dir itself to be missing (a Mkdir the
	// plan asked for), so dir is made without a look first. So is, in both
	// modes, every directory below one this call made. A directory ferry
	// made is one; only what stands in the way of a mkdir is looked at.
	dirMake
)

// safeDir checks that every directory from the root down to dir (a checked
// relative path) is a real directory, not a symlink, so that nothing ferry
// writes lands outside the root through a link planted inside it. Missing
// directories are made or refused as mode says. Checked directories are
// remembered per connection; a reconnect starts over.
func (b *Backend) safeDir(c *conn, dir string, mode dirMode) error {
	if dir == "" {
		return nil
	}
	if _, ok := c.dirs.Load(b.full(dir)); ok {
		return nil
	}
	prefix, made := "", false
	for elem := range strings.SplitSeq(dir, "/") {
		prefix = backends.Join(prefix, elem)
		full := b.full(prefix)
		if _, ok := c.dirs.Load(full); ok {
			continue
		}
		var fi fs.FileInfo
		var err error
		if made && mode != dirCheck || mode == dirMake && prefix == dir {
			err = c.sftp.Mkdir(full)
			if err == nil {
				c.dirs.Store(full, struct{}{})
				continue
			}
			// Something is there already: look at it below.
			merr := err
			if fi, err = c.sftp.Lstat(full); err != nil {
				return fmt.Errorf("mkdir %s: %w", full, merr)
			}
		} else {
			fi, err = c.sftp.Lstat(full)
			if errors.Is(err, fs.ErrNotExist) && mode != dirCheck {
				merr := c.sftp.Mkdir(full)
				if merr == nil {
					made = true
					c.dirs.Store(full, struct{}{})
					continue
				}
				// Another writer may have made it meanwhile; look again.
				if fi, err = c.sftp.Lstat(full); err != nil {
					return fmt.Errorf("mkdir %s: %w", full, merr)
				}
			}
			if err != nil {
				return err
			}
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symlink; ferry does not write through links: %w", full, backends.ErrUnsafePath)
		case !fi.IsDir():
			return backends.Permanent(fmt.Errorf("%s is not a directory", full))
		}
		c.dirs.Store(full, struct{}{})
	}
	return nil
}

// forgetDirs drops full and everything below it from every connection's
// cache of checked directories, after it was removed or renamed.
func (b *Backend) forgetDirs(full string) {
	for i := range b.slots {
		s := &b.slots[i]
		// A connection being replaced starts with an empty cache anyway,
		// and Range is safe against concurrent stores.
		c := s.peek()
		if c == nil {
			continue
		}
		c.dirs.Range(func(k, _ any) bool {
			if k := k.(string); k == full || strings.HasPrefix(k, full+"/") {
				c.dirs.Delete(k)
			}
			return true
		})
	}
}
