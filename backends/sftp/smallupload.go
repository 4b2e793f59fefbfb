package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// small is the upload of a file small enough to be sent as one batch of
// writes, driven from the session's reader: each answer, as it is handed
// out, queues the next step (OPEN, then the writes, then mode, mtime and
// CLOSE, then the rename), so a file costs its caller one wake-up instead
// of one per round trip, and the steps of many files go out together in
// the writes readLoop makes after each batch of answers. The order and the
// checks are those of runRaw: nothing is published before the writes, the
// source's check, the mode, the mtime and the close are all confirmed.
//
// The steps run on readLoop's goroutine, so they never block: anything
// that may wait (a chmod, a stat, a remove over pkg/sftp) is left to the
// caller, which gets the phase that failed.
type small struct {
	u    *upload
	rs   *rawSession
	buf  *[]byte // the source's bytes, until they are queued
	size int64
	t0   time.Time

	h    string // the partial's handle, once open
	stop atomic.Bool
	// last is when a step was last answered (UnixNano), for the stall
	// timer: a clock the waiter reads when its timer fires rather than a
	// signal that would wake it at every step.
	last atomic.Int64
	done chan struct{}

	// Set before done is closed.
	phase smallPhase
	err   error
	sent  int64

	// The steps' state, under mu: a lost session may settle some calls on
	// another goroutine than readLoop's.
	mu       sync.Mutex
	left     int   // writes not yet answered
	firstBad int   // lowest write the server refused, or -1
	badErr   error // its error
	connErr  error // the session was lost
	sealLeft int
	sealErr  error
}

// smallPhase is the step a small upload failed in.
type smallPhase int

const (
	phaseOpen   smallPhase = iota // creating the partial; nothing is written
	phaseWrite                    // a write failed
	phaseSource                   // the source changed
	phaseSeal                     // mode, mtime or close failed
	phaseRename                   // the rename that publishes failed
	phaseDone
)

// errSmallStopped ends a small upload whose caller gave up on it.
var errSmallStopped = errors.New("upload stopped")

// canSmall reports whether the upload can be driven as a small one: ferry's
// own session with posix-rename, a size that fits in one batch, and no
// verification beyond the size.
func (u *upload) canSmall() bool {
	rs := u.c.raw
	return rs != nil && rs.posixRename && !u.b.cfg.Verify.checksWhole() && u.b.batchable(u.src.Size())
}

// batchable reports whether a file of size is sent as one batch of writes.
func (b *Backend) batchable(size int64) bool {
	chunks := (size + int64(b.cfg.ChunkSize) - 1) / int64(b.cfg.ChunkSize)
	return chunks <= min(batchChunks, int64(b.cfg.RequestsInFlight))
}

// runSmall uploads a small source. errCreate is non-nil when creating the
// partial failed, which the caller handles as runRaw's creation failures
// (most likely a partial of an earlier attempt, to resume).
func (u *upload) runSmall(ctx context.Context, res *backends.UploadResult) (errCreate, err error) {
	size := u.src.Size()
	bp, _ := batchBufs.Get().(*[]byte)
	if bp == nil || int64(cap(*bp)) < size {
		bp = new([]byte)
		*bp = make([]byte, size)
	}
	if n, err := u.src.ReadAt((*bp)[:size], 0); int64(n) < size {
		batchBufs.Put(bp)
		if err == nil || err == io.EOF {
			err = fmt.Errorf("source ends before %d bytes: %w", size, backends.ErrSourceChanged)
		}
		return nil, fmt.Errorf("read source: %w", err)
	}
	m := &small{u: u, rs: u.c.raw, buf: bp, size: size, t0: time.Now(), firstBad: -1, done: make(chan struct{})}
	m.last.Store(m.t0.UnixNano())
	m.rs.queueThen(fxpOpen, func(b []byte) []byte {
		a := rawAttrs{flags: attrPerm, perm: 0o600}
		return a.append(putU32(putStr(b, u.partial), fxfRead|fxfWrite|fxfCreat|fxfExcl))
	}, m.opened)
	m.rs.flush()
	if err := m.wait(ctx); err != nil {
		return nil, err
	}
	res.Sent = m.sent
	switch m.phase {
	case phaseDone:
		res.Verified = "size"
		if _, seen := u.b.verifiedBy.LoadOrStore(res.Verified, true); !seen {
			u.b.log.Info("uploads are verified", "how", res.Verified, "asked", string(u.b.cfg.Verify), "addr", u.b.cfg.addr)
		}
		return nil, nil
	case phaseOpen:
		if errors.Is(m.err, errSmallStopped) {
			return nil, ctx.Err()
		}
		return m.err, nil
	}
	var se *rawStatusErr
	if !errors.As(m.err, &se) {
		return nil, m.err // the connection was lost, or the caller gave up
	}
	switch m.phase {
	case phaseSource:
		u.c.sftp.Remove(u.partial)
		return nil, m.err
	case phaseRename:
		return nil, u.renameFailed(se.err)
	}
	return nil, u.noSpace(m.err)
}

// rawStatusErr marks an error the server answered with, as opposed to a
// lost connection: only those are worth a closer look by the caller.
type rawStatusErr struct{ err error }

func (e *rawStatusErr) Error() string { return e.err.Error() }
func (e *rawStatusErr) Unwrap() error { return e.err }

