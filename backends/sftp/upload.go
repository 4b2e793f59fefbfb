package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

// splitThreshold is the default remaining size from which one file is
// written over two connections at once: below it the second stream gains
// little over one with a full window.
const splitThreshold = 64 << 20

// splitRoundTrip is the round trip from which such a file is split: below
// it one channel's window (2 MiB with OpenSSH) already carries hundreds of
// MiB/s, and a second stream only costs CPU on both ends (on loopback, one
// stream finished 512 MiB in 1.90 s against 2.21 s for two, median of 6).
const splitRoundTrip = 5 * time.Millisecond

// Upload publishes src at p atomically through a resumable partial file.
// See backends.Backend. Failures: a lost or stalled connection wraps
// ErrUnreachable (retryable, the partial is kept); a full disk ErrNoSpace
// and a refusal ErrPermission (permanent, the partial is removed); a source
// that changed ErrSourceChanged (the partial is removed, as its name belongs
// to the old size and mtime). Safe for concurrent use with other uploads to
// different paths. On cancel, writes in flight are given a moment to finish
// (their connection is closed otherwise) and the partial is kept.
func (b *Backend) Upload(ctx context.Context, p string, src backends.Source) (backends.UploadResult, error) {
	var res backends.UploadResult
	if err := backends.CheckPath(p); err != nil {
		return res, fmt.Errorf("upload: %w", err)
	}
	if p == "" {
		return res, fmt.Errorf("upload: the target root: %w", backends.ErrUnsafePath)
	}
	if err := checkTime(src.ModTime()); err != nil {
		return res, fmt.Errorf("upload %s: %w", p, err)
	}
	get := b.get
	if b.batchable(src.Size()) {
		get = b.first
	} else {
		// Past one batch an upload queues up to a window of writes:
		// bounded apart from the many small ones the engine runs.
		select {
		case b.bulk <- struct{}{}:
			defer func() { <-b.bulk }()
			b.calls.Add(1)
			defer b.calls.Add(-1)
		case <-ctx.Done():
			return res, fmt.Errorf("upload %s: %w", p, ctx.Err())
		}
	}
	c, err := get(ctx)
	if err != nil {
		return res, fmt.Errorf("upload %s: %w", p, err)
	}
	u := &upload{b: b, c: c, p: p, src: src, final: b.full(p),
		partial: b.full(backends.PartialName(p, src.Size(), src.ModTime()))}
	defer u.stopPrefix()
	err = u.run(ctx, &res)
	if err == nil {
		u.dropStale(ctx)
		return res, nil
	}
	err = classify(c, "upload", p, err)
	if backends.IsPermanent(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, backends.ErrUnsafePath) && c.alive() {
		if rerr := c.sftp.Remove(u.partial); rerr == nil {
			b.log.Debug("removed partial after permanent failure", "path", p, "partial", u.partial)
		}
		u.dropStale(ctx)
	}
	return res, err
}

type upload struct {
	b              *Backend
	c              *conn
	p              string
	src            backends.Source
	final, partial string
	stale          []string   // partials resumed from, removed once done (resume.go)
	prefix         *prefixSum // the check of a resumed prefix under way (verify.go)
}

func (u *upload) step(ctx context.Context, fn func() error) error {
	return callCtx(ctx, fn)
}

func (u *upload) run(ctx context.Context, res *backends.UploadResult) error {
	b, c := u.b, u.c
	if dir, _ := backends.Split(u.p); dir != "" {
		if _, ok := c.dirs.Load(b.full(dir)); !ok {
			if err := u.step(ctx, func() error { return b.safeDir(c, dir, dirCreate) }); err != nil {
				return err
			}
		}
	}
	if c.raw != nil {
		var f *rawFile
		var err error
		if u.canSmall() {
			var done error
			if err, done = u.runSmall(ctx, res); err == nil {
				return done
			}
		} else if f, err = u.createRaw(ctx); err == nil {
			return u.runRaw(ctx, res, f)
		}
		if ctx.Err() != nil || !c.alive() {
			return err
		}
		// Most likely an earlier attempt left the partial: resume it.
		var sf *sftp.File
		err = u.step(ctx, func() error {
			var rerr error
			sf, res.Resumed, rerr = u.resumePartial(err)
			return rerr
		})
		if err != nil {
			return u.noSpace(err)
		}
		u.startPrefix(ctx, res.Resumed)
		if f, err := u.reopenRaw(ctx, sf); err == nil {
			return u.runRaw(ctx, res, f)
		}
		return u.runFile(ctx, res, sf, false)
	}
	var f *sftp.File
	var fresh bool
	err := u.step(ctx, func() error {
		var err error
		f, fresh, res.Resumed, err = u.openPartial()
		return err
	})
	if err != nil {
		return u.noSpace(err)
	}
	u.startPrefix(ctx, res.Resumed)
	return u.runFile(ctx, res, f, fresh)
}

