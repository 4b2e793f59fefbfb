package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/ferrysync/ferry/backends"
)

// classErr adds a backends error class to an error without changing its
// text, so that errors.Is finds both the class and the original cause.
type classErr struct {
	err   error
	class error
}

func (c *classErr) Error() string   { return c.err.Error() }
func (c *classErr) Unwrap() []error { return []error{c.err, c.class} }

var (
	escapeOnce sync.Once
	// errEscape is the error os.Root returns for a path that would leave
	// it. The standard library does not export it, so it is captured once by
	// asking a root for its parent (see captureEscapeErr).
	errEscape error
)

// captureEscapeErr records the error os.Root gives for an escaping path.
func captureEscapeErr(r *os.Root) {
	escapeOnce.Do(func() {
		_, err := r.Lstat("..")
		var pe *fs.PathError
		if errors.As(err, &pe) {
			errEscape = pe.Err
		}
	})
}

// classify adds the backends class that err's cause belongs to. ENOENT,
// EACCES and EPERM already match ErrNotExist and ErrPermission through
// syscall.Errno.Is; the others are added here.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errEscape != nil && errors.Is(err, errEscape) {
		return &classErr{err, backends.ErrUnsafePath}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EROFS:
			return &classErr{err, backends.ErrPermission}
		case syscall.ENOSPC, syscall.EDQUOT:
			return &classErr{err, backends.ErrNoSpace}
		case syscall.ELOOP, syscall.EFBIG, syscall.EISDIR:
			// A loop of links inside the target, a link where a partial
			// or a directory was expected, a file larger than the
			// filesystem allows, a directory where a file is to be
			// published: retrying cannot help.
			return backends.Permanent(err)
		}
	}
	return err
}

// wrap classifies err and says which operation on which path failed.
func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", op, path, classify(err))
}

var errClosed = errors.New("local backend closed")
