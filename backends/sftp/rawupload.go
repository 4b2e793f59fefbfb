package sftp

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// testHookPartialCreated, when set by a test, runs once a new partial
// exists on the server and before anything is written to it.
var testHookPartialCreated func(partial string)

// batchChunks is how many chunks a file may span to be sent as one batch
// of requests rather than through the pipeline's workers.
const batchChunks = 8

// batchBufs holds the buffers of batched uploads.
var batchBufs sync.Pool

// createRaw creates the partial, exclusively (which never follows a link
// planted at its name) and owner-only from its first moment, on the
// connection's own session.
func (u *upload) createRaw(ctx context.Context) (*rawFile, error) {
	t0 := time.Now()
	// On failure the server may still create it; a retry resumes or
	// restarts it.
	f, err := u.c.raw.openFile(ctx, u.partial, fxfRead|fxfWrite|fxfCreat|fxfExcl, rawAttrs{flags: attrPerm, perm: 0o600})
	u.c.noteRTT(time.Since(t0))
	return f, err
}

// runRaw uploads into a partial createRaw made, or from res.Resumed on into
// one a resume reopened. The requests of each phase go out together: the
// writes, then, once all of them are confirmed (so an incomplete partial is
// never readable by others, nor published), the source's mode and mtime with
// the close, then, once those are confirmed, the rename that publishes.
func (u *upload) runRaw(ctx context.Context, res *backends.UploadResult, f *rawFile) (err error) {
	b, c, src := u.b, u.c, u.src
	var extra []writerAtCloser
	defer func() {
		for _, f2 := range extra {
			f2.Close()
		}
		if err != nil {
			f.release()
		}
	}()
	from := res.Resumed
	if testHookPartialCreated != nil && from == 0 {
		testHookPartialCreated(u.partial)
	}
	rs := c.raw
	if from == 0 && b.batchable(src.Size()) {
		// No size check by FSTAT: the partial was created by this upload,
		// and a server confirms a write only once all its bytes are
		// written, so confirmed writes covering the source are its size.
		// (Nor could an FSTAT go with the writes: servers may answer it
		// before writes queued ahead of it.)
		res.Sent, err = u.writeBatch(ctx, f)
		if err != nil {
			return u.noSpace(err)
		}
	} else {
		res.Sent, err = u.write(ctx, from, []io.WriterAt{f}, func(f2 writerAtCloser) { extra = append(extra, f2) })
		if err != nil {
			return err
		}
		// Two connections wrote this one, or a resume wrote the rest of
		// what an earlier attempt left: check the sum.
		fstat := rs.fstat(f.h)
		rs.flush()
		if err := u.await(ctx, []*rawCall{fstat}); err != nil {
			return err
		}
		a, err := fstat.attrs()
		if err != nil {
			return err
		}
		if int64(a.size) != src.Size() {
			return fmt.Errorf("partial %s holds %d bytes after the upload, want %d", u.partial, a.size, src.Size())
		}
	}
	if err := src.Check(); err != nil {
		c.sftp.Remove(u.partial)
		u.dropStale(ctx)
		return err
	}
	mt := uint32(src.ModTime().Unix())
	seal := []*rawCall{rs.fsetstat(f.h, rawAttrs{flags: attrPerm | attrTimes, perm: uint32(src.Mode().Perm()), atime: mt, mtime: mt})}
	if call := f.queueClose(); call != nil {
		seal = append(seal, call)
	}
	// The rename waits for the seal's answers: a filesystem may report a
	// deferred write error only at close (NFS), and a file must not reach
	// its final name before it is known whole. That costs a small file one
	// round trip; a torn file at a final name would cost far more.
	rs.flush()
	if err := u.await(ctx, seal); err != nil {
		return err
	}
	for _, call := range seal {
		if err := call.status(); err != nil {
			return u.noSpace(err)
		}
	}
	if b.checksContent(from) || !rs.posixRename {
		return u.step(ctx, func() error { return u.publish(ctx, res) })
	}
	ren := rs.rename(u.partial, u.final)
	rs.flush()
	if err := u.await(ctx, []*rawCall{ren}); err != nil {
		return err
	}
	if err := ren.status(); err != nil {
		return u.renameFailed(err)
	}
	res.Verified = "size"
	if _, seen := b.verifiedBy.LoadOrStore(res.Verified, true); !seen {
		b.log.Info("uploads are verified", "how", res.Verified, "asked", string(b.cfg.Verify), "addr", b.cfg.addr)
	}
	return nil
}

// writeBatch sends the whole of a small source in one go and waits for
// every answer.
func (u *upload) writeBatch(ctx context.Context, f *rawFile) (int64, error) {
	src, rs := u.src, f.rs
	size := src.Size()
	bp, _ := batchBufs.Get().(*[]byte)
	if bp == nil || int64(cap(*bp)) < size {
		bp = new([]byte)
		*bp = make([]byte, size)
	}
	defer batchBufs.Put(bp)
	buf := (*bp)[:size]
	if n, err := src.ReadAt(buf, 0); int64(n) < size {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("source ends before %d bytes: %w", size, backends.ErrSourceChanged)
		}
		return 0, fmt.Errorf("read source: %w", err)
	}
	chunk := int64(u.b.cfg.ChunkSize)
	calls := make([]*rawCall, 0, size/chunk+2)
	for off := int64(0); off < size; off += chunk {
		calls = append(calls, rs.write(f.h, off, buf[off:min(off+chunk, size)]))
	}
	rs.flush()
	// The buffer is copied into the outgoing requests by now.
	if err := u.await(ctx, calls); err != nil {
		return 0, err
	}
	for i, call := range calls {
		if err := call.status(); err != nil {
			return int64(i) * chunk, &writeErr{c: u.c, off: int64(i) * chunk, err: err}
		}
	}
	return size, nil
}

// await waits for calls to be answered. On cancel, requests in flight get
// a moment to finish, after which the connection is closed, so that no
// write of this attempt lands after a later one; a server that answers
// nothing for the stall timeout has its connection closed too.
func (u *upload) await(ctx context.Context, calls []*rawCall) error {
	stall := u.b.cfg.StallTimeout
	t := time.NewTimer(stall)
	defer t.Stop()
	for _, call := range calls {
		select {
		case <-call.done:
			if call.err != nil {
				return call.err
			}
			t.Reset(stall)
		case <-ctx.Done():
			grace := time.NewTimer(2 * time.Second)
			defer grace.Stop()
			for _, call := range calls {
				select {
				case <-call.done:
				case <-grace.C:
					u.c.abandon("upload cancelled with writes still in flight")
					return ctx.Err()
				}
			}
			return ctx.Err()
		case <-t.C:
			u.c.abandon(fmt.Sprintf("upload stalled for %s", stall))
			return fmt.Errorf("%w: no answer for %s: %w", errStalled, stall, backends.ErrUnreachable)
		}
	}
	return nil
}