// reopenRaw moves a resumed upload from the pkg/sftp handle that found and
// truncated its partial to a handle on the connection's own session, whose
// streamers write the rest with a fraction of the CPU of pkg/sftp's request
// per goroutine. The name is the partial the resume settled on (the copy
// made for this attempt, where the server copies), so no other attempt
// writes to it. On failure the pkg/sftp handle carries on.
func (u *upload) reopenRaw(ctx context.Context, sf *sftp.File) (*rawFile, error) {
	f, err := u.c.raw.openFile(ctx, u.partial, fxfRead|fxfWrite, rawAttrs{})
	if err != nil {
		return nil, err
	}
	sf.Close()
	return f, nil
}

// runFile uploads through a pkg/sftp handle on the partial: a resumed one,
// or, on a server that allows no second session, a new one, which starts
// with the server's default mode and is made owner-only by a chmod sent
// with the first writes.
func (u *upload) runFile(ctx context.Context, res *backends.UploadResult, f *sftp.File, fresh bool) error {
	c, src := u.c, u.src
	files := []io.WriterAt{f}
	closers := []io.Closer{f}
	// Once: a step abandoned on cancel may still be closing when the
	// deferred call runs, and pkg/sftp handles must be closed only once.
	closeAll := sync.OnceValue(func() error {
		var first error
		for _, f := range closers {
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	})
	defer closeAll()
	var private chan error
	if fresh {
		private = make(chan error, 1)
		go func() { private <- f.Chmod(0o600) }()
	}
	sent, err := u.write(ctx, res.Resumed, files, func(f2 writerAtCloser) { closers = append(closers, f2) })
	res.Sent = sent
	if private != nil {
		if perr := <-private; err == nil {
			err = perr
		}
	}
	if err != nil {
		return err
	}
	if err := src.Check(); err != nil {
		c.sftp.Remove(u.partial)
		u.dropStale(ctx)
		return err
	}
	err = u.step(ctx, func() error {
		if err := all(func() error { return u.checkSize(f) },
			func() error { return f.Chmod(src.Mode().Perm()) },
			func() error { return setTimes(c, u.partial, src.ModTime()) }); err != nil {
			return err
		}
		return closeAll()
	})
	if err != nil {
		return u.noSpace(err)
	}
	return u.step(ctx, func() error { return u.publish(ctx, res) })
}

// writerAtCloser is an open handle on the partial, of pkg/sftp or of the
// connection's own session.
type writerAtCloser interface {
	io.WriterAt
	io.Closer
}

// write sends src[from:] through the pipeline over files, adding a second
// connection for a large remainder (its handle is given to addCloser), and
// returns the bytes acknowledged.
func (u *upload) write(ctx context.Context, from int64, files []io.WriterAt, addCloser func(writerAtCloser)) (int64, error) {
	b, c, src := u.b, u.c, u.src
	conns := []*conn{c}
	if src.Size()-from >= b.splitAt && len(b.slots) > 1 && c.minRTT() >= b.splitRTT {
		if c2, f2 := u.second(ctx); f2 != nil {
			addCloser(f2)
			files, conns = append(files, f2), append(conns, c2)
		}
	}
	pl := &pipeline{src: src, files: files, conns: conns, start: from, end: src.Size(),
		chunk: int64(b.cfg.ChunkSize), window: int64(b.cfg.RequestsInFlight), workers: b.cfg.RequestsInFlight * len(files),
		stall: b.cfg.StallTimeout, grace: 2 * time.Second}
	t0 := time.Now()
	sent, err := pl.run(ctx)
	if err != nil {
		var we *writeErr
		if errors.As(err, &we) && we.c != c {
			// The second connection failed: classify against it, not ours.
			return sent, classify(we.c, "write", u.partial, err)
		}
		return sent, u.noSpace(err)
	}
	b.log.Debug("upload written", "path", u.p, "sent", sent, "resumed", from,
		"conns", len(conns), "took", time.Since(t0).Round(time.Millisecond))
	return sent, nil
}

// checksContent reports whether an upload that resumed from resumed (0: a
// new one) has its content checked before it is published, beyond its
// size: always with --verify hash or read-back; with auto, when it resumed
// past the window, since a resume compares only the window below the
// partial's end with the source.
func (b *Backend) checksContent(resumed int64) bool {
	return b.cfg.Verify.checksWhole() || b.cfg.Verify == VerifyAuto && resumed > b.window()
}

// window is how many bytes of one file may be in flight: requests in
// flight x chunk size. A failed upload can leave holes or garbage only
// within the window below the partial's end, which is what a resume
// compares with the source (backends.ResumeOffset).
func (b *Backend) window() int64 {
	return int64(b.cfg.RequestsInFlight) * int64(b.cfg.ChunkSize)
}

// all runs fns concurrently and returns the first error.
func all(fns ...func() error) error {
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errs <- fn() }()
	}
	var first error
	for range fns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// checkSize fails unless the partial holds exactly the source's size.
