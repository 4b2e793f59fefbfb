package sftp

import (
	"fmt"
	"path"

	"github.com/ferrysync/ferry/backends"
)

// statVFSReadOnly is SSH_FXE_STATVFS_ST_RDONLY in the flags of a
// statvfs@openssh.com answer.
const statVFSReadOnly = 0x1

// readOnly returns a generic failure of an operation on full as
// ErrPermission when full, or the folder it would be made in, lies on a
// file system mounted read-only: OpenSSH reports EROFS as SSH_FX_FAILURE,
// like a passing fault, and statvfs@openssh.com tells the two apart. A
// read-only target is then one clear, permanent error per file, not a
// retried "Failure". Otherwise it returns nil.
func readOnly(c *conn, full string, err error) error {
	if !isFailure(err) || !c.alive() || !c.statVFS {
		return nil
	}
	for _, p := range []string{full, path.Dir(full)} {
		st, serr := c.sftp.StatVFS(p)
		if serr != nil {
			continue // not there (yet): ask its folder
		}
		if st.Flag&statVFSReadOnly != 0 {
			return fmt.Errorf("%s is on a read-only file system: %w (%w)", p, err, backends.ErrPermission)
		}
		return nil
	}
	return nil
}
