package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

// classify wraps err from operation op on path p with the class the engine
// acts on. A connection that is gone (or that the error shows is gone) is
// killed so the next call dials a new one, and the error wraps
// backends.ErrUnreachable.
func classify(c *conn, op, p string, err error) error {
	if err == nil {
		return nil
	}
	for _, done := range []error{context.Canceled, context.DeadlineExceeded, backends.ErrUnsafePath,
		backends.ErrAuth, backends.ErrNoSpace, backends.ErrUnreachable, backends.ErrSourceChanged, backends.ErrUnsupported} {
		if errors.Is(err, done) {
			return fmt.Errorf("%s %s: %w", op, p, err)
		}
	}
	if c != nil && (!c.alive() || lostConn(err)) {
		c.abandon("lost: " + err.Error())
		return fmt.Errorf("%s %s: %w: %w (%s)", op, p, backends.ErrUnreachable, err, c.reason())
	}
	var se *sftp.StatusError
	if errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported {
		return fmt.Errorf("%s %s: %w: %w", op, p, backends.ErrUnsupported, err)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// lostConn reports whether err means the connection broke. pkg/sftp reports
// it as ErrSSHFxConnectionLost; the ssh layer as EOF or a closed socket.
func lostConn(err error) bool {
	return errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, sftp.ErrSSHFxNoConnection) ||
		isEOF(err) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isFailure reports the generic SSH_FX_FAILURE, which OpenSSH also sends for
// a full disk.
func isFailure(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxFailure
}
