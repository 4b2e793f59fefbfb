package backends

import (
	"context"
	"errors"
	"io/fs"
	"time"
)

// Error classes. Backends wrap the cause with %w so that errors.Is finds the
// class; the engine decides retry or not from the class, never from text.
var (
	// ErrNotExist: the path does not exist on the target.
	ErrNotExist = fs.ErrNotExist
	// ErrPermission: the target refused the operation.
	ErrPermission = fs.ErrPermission
	// ErrNoSpace: the target has no room for the data.
	ErrNoSpace = errors.New("no space left on target")
	// ErrUnsafePath: a path or name would leave the target root or is not a
	// name ferry will write (.., absolute, NUL, control characters).
	ErrUnsafePath = errors.New("unsafe path")
	// ErrSourceChanged: the source file changed while it was being copied;
	// nothing was published and the file should be planned again.
	ErrSourceChanged = errors.New("source changed during transfer")
	// ErrUnreachable: the target could not be reached (dial, handshake,
	// connection lost). Retryable; the engine's circuit breaker watches it.
	ErrUnreachable = errors.New("target unreachable")
	// ErrAuth: the target refused our credentials or its identity could not
	// be verified (unknown or changed host key). Permanent.
	ErrAuth = errors.New("authentication failed")
	// ErrUnsupported: the backend cannot do this operation.
	ErrUnsupported = errors.New("operation not supported by target")
)

// classified marks an error permanent or retryable explicitly, overriding the
// class its cause would give.
type classified struct {
	err       error
	permanent bool
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// Permanent marks err as not worth retrying. It returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, permanent: true}
}

// Retryable marks err as worth retrying. It returns nil for nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, permanent: false}
}

// IsPermanent reports whether retrying the operation that returned err cannot
// help. The outermost explicit mark (Permanent, Retryable) wins; otherwise the
// classes ErrNotExist, ErrPermission, ErrNoSpace, ErrUnsafePath, ErrAuth,
// ErrUnsupported and context cancellation are permanent, and everything else
// (I/O and network errors, ErrUnreachable, ErrSourceChanged) is retryable.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var c *classified
	if errors.As(err, &c) {
		return c.permanent
	}
	for _, class := range []error{ErrNotExist, ErrPermission, ErrNoSpace, ErrUnsafePath, ErrAuth, ErrUnsupported, context.Canceled} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}

// IsUnsupported reports whether err says the operation is not supported.
func IsUnsupported(err error) bool { return errors.Is(err, ErrUnsupported) }

// RetryAfter returns the delay a target asked for before the operation
// that returned err is tried again (an HTTP Retry-After, say), found on the
// first error in the chain with a RetryAfter() time.Duration method. ok is
// false when nothing asked; the caller then uses its own backoff.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			return d, true
		}
	}
	return 0, false
}
