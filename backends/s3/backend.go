package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
)

// Backend is an S3 bucket, or a prefix of one, as a ferry target. It is
// safe for concurrent use; every call honours its context's cancellation.
type Backend struct {
	cfg    Config
	core   *minio.Core
	bucket string
	prefix string
	log    *slog.Logger
	closed atomic.Bool
	// own is the transport New made, whose idle connections Close drops;
	// nil when the caller supplied one.
	own *http.Transport
}

var errClosed = errors.New("s3 backend is closed")

// errNotDir and errNotEmpty are permanent: the tree is not as the caller
// thinks and retrying does not change it.
var (
	errNotDir   = errors.New("not a directory")
	errIsDir    = errors.New("is a directory")
	errNotEmpty = errors.New("directory not empty")
)

// headConcurrency bounds the HEAD requests one List makes to read each
// file's mtime and mode, which S3 listings do not carry.
const headConcurrency = 16

// key is the object key of path; dirKey the key prefix of its children,
// which is also the key of its directory marker.
func (b *Backend) key(path string) string {
	switch {
	case b.prefix == "":
		return path
	case path == "":
		return b.prefix
	}
	return b.prefix + "/" + path
}

func (b *Backend) dirKey(path string) string {
	if k := b.key(path); k != "" {
		return k + "/"
	}
	return ""
}

// enter checks what every call checks first: an open backend, a live
// context and safe paths. It returns ctx with a Retry-After slot.
func (b *Backend) enter(ctx context.Context, op string, paths ...string) (context.Context, *retryAfterSlot, error) {
	for _, p := range paths {
		if err := backends.CheckPath(p); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if b.closed.Load() {
		return nil, nil, backends.Permanent(fmt.Errorf("%s: %w", op, errClosed))
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	ctx, slot := withSlot(ctx)
	return ctx, slot, nil
}

// head returns the object at key; a missing one is ErrNotExist.
func (b *Backend) head(ctx context.Context, key string) (minio.ObjectInfo, error) {
	oi, err := b.core.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return oi, classifyS3(err, b.bucket, 0)
	}
	return oi, nil
}

// fileInfo turns an object's metadata into a FileInfo. An object not
// written by ferry has no mtime metadata; its upload time stands in.
func (b *Backend) fileInfo(path string, oi minio.ObjectInfo) backends.FileInfo {
	fi := backends.FileInfo{Path: path, Size: oi.Size, ModTime: oi.LastModified, Mode: 0o644}
	if v, ok := userMeta(oi.UserMetadata, metaMtime); ok {
		if t, err := parseMtime(v); err == nil {
			fi.ModTime = t
		}
	}
	if v, ok := userMeta(oi.UserMetadata, metaMode); ok {
		if m, ok := parseMode(v); ok {
			fi.Mode = m
		}
	}
	if v, ok := userMeta(oi.UserMetadata, metaSha256); ok && len(v) == 64 {
		fi.Hash = v
	}
	return fi
}

func (b *Backend) dirInfo(path string, marker *minio.ObjectInfo) backends.FileInfo {
	fi := backends.FileInfo{Path: path, Mode: fs.ModeDir | 0o755}
	if marker != nil {
		fi = b.fileInfo(path, *marker)
		fi.Size, fi.Hash, fi.Mode = 0, "", fs.ModeDir|0o755
		if v, ok := userMeta(marker.UserMetadata, metaMode); ok {
			if m, ok := parseMode(v); ok {
				fi.Mode = fs.ModeDir | m
			}
		}
	}
	return fi
}

// stat describes path: an object at its key is a file; a marker, or any
// object under its prefix, makes it a directory.
func (b *Backend) stat(ctx context.Context, path string) (backends.FileInfo, error) {
	if path == "" {
		return backends.FileInfo{Mode: fs.ModeDir | 0o755}, nil
	}
	oi, err := b.head(ctx, b.key(path))
	if err == nil {
		return b.fileInfo(path, oi), nil
	}
	if !errors.Is(err, backends.ErrNotExist) {
		return backends.FileInfo{}, err
	}
	if oi, err := b.head(ctx, b.dirKey(path)); err == nil {
		return b.dirInfo(path, &oi), nil
	} else if !errors.Is(err, backends.ErrNotExist) {
		return backends.FileInfo{}, err
	}
	has, err := b.hasChildren(ctx, path)
	if err != nil {
		return backends.FileInfo{}, err
	}
	if has {
		return b.dirInfo(path, nil), nil
	}
	return backends.FileInfo{}, backends.ErrNotExist
}

// hasChildren reports whether any object lies under path's prefix, the
// marker included.
func (b *Backend) hasChildren(ctx context.Context, path string) (bool, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	oi, ok := <-b.core.Client.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{Prefix: b.dirKey(path), Recursive: true, MaxKeys: 1})
	switch {
	case !ok:
		return false, ctx.Err()
	case oi.Err != nil:
		return false, classifyS3(oi.Err, b.bucket, 0)
	}
	return true, nil
}

