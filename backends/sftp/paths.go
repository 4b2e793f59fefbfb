package sftp

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/ferrysync/ferry/backends"
)

// safeDir checks that every directory from the root down to dir (a checked
// relative path) is a real directory, not a symlink, so that nothing ferry
// writes lands outside the root through a link planted inside it. With
// create, missing directories are made. Checked directories are remembered
// per connection; a reconnect starts over.
func (b *Backend) safeDir(c *conn, dir string, create bool) error {
	if dir == "" {
		return nil
	}
	if _, ok := c.dirs.Load(b.full(dir)); ok {
		return nil
	}
	prefix := ""
	for elem := range strings.SplitSeq(dir, "/") {
		prefix = backends.Join(prefix, elem)
		full := b.full(prefix)
		if _, ok := c.dirs.Load(full); ok {
			continue
		}
		fi, err := c.sftp.Lstat(full)
		if errors.Is(err, fs.ErrNotExist) && create {
			if merr := c.sftp.Mkdir(full); merr != nil {
				// Another writer may have made it meanwhile; look again.
				fi, err = c.sftp.Lstat(full)
				if err != nil {
					return fmt.Errorf("mkdir %s: %w", full, merr)
				}
			} else {
				fi, err = c.sftp.Lstat(full)
			}
		}
		if err != nil {
			return err
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
