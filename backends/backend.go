package backends

import (
	"context"
	"io"
	"io/fs"
	"time"
)

// FileInfo describes one entry of a target. Path is slash-separated and
// relative to the target root ("" is the root itself).
type FileInfo struct {
	Path    string
	Size    int64
	ModTime time.Time
	// Mode holds the permission bits and the type bits (fs.ModeDir,
	// fs.ModeSymlink); a regular file has no type bits.
	Mode fs.FileMode
	// LinkTarget is the target of a symlink, as stored; empty otherwise.
	LinkTarget string
	// Hash is a hex SHA-256 of the content where one is known, else "".
	Hash string
}

// IsDir reports whether the entry is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// IsSymlink reports whether the entry is a symbolic link.
func (fi FileInfo) IsSymlink() bool { return fi.Mode&fs.ModeSymlink != 0 }

// IsRegular reports whether the entry is a regular file.
func (fi FileInfo) IsRegular() bool { return fi.Mode.IsRegular() }

// Source is the content of one file to upload. Backends read it only through
// ReadAt, so that a resumed upload can start anywhere and several requests can
// be in flight at once; implementations must be safe for concurrent ReadAt.
type Source interface {
	io.ReaderAt
	// Size is the length the upload must have; reading fewer bytes than Size
	// is an incomplete upload and must fail with ErrSourceChanged.
	Size() int64
	// ModTime is set on the published file.
	ModTime() time.Time
	// Mode holds the permission bits set on the published file.
	Mode() fs.FileMode
	// Check returns an error wrapping ErrSourceChanged when the source no
	// longer has the size and mtime it was opened with. Backends call it after
	// the last byte is written and before the file is published.
	Check() error
}

// UploadResult says what an Upload did.
type UploadResult struct {
	// Resumed is the number of bytes kept from an earlier partial upload.
	Resumed int64
	// Sent is the number of bytes written by this call.
	Sent int64
	// Verified names how the published content was checked: "size",
	// "sha256" (computed by the target), "sha256-prefix" (a resumed
	// upload: the target's SHA-256 of the prefix an earlier attempt
	// wrote; this attempt's writes were confirmed one by one), or
	// "read-back".
	Verified string
}

// Backend is one target: a directory tree under a root. All paths are
// slash-separated, relative to the root, and checked with CheckPath before any
// I/O; a path that would leave the root fails with ErrUnsafePath.
//
// Implementations are safe for concurrent use. Every method returns promptly
// with an error wrapping ctx.Err() once ctx is cancelled; errors are
// classified (see IsPermanent) and wrap ErrNotExist, ErrPermission, ErrNoSpace
// where that is the cause.
type Backend interface {
	// Stat describes path without following a final symlink. A missing path
	// returns an error wrapping ErrNotExist.
	Stat(ctx context.Context, path string) (FileInfo, error)
	// List returns the direct children of the directory dir, in no particular
	// order, with Path set relative to the root. Partial files of uploads in
	// progress are listed too (see IsPartialName); names a target returns that
	// fail CheckName are refused with ErrUnsafePath, never passed on.
	List(ctx context.Context, dir string) ([]FileInfo, error)
	// Mkdir creates the directory path and any missing parents. It is not an
	// error if path already is a directory.
	Mkdir(ctx context.Context, path string) error
	// Remove deletes a file, a symlink or an empty directory.
	Remove(ctx context.Context, path string) error
	// Rename moves from to to in one step, replacing a file at to. The parent
	// of to must exist.
	Rename(ctx context.Context, from, to string) error
	// SetModTime sets the modification time of path (a file or directory).
	SetModTime(ctx context.Context, path string, t time.Time) error
	// Open reads the file at path from offset on. The caller closes it.
	Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error)
	// Upload publishes src at path atomically: a reader of the target sees the
	// old file or the complete new one, never a mix or a prefix. Data goes to
	// a partial file beside path (PartialName); a partial left by an earlier
	// attempt, in this process or another, is resumed from its verified length
	// (see ResumeOffset). On success the partial is renamed over path and
	// src's mtime and mode are set. On a retryable failure the partial is kept
	// for the next attempt; on a permanent one it is removed.
	Upload(ctx context.Context, path string, src Source) (UploadResult, error)
	// Close releases connections. It is safe to call once; calls after Close
	// fail.
	Close() error
}