// Stat describes path. A prefix with objects under it is a directory even
// without a marker. A missing path wraps ErrNotExist.
func (b *Backend) Stat(ctx context.Context, path string) (backends.FileInfo, error) {
	ctx, slot, err := b.enter(ctx, "stat", path)
	if err != nil {
		return backends.FileInfo{}, err
	}
	fi, err := b.stat(ctx, path)
	return fi, b.classify("stat", path, err, slot)
}

// List returns the children of dir: objects as files, common prefixes as
// directories. Each file costs one HEAD, made concurrently, since listings
// do not carry user metadata. Keys that fail CheckName are left out and
// reported, with the valid entries, in an error wrapping ErrUnsafePath.
func (b *Backend) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	ctx, slot, err := b.enter(ctx, "list", dir)
	if err != nil {
		return nil, err
	}
	out, err := b.list(ctx, dir)
	return out, b.classify("list", dir, err, slot)
}

func (b *Backend) list(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	pfx := b.dirKey(dir)
	var (
		out    []backends.FileInfo
		files  []int
		bad    []error
		marker bool
	)
	for oi := range b.core.Client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: pfx}) {
		if oi.Err != nil {
			return nil, classifyS3(oi.Err, b.bucket, 0)
		}
		if oi.Key == pfx {
			marker = true
			continue
		}
		name, isDir := strings.CutSuffix(strings.TrimPrefix(oi.Key, pfx), "/")
		if err := backends.CheckName(name); err != nil {
			b.log.Warn("skipping a key ferry does not handle", "dir", dir, "key", oi.Key)
			bad = append(bad, err)
			continue
		}
		p := backends.Join(dir, name)
		if isDir {
			out = append(out, b.dirInfo(p, nil))
			continue
		}
		files = append(files, len(out))
		out = append(out, backends.FileInfo{Path: p, Size: oi.Size, ModTime: oi.LastModified, Mode: 0o644})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 && !marker && dir != "" && len(bad) == 0 {
		// Empty: a missing directory or a file.
		if _, err := b.head(ctx, b.key(dir)); err == nil {
			return nil, backends.Permanent(errNotDir)
		} else if !errors.Is(err, backends.ErrNotExist) {
			return nil, err
		}
		return nil, backends.ErrNotExist
	}
	if err := b.headAll(ctx, out, files); err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("%d names skipped: %w", len(bad), errors.Join(bad...))
	}
	return out, nil
}

