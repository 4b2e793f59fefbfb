package engine

import (
	"context"
	"errors"
	"io/fs"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// recorder wraps a target and records in the state store what each call
// that returned without error did, so the store follows the target in the
// same step that publishes a file, and never ahead of it.
type recorder struct {
	backends.Backend
	st     *state.Store
	failed atomic.Bool // a record could not be written: the store is behind
}

// newRecorder wraps b, keeping its optional capabilities visible: the
// engine finds Symlinker and Chmoder by type assertion, and a call that
// reached the wrapped backend directly would go unrecorded.
func newRecorder(b backends.Backend, st *state.Store) backends.Backend {
	r := &recorder{Backend: b, st: st}
	_, sl := backends.As[backends.Symlinker](b)
	_, ch := backends.As[backends.Chmoder](b)
	switch {
	case sl && ch:
		return &recorderSymlinkChmod{r}
	case sl:
		return &recorderSymlink{r}
	case ch:
		return &recorderChmod{r}
	}
	return r
}

// Unwrap lets read-only capabilities (Hasher, SpaceReporter) be found.
func (r *recorder) Unwrap() backends.Backend { return r.Backend }

func (r *recorder) note(err error) {
	if err != nil {
		r.failed.Store(true)
	}
}

func (r *recorder) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	res, err := r.Backend.Upload(ctx, path, src)
	if err == nil {
		r.note(r.st.Put(backends.FileInfo{Path: path, Size: src.Size(), ModTime: src.ModTime(), Mode: src.Mode().Perm()}))
	}
	return res, err
}

func (r *recorder) Mkdir(ctx context.Context, path string) error {
	err := r.Backend.Mkdir(ctx, path)
	if err == nil && path != "" {
		// The mtime is set by the plan's directory fix that follows; until
		// then the record holds none, so a run cut short fixes it again.
		r.note(r.st.PutNew(backends.FileInfo{Path: path, Mode: fs.ModeDir | 0o755}))
	}
	return err
}

func (r *recorder) Remove(ctx context.Context, path string) error {
	err := r.Backend.Remove(ctx, path)
	if err == nil || errors.Is(err, backends.ErrNotExist) {
		r.note(r.st.Delete(path))
	}
	return err
}

func (r *recorder) Rename(ctx context.Context, from, to string) error {
	err := r.Backend.Rename(ctx, from, to)
	if err == nil {
		r.note(r.st.Rename(from, to))
	}
	return err
}

func (r *recorder) SetModTime(ctx context.Context, path string, t time.Time) error {
	err := r.Backend.SetModTime(ctx, path, t)
	if err == nil {
		r.note(r.st.SetModTime(path, t))
	}
	return err
}

func (r *recorder) symlink(ctx context.Context, target, path string) error {
	sl, _ := backends.As[backends.Symlinker](r.Backend)
	err := sl.Symlink(ctx, target, path)
	if err == nil {
		r.note(r.st.Put(backends.FileInfo{Path: path, Mode: fs.ModeSymlink | 0o777, LinkTarget: target, Size: int64(len(target))}))
	}
	return err
}

func (r *recorder) chmod(ctx context.Context, path string, mode fs.FileMode) error {
	ch, _ := backends.As[backends.Chmoder](r.Backend)
	err := ch.Chmod(ctx, path, mode)
	if err == nil {
		r.note(r.st.SetMode(path, mode))
	}
	return err
}

type recorderSymlink struct{ *recorder }

func (r *recorderSymlink) Symlink(ctx context.Context, target, path string) error {
	return r.symlink(ctx, target, path)
}

type recorderChmod struct{ *recorder }

func (r *recorderChmod) Chmod(ctx context.Context, path string, mode fs.FileMode) error {
	return r.chmod(ctx, path, mode)
}

type recorderSymlinkChmod struct{ *recorder }

func (r *recorderSymlinkChmod) Symlink(ctx context.Context, target, path string) error {
	return r.symlink(ctx, target, path)
}

func (r *recorderSymlinkChmod) Chmod(ctx context.Context, path string, mode fs.FileMode) error {
	return r.chmod(ctx, path, mode)
}

var (
	_ backends.Wrapper   = (*recorder)(nil)
	_ backends.Symlinker = (*recorderSymlink)(nil)
	_ backends.Chmoder   = (*recorderChmod)(nil)
	_ backends.Symlinker = (*recorderSymlinkChmod)(nil)
	_ backends.Chmoder   = (*recorderSymlinkChmod)(nil)
)
