package sftp

import (
	"fmt"
	"path"

	"github.com/ferrysync/ferry/backends"
)

// statVFSReadOnly is SSH_FXE_STATVFS_ST_RDONLY in the flags of a
// statvfs@openssh.com answer.
const statVFSReadOnly = 0x1

// failureCause tells what a generic failure of an operation on full was,
// where statvfs@openssh.com shows it: OpenSSH reports EROFS and ENOSPC as
// SSH_FX_FAILURE, like a passing fault. On a file system mounted read-only
// it returns ErrPermission; with no free inodes, or fewer than need free
// bytes, ErrNoSpace. Either is permanent: one clear error per file, not a
// retried "Failure". It asks about full, or the folder it would be made in
// when full is not there, and returns nil when it learns nothing.
func failureCause(c *conn, full string, err error, need int64) error {
	if !isFailure(err) || !c.alive() || !c.statVFS {
		return nil
	}
	for _, p := range []string{full, path.Dir(full)} {
		st, serr := c.sftp.StatVFS(p)
		if serr != nil {
			continue // not there (yet): ask its folder
		}
		free := int64(st.Bavail * st.Frsize)
		switch {
		case st.Flag&statVFSReadOnly != 0:
			return fmt.Errorf("%s is on a read-only file system: %w (%w)", p, err, backends.ErrPermission)
		case st.Files > 0 && st.Favail == 0:
			return fmt.Errorf("%w (no free inodes on %s): %w", backends.ErrNoSpace, p, err)
		case free < need:
			return fmt.Errorf("%w (%d bytes free): %w", backends.ErrNoSpace, free, err)
		}
		return nil
	}
	return nil
}