// headAll fills in the metadata of out[i] for each i in idx.
func (b *Backend) headAll(ctx context.Context, out []backends.FileInfo, idx []int) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	jobs := make(chan int)
	for range min(headConcurrency, len(idx)) {
		wg.Go(func() {
			for i := range jobs {
				oi, err := b.head(ctx, b.key(out[i].Path))
				if errors.Is(err, backends.ErrNotExist) {
					continue // removed since the listing: keep what it said
				}
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					continue
				}
				out[i] = b.fileInfo(out[i].Path, oi)
			}
		})
	}
	for _, i := range idx {
		if ctx.Err() != nil {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// Mkdir writes a zero-byte marker object "path/" for path and each missing
// parent, so that empty directories exist and carry an mtime. It fails when
// path or a parent is a file.
func (b *Backend) Mkdir(ctx context.Context, path string) error {
	ctx, slot, err := b.enter(ctx, "mkdir", path)
	if err != nil {
		return err
	}
	if path == "" {
		return nil
	}
	return b.classify("mkdir", path, b.mkdirAll(ctx, path), slot)
}

func (b *Backend) mkdirAll(ctx context.Context, path string) error {
	elems := strings.Split(path, "/")
	for i := range elems {
		p := strings.Join(elems[:i+1], "/")
		if _, err := b.head(ctx, b.key(p)); err == nil {
			return fmt.Errorf("%s: %w", p, backends.Permanent(errNotDir))
		} else if !errors.Is(err, backends.ErrNotExist) {
			return err
		}
		if _, err := b.head(ctx, b.dirKey(p)); err == nil {
			continue
		} else if !errors.Is(err, backends.ErrNotExist) {
			return err
		}
		if err := b.putMarker(ctx, p, nil); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) putMarker(ctx context.Context, path string, meta map[string]string) error {
	_, err := b.core.PutObject(ctx, b.bucket, b.dirKey(path), bytes.NewReader(nil), 0, "", "",
		minio.PutObjectOptions{UserMetadata: meta, ContentType: "application/x-directory", DisableContentSha256: true})
	if err != nil {
		return classifyS3(err, b.bucket, 0)
	}
	return nil
}

// Remove deletes a file, or a directory with nothing under it but its
// marker. A non-empty directory fails permanently.
func (b *Backend) Remove(ctx context.Context, path string) error {
	ctx, slot, err := b.enter(ctx, "remove", path)
	if err != nil {
		return err
	}
	if path == "" {
		return backends.Permanent(errors.New("remove: refusing to remove the target root"))
	}
	return b.classify("remove", path, b.remove(ctx, path), slot)
}

func (b *Backend) remove(ctx context.Context, path string) error {
	if _, err := b.head(ctx, b.key(path)); err == nil {
		return b.removeKey(ctx, b.key(path))
	} else if !errors.Is(err, backends.ErrNotExist) {
		return err
	}
	pfx := b.dirKey(path)
	found := false
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range b.core.Client.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{Prefix: pfx, Recursive: true, MaxKeys: 2}) {
		if oi.Err != nil {
			return classifyS3(oi.Err, b.bucket, 0)
		}
		if oi.Key != pfx {
			return backends.Permanent(errNotEmpty)
		}
		found = true
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !found {
		return backends.ErrNotExist
	}
	return b.removeKey(ctx, pfx)
}

func (b *Backend) removeKey(ctx context.Context, key string) error {
	if err := b.core.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return classifyS3(err, b.bucket, 0)
	}
	return nil
}

// Open reads the object at path from offset on with a ranged GET.
// Cancelling ctx fails the reads of the returned body.
func (b *Backend) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	ctx, slot, err := b.enter(ctx, "open", path)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, backends.Permanent(fmt.Errorf("open %s: negative offset %d", path, offset))
	}
	if offset > 0 {
		// A range starting at the end is unsatisfiable for S3, but an
		// empty read for ferry.
		oi, err := b.head(ctx, b.key(path))
		if err != nil {
			return nil, b.classify("open", path, err, slot)
		}
		if offset >= oi.Size {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	r, _, _, err := b.core.GetObject(ctx, b.bucket, b.key(path), opts)
	if err != nil {
		return nil, b.classify("open", path, classifyS3(err, b.bucket, 0), slot)
	}
	return ctxBody{ctx: ctx, ReadCloser: r}, nil
}

// ctxBody reports cancellation as such, not as whatever error the cut
// connection gave.
type ctxBody struct {
	ctx context.Context
	io.ReadCloser
}

func (c ctxBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF && c.ctx.Err() != nil {
		return n, c.ctx.Err()
	}
	return n, err
}

// Hash returns the SHA-256 ferry recorded in the object's metadata when it
// uploaded it, without reading the content. Objects without one (multipart
// uploads, objects from other tools) give ErrUnsupported, so that callers
// fall back to reading the content.
func (b *Backend) Hash(ctx context.Context, path string) (string, error) {
	ctx, slot, err := b.enter(ctx, "hash", path)
	if err != nil {
		return "", err
	}
	oi, err := b.head(ctx, b.key(path))
	if err != nil {
		return "", b.classify("hash", path, err, slot)
	}
	if v, ok := userMeta(oi.UserMetadata, metaSha256); ok && len(v) == 64 {
		return v, nil
	}
	return "", fmt.Errorf("hash %s: no recorded sha256: %w", path, backends.ErrUnsupported)
}

// Close marks the backend closed and drops its idle connections; later
// calls fail. Calls in flight are not interrupted: cancel their contexts.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return errClosed
	}
	if b.own != nil {
		b.own.CloseIdleConnections()
	}
	return nil
}

// now is the clock for upload ages; tests replace it.
var now = time.Now

var (
	_ backends.Backend = (*Backend)(nil)
	_ backends.Hasher  = (*Backend)(nil)
	_ backends.Cleaner = (*Backend)(nil)
)