func (u *upload) checkSize(f *sftp.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != u.src.Size() {
		return fmt.Errorf("partial %s holds %d bytes after the upload, want %d", u.partial, fi.Size(), u.src.Size())
	}
	return nil
}

// openPartial opens the partial for writing: a new one (exclusive create,
// which also never follows a symlink planted at its name), or the one an
// earlier attempt left, resumed from its verified length.
func (u *upload) openPartial() (f *sftp.File, fresh bool, resumed int64, err error) {
	f, err = u.c.sftp.OpenFile(u.partial, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err == nil {
		return f, true, 0, nil
	}
	f, resumed, err = u.resumePartial(err)
	return f, false, resumed, err
}

// resumePartial opens the partial an earlier attempt left, after creating
// it failed with createErr, truncated to its verified length.
func (u *upload) resumePartial(createErr error) (f *sftp.File, resumed int64, err error) {
	c := u.c
	fi, lerr := c.sftp.Lstat(u.partial)
	switch {
	case errors.Is(lerr, fs.ErrNotExist):
		return nil, 0, createErr // the create failed for another reason
	case lerr != nil:
		return nil, 0, lerr
	case !fi.Mode().IsRegular():
		return nil, 0, fmt.Errorf("partial %s is not a regular file: %w", u.partial, backends.ErrUnsafePath)
	}
	if u.canCopy() {
		t0 := time.Now()
		f, off, err := u.resumeByCopy()
		if err == nil {
			u.b.log.Info("resuming upload", "path", u.p, "partial_size", fi.Size(), "verified", off, "size", u.src.Size(),
				"took", time.Since(t0).Round(time.Millisecond))
			return f, off, nil
		}
		if !copyFailed(c, err) {
			return nil, 0, err
		}
		u.b.log.Debug("server-side copy failed; resuming in place", "path", u.p, "err", err)
	} else {
		u.b.log.Debug("resume in place: the server offers no copy-data", "path", u.p)
	}
	f, err = c.sftp.OpenFile(u.partial, os.O_RDWR)
	if errors.Is(err, fs.ErrPermission) {
		// An attempt that failed after giving the partial a read-only
		// source's mode; the partial is ours, so make it writable again.
		if c.sftp.Chmod(u.partial, 0o600) == nil {
			f, err = c.sftp.OpenFile(u.partial, os.O_RDWR)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	window := u.b.window()
	off, err := backends.ResumeOffset(f, fi.Size(), u.src, u.src.Size(), window)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if off < u.src.Size() && fi.Mode().Perm() != 0o600 {
		// A partial sealed with the source's mode, then found short:
		// private again before it is incomplete.
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	if off != fi.Size() {
		if err := f.Truncate(off); err != nil {
			f.Close()
			return nil, 0, err
		}
	}
	u.b.log.Info("resuming upload", "path", u.p, "partial_size", fi.Size(), "verified", off, "size", u.src.Size())
	return f, off, nil
}

// second opens the partial on another pooled connection, so a large file
// moves over two streams. Failing that, the upload goes on with one.
func (u *upload) second(ctx context.Context) (*conn, writerAtCloser) {
	c2, err := u.b.connAt(ctx, u.c.id+1)
	if err != nil || c2 == u.c {
		return nil, nil
	}
	var f writerAtCloser
	if rs := c2.raw; rs != nil {
		var rf *rawFile
		if rf, err = rs.openFile(ctx, u.partial, fxfWrite, rawAttrs{}); err == nil {
			f = rf
		}
	} else {
		err = callCtx(ctx, func() error {
			var err error
			f, err = c2.sftp.OpenFile(u.partial, os.O_WRONLY)
			return err
		})
	}
	if err != nil {
		u.b.log.Debug("second connection unavailable for upload", "path", u.p, "err", err)
		return nil, nil
	}
	return c2, f
}

// publish verifies the partial's content where asked and renames it over
// the final name.
func (u *upload) publish(ctx context.Context, res *backends.UploadResult) error {
	b, c := u.b, u.c
	res.Verified = "size"
	switch b.cfg.Verify {
	case VerifyHash:
		how, err := u.verifyHash(ctx, true)
		if err != nil {
			return err
		}
		res.Verified = how
	case VerifyAuto:
		if b.checksContent(res.Resumed) {
			how, err := u.verifyResumed(ctx, res.Resumed)
			if err != nil {
				return err
			}
			res.Verified = how
		}
	case VerifyReadBack:
		if err := u.readBack(); err != nil {
			return err
		}
		res.Verified = "read-back"
	}
	if _, seen := b.verifiedBy.LoadOrStore(res.Verified, true); !seen {
		b.log.Info("uploads are verified", "how", res.Verified, "asked", string(b.cfg.Verify), "addr", b.cfg.addr)
	}
	b.log.Debug("upload verified", "path", u.p, "how", res.Verified)
	if err := b.replace(c, u.partial, u.final); err != nil {
		return u.renameFailed(err)
	}
	return nil
}

// renameFailed tells a final name taken by a directory (permanent) from
// other failures of the rename that publishes.
func (u *upload) renameFailed(err error) error {
	if fi, serr := u.c.sftp.Lstat(u.final); serr == nil && fi.IsDir() {
		return backends.Permanent(fmt.Errorf("%s is a directory: %w", u.final, err))
	}
	return err
}

// sftpTime reports whether SFTP version 3 can carry t: it sends seconds as
// an unsigned 32-bit number, 1970 to 2106.
func sftpTime(t time.Time) bool {
	s := t.Unix()
	return s >= 0 && s <= math.MaxUint32
}

// checkTime refuses, before any I/O, an mtime SFTP cannot carry. Setting
// it by other means would not help: a later Stat reads it back through the
// same 32 bits, wrongly, and the file would look changed on every run.
func checkTime(t time.Time) error {
	if sftpTime(t) {
		return nil
	}
	return fmt.Errorf("mtime %s is outside what SFTP can store (1970 to 2106): %w",
		t.UTC().Format(time.RFC3339), backends.ErrUnsupported)
}

// setTimes sets atime and mtime of full to t.
func setTimes(c *conn, full string, t time.Time) error {
	if err := checkTime(t); err != nil {
		return err
	}
	return c.sftp.Chtimes(full, t, t)
}

// mismatch drops a partial whose content proved wrong, so the retry starts
// over rather than resuming garbage.
func (u *upload) mismatch(how string) error {
	u.c.sftp.Remove(u.partial)
	u.removeOn(u.c, u.stale)
	u.stale = nil
	return fmt.Errorf("content of %s differs from the source after upload (%s); partial removed", u.p, how)
}

// noSpace turns a generic failure into ErrNoSpace when the server's file
// system is (nearly) full, or into ErrPermission when it is mounted
// read-only: OpenSSH reports ENOSPC and EROFS as SSH_FX_FAILURE.
func (u *upload) noSpace(err error) error {
	if !isFailure(err) || !u.c.alive() {
		return err
	}
	need := u.b.window()
	if cause := failureCause(u.c, path.Dir(u.partial), err, need); cause != nil {
		return cause
	}
	return err
}
