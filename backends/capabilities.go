package backends

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
)

// Optional capabilities. A backend implements the ones it can do natively;
// callers find them with As, which also looks through wrappers, and use the
// generic fallback helpers below when a backend lacks one.

// Hasher computes the hex SHA-256 of a file on the target side, without
// moving its content over the link.
type Hasher interface {
	Hash(ctx context.Context, path string) (string, error)
}

// Symlinker creates a symbolic link at path pointing to target, replacing an
// existing file or link at path atomically. Backends without it cannot hold
// symlinks; the engine skips them with a warning.
type Symlinker interface {
	Symlink(ctx context.Context, target, path string) error
}

// Chmoder sets the permission bits of path.
type Chmoder interface {
	Chmod(ctx context.Context, path string, mode fs.FileMode) error
}

// SpaceReporter reports the bytes free for new data under path.
type SpaceReporter interface {
	FreeSpace(ctx context.Context, path string) (int64, error)
}

// Cleaner is implemented by backends that leave leftovers of their own kind
// behind failed uploads (S3's unfinished multipart uploads) and can remove
// those older than their retention. It returns how many it removed. The
// engine calls it once per run; partial files of the other backends are
// cleaned by the engine itself from the listing.
type Cleaner interface {
	CleanupStale(ctx context.Context) (int, error)
}

// Wrapper is implemented by backends that wrap another (retry, rate limit,
// metrics). Unwrap returns the wrapped backend.
type Wrapper interface {
	Unwrap() Backend
}

// As finds the capability T on b or, through Unwrap, on any backend it wraps.
func As[T any](b Backend) (T, bool) {
	for b != nil {
		if c, ok := b.(T); ok {
			return c, true
		}
		w, ok := b.(Wrapper)
		if !ok {
			break
		}
		b = w.Unwrap()
	}
	var zero T
	return zero, false
}

// Hash returns the hex SHA-256 of the file at path and how it was computed:
// "target" when the backend hashed it itself, "read-back" when the content
// was read over the link and hashed here.
func Hash(ctx context.Context, b Backend, path string) (sum, how string, err error) {
	if h, ok := As[Hasher](b); ok {
		sum, err := h.Hash(ctx, path)
		if err == nil {
			return sum, "target", nil
		}
		if !IsUnsupported(err) {
			return "", "", err
		}
	}
	r, err := b.Open(ctx, path, 0)
	if err != nil {
		return "", "", err
	}
	defer r.Close()
	hw := sha256.New()
	if _, err := io.Copy(hw, ctxReader{ctx, r}); err != nil {
		return "", "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(hw.Sum(nil)), "read-back", nil
}

// ctxReader stops a long copy once its context is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