// wait waits for the upload to end. On cancel, the steps queue nothing
// more and the requests in flight get a moment to finish, after which the
// connection is closed, so that no write of this attempt lands after a
// later one; a server that answers nothing for the stall timeout has its
// connection closed too.
func (m *small) wait(ctx context.Context) error {
	u := m.u
	stall := u.b.cfg.StallTimeout
	t := time.NewTimer(stall)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return nil
		case <-ctx.Done():
			m.stop.Store(true)
			grace := time.NewTimer(2 * time.Second)
			defer grace.Stop()
			select {
			case <-m.done:
				if m.phase == phaseDone {
					return nil // published before the cancel took
				}
			case <-grace.C:
				u.c.abandon("upload cancelled with writes still in flight")
				<-m.done
			}
			return ctx.Err()
		case <-t.C:
			if quiet := time.Since(time.Unix(0, m.last.Load())); quiet < stall {
				t.Reset(stall - quiet)
				continue
			}
			u.c.abandon(fmt.Sprintf("upload stalled for %s", stall))
			<-m.done
			return fmt.Errorf("%w: no answer for %s: %w", errStalled, stall, backends.ErrUnreachable)
		}
	}
}

// step notes an answer for the stall timer and reports whether to go on.
func (m *small) step() bool {
	m.last.Store(time.Now().UnixNano())
	return !m.stop.Load()
}

// finish ends the upload in phase with err; the partial's handle, if
// open, is closed without waiting after a failure.
func (m *small) finish(phase smallPhase, err error) {
	if m.buf != nil {
		batchBufs.Put(m.buf)
		m.buf = nil
	}
	if err != nil && m.h != "" && phase < phaseSeal {
		m.rs.close(m.h)
	}
	m.phase, m.err = phase, err
	close(m.done)
}

func (m *small) opened(call *rawCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.u.c.noteRTT(time.Since(m.t0))
	h, err := call.handle()
	if err != nil {
		m.finish(phaseOpen, err)
		return
	}
	m.h = h
	if !m.step() {
		m.finish(phaseOpen, errSmallStopped)
		return
	}
	if testHookPartialCreated != nil {
		testHookPartialCreated(m.u.partial)
	}
	// No size check by FSTAT: the partial was created by this upload, and
	// a server confirms a write only once all its bytes are written, so
	// confirmed writes covering the source are its size. (Nor could an
	// FSTAT go with the writes: servers may answer it before writes queued
	// ahead of it.)
	chunk := int64(m.u.b.cfg.ChunkSize)
	buf := (*m.buf)[:m.size]
	m.left = int((m.size + chunk - 1) / chunk)
	if m.left == 0 {
		m.written()
		return
	}
	m.left++ // held until all are queued: an answer must not finish early
	for i, off := 0, int64(0); off < m.size; i, off = i+1, off+chunk {
		m.rs.writeThen(h, off, buf[off:min(off+chunk, m.size)], func(call *rawCall) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.wrote(i, call)
		})
	}
	// The queued requests hold their own copies of the bytes.
	batchBufs.Put(m.buf)
	m.buf = nil
	m.wrote(-1, nil)
}

// wrote takes the answer to write i (-1: the last write was queued). A
// lost connection counts before a refused write; of refused writes, the
// lowest says how much was sent.
func (m *small) wrote(i int, call *rawCall) {
	if call != nil {
		if call.err != nil {
			m.connErr = call.err
		} else if err := call.status(); err != nil && (m.firstBad < 0 || i < m.firstBad) {
			m.firstBad, m.badErr = i, err
		}
	}
	if m.left--; m.left > 0 {
		return
	}
	chunk := int64(m.u.b.cfg.ChunkSize)
	switch {
	case m.connErr != nil:
		m.finish(phaseWrite, m.connErr)
	case m.badErr != nil:
		m.sent = int64(m.firstBad) * chunk
		m.finish(phaseWrite, &rawStatusErr{&writeErr{c: m.u.c, off: m.sent, err: m.badErr}})
	default:
		m.written()
	}
}

// written runs once every write is confirmed: the source's check, then
// mode, mtime and close together.
func (m *small) written() {
	m.sent = m.size
	if !m.step() {
		m.finish(phaseWrite, errSmallStopped)
		return
	}
	src := m.u.src
	if err := src.Check(); err != nil {
		m.finish(phaseSource, &rawStatusErr{err})
		return
	}
	mt := uint32(src.ModTime().Unix())
	a := rawAttrs{flags: attrPerm | attrTimes, perm: uint32(src.Mode().Perm()), atime: mt, mtime: mt}
	m.sealLeft = 2
	m.rs.queueThen(fxpFsetstat, func(b []byte) []byte { return a.append(putStr(b, m.h)) }, m.sealed)
	m.rs.queueThen(fxpClose, func(b []byte) []byte { return putStr(b, m.h) }, m.sealed)
}

// sealed takes the answers to the mode and mtime and to the close. The
// rename waits for both: a filesystem may report a deferred write error
// only at close (NFS), and a file must not reach its final name before it
// is known whole.
func (m *small) sealed(call *rawCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sealErr == nil {
		if call.err != nil {
			m.sealErr = call.err
		} else if err := call.status(); err != nil {
			m.sealErr = &rawStatusErr{err}
		}
	}
	if m.sealLeft--; m.sealLeft > 0 {
		return
	}
	if m.sealErr != nil {
		m.finish(phaseSeal, m.sealErr)
		return
	}
	if !m.step() {
		m.finish(phaseSeal, errSmallStopped)
		return
	}
	u := m.u
	m.rs.queueThen(fxpExtended, func(b []byte) []byte {
		return putStr(putStr(putStr(b, "posix-rename@openssh.com"), u.partial), u.final)
	}, m.renamed)
}

func (m *small) renamed(call *rawCall) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if call.err != nil {
		m.finish(phaseRename, call.err)
		return
	}
	if err := call.status(); err != nil {
		m.finish(phaseRename, &rawStatusErr{err})
		return
	}
	m.finish(phaseDone, nil)
}
