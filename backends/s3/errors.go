package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
)

// throttled is a retryable error from a server that asked us to slow down
// or failed on its side. After is the server's Retry-After, when it sent one.
type throttled struct {
	err   error
	after time.Duration
}

func (t *throttled) Error() string {
	if t.after > 0 {
		return fmt.Sprintf("%v (server asks to retry after %v)", t.err, t.after)
	}
	return t.err.Error()
}
func (t *throttled) Unwrap() error { return t.err }

// RetryAfter is the server's Retry-After, which backends.RetryAfter finds.
func (t *throttled) RetryAfter() time.Duration { return t.after }

// RetryAfter returns the delay a server asked for (its Retry-After header)
// before the operation that returned err is tried again; it is
// backends.RetryAfter, here for callers that hold an s3 error. ok is false
// when err carries no such request.
func RetryAfter(err error) (d time.Duration, ok bool) { return backends.RetryAfter(err) }

// retryAfterSlot catches the Retry-After header of the last response a call
// got: the transport fills it, classify reads it. S3 error bodies do not
// carry the header, so this is how it reaches the error.
type retryAfterSlot struct{ d atomic.Int64 }

type slotKey struct{}

// withSlot returns ctx carrying a fresh slot for one backend call.
func withSlot(ctx context.Context) (context.Context, *retryAfterSlot) {
	s := new(retryAfterSlot)
	return context.WithValue(ctx, slotKey{}, s), s
}

// retryAfterTransport records Retry-After headers into the slot of the
// request's context.
type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode >= 429 {
		if s, ok := req.Context().Value(slotKey{}).(*retryAfterSlot); ok {
			if d := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); d > 0 {
				s.d.Store(int64(d))
			}
		}
	}
	return resp, err
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// classify wraps err from operation op on key with the class the engine acts
// on. slot may be nil.
func (b *Backend) classify(op, path string, err error, slot *retryAfterSlot) error {
	if err == nil {
		return nil
	}
	for _, done := range []error{context.Canceled, context.DeadlineExceeded, backends.ErrUnsafePath,
		backends.ErrNotExist, backends.ErrPermission, backends.ErrAuth, backends.ErrNoSpace,
		backends.ErrUnreachable, backends.ErrSourceChanged, backends.ErrUnsupported} {
		if errors.Is(err, done) {
			return fmt.Errorf("%s %s: %w", op, path, err)
		}
	}
	var after time.Duration
	if slot != nil {
		after = time.Duration(slot.d.Load())
	}
	if th := (*throttled)(nil); errors.As(err, &th) {
		// Classified deeper down, before the slot was read.
		if th.after == 0 {
			th.after = after
		}
		return fmt.Errorf("%s %s: %w", op, path, err)
	}
	return fmt.Errorf("%s %s: %w", op, path, classifyS3(err, b.bucket, after))
}

// classifyS3 maps an error from minio-go to ferry's error classes.
func classifyS3(err error, bucket string, after time.Duration) error {
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w: %w", backends.ErrNotExist, err)
	case "NoSuchUpload":
		// Aborted under us (a cleanup, another process finishing it): the
		// next attempt starts a new one.
		return backends.Retryable(fmt.Errorf("multipart upload no longer exists: %w", err))
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return backends.Permanent(fmt.Errorf("%w: the server refused access (check the credentials' policy for bucket %q): %w", backends.ErrPermission, bucket, err))
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
		// Some servers answer an unknown key id with this, and a 404.
		"XAdminUserNotFound":
		return backends.Permanent(fmt.Errorf("%w: the server refused the credentials: %w", backends.ErrAuth, err))
	case "NoSuchBucket":
		return backends.Permanent(fmt.Errorf("bucket %q does not exist on the server (create it first): %w", bucket, err))
	case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests":
		return backends.Retryable(&throttled{err: err, after: after})
	case "EntityTooLarge", "InvalidBucketName", "InvalidArgument", "InvalidRequest", "MethodNotAllowed", "NotImplemented", "KeyTooLongError":
		return backends.Permanent(err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", backends.ErrNotExist, err)
	case resp.StatusCode == http.StatusForbidden:
		return backends.Permanent(fmt.Errorf("%w: %w", backends.ErrPermission, err))
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return backends.Retryable(&throttled{err: err, after: after})
	case resp.StatusCode == 0 && isNetErr(err):
		return fmt.Errorf("%w: %w", backends.ErrUnreachable, err)
	}
	return err
}

// isNetErr reports errors of the link rather than of the request: refused
// or reset connections, timeouts, a body cut short.
func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || isEOFErr(err)
}

func isEOFErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
