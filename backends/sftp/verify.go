package sftp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ferrysync/ferry/backends"
)

// verifyHash compares the server's SHA-256 of the partial with the
// source's. Where the server cannot hash, it reads the partial back if
// readBack is set, or settles for the size already checked. The two sums
// are computed at once, each on its own machine: on a large file each
// takes seconds.
func (u *upload) verifyHash(ctx context.Context, readBack bool) (string, error) {
	err := u.b.canExec(ctx, u.c)
	if backends.IsUnsupported(err) {
		if !readBack {
			return "size", nil
		}
		u.b.log.Debug("server cannot hash; verifying by read-back", "path", u.p)
		return "read-back", u.readBack()
	}
	if err != nil {
		return "", err
	}
	type sum struct {
		hex string
		err error
	}
	localc := make(chan sum, 1)
	var stop atomic.Bool
	go func() {
		h := sha256.New()
		r := &stoppable{r: io.NewSectionReader(u.src, 0, u.src.Size()), stop: &stop}
		if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
			localc <- sum{err: fmt.Errorf("hash source: %w", err)}
			return
		}
		localc <- sum{hex: hex.EncodeToString(h.Sum(nil))}
	}()
	remote, err := u.b.remoteHash(ctx, u.c, u.partial)
	if err != nil {
		// Stopped and waited for: the caller closes the source next.
		stop.Store(true)
		<-localc
		return "", err
	}
	local := <-localc
	if local.err != nil {
		return "", local.err
	}
	if local.hex != remote {
		return "", u.mismatch("sha256 " + remote + " != " + local.hex)
	}
	return "sha256", nil
}

// stoppable is a reader that fails once stop is set, between reads.
type stoppable struct {
	r    io.Reader
	stop *atomic.Bool
}

var errHashStopped = errors.New("stopped")

func (s *stoppable) Read(p []byte) (int, error) {
	if s.stop.Load() {
		return 0, errHashStopped
	}
	return s.r.Read(p)
}

func (u *upload) readBack() error {
	f, err := u.c.sftp.Open(u.partial)
	if err != nil {
		return err
	}
	defer f.Close()
	const chunk = 1 << 20
	rb, sb := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < u.src.Size(); off += chunk {
		n := min(chunk, u.src.Size()-off)
		if _, err := f.ReadAt(rb[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("read back at %d: %w", off, err)
		}
		if _, err := u.src.ReadAt(sb[:n], off); err != nil && err != io.EOF {
			return fmt.Errorf("read source at %d: %w", off, err)
		}
		if !bytes.Equal(rb[:n], sb[:n]) {
			return u.mismatch(fmt.Sprintf("read-back differs in the MiB at %d", off))
		}
	}
	return nil
}

// prefixSum checks the prefix a resumed upload kept while the rest is
// written: the server's SHA-256 of the partial's first n bytes, and the
// source's. The bytes this attempt writes are confirmed write by write,
// as for a new upload; the kept ones were written by an earlier attempt,
// and a resume compares only the window below their end with the source.
// Hashing them while the upload runs, rather than the whole file after
// it, saves the seconds per GiB a server takes to hash.
type prefixSum struct {
	n      int64
	cancel context.CancelFunc
	stop   atomic.Bool   // ends the source's hash between reads
	done   chan struct{} // closed once both sums are in
	// Set before done is closed.
	remote, local string
	err           error // the server's sum failed
	localErr      error
}

// startPrefix starts the check of a prefix of n bytes the upload resumed
// from, when --verify auto will want one (see checksContent) and the
// account can run commands.
func (u *upload) startPrefix(ctx context.Context, n int64) {
	b := u.b
	if b.cfg.Verify != VerifyAuto || !b.checksContent(n) || b.canExec(ctx, u.c) != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	ps := &prefixSum{n: n, cancel: cancel, done: make(chan struct{})}
	c, partial := u.c, u.partial
	go func() {
		defer close(ps.done)
		var wg sync.WaitGroup
		wg.Go(func() {
			h := sha256.New()
			r := &stoppable{r: io.NewSectionReader(u.src, 0, n), stop: &ps.stop}
			if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
				ps.localErr = fmt.Errorf("hash source: %w", err)
				return
			}
			ps.local = hex.EncodeToString(h.Sum(nil))
		})
		cmd := fmt.Sprintf("head -c %d -- %s | sha256sum", n, shellQuote(partial))
		out, err := execOutput(ctx, c, cmd, 0)
		if err == nil {
			ps.remote, err = parseSum(out)
		}
		if err != nil {
			ps.err = err
			ps.stop.Store(true)
		}
		wg.Wait()
	}()
	u.prefix = ps
}

// stopPrefix ends a prefix check still under way and waits for it, so
// that nothing reads the source once the upload returns.
func (u *upload) stopPrefix() {
	if ps := u.prefix; ps != nil {
		ps.stop.Store(true)
		ps.cancel()
		<-ps.done
	}
}

// verifyResumed checks an upload that resumed from n under --verify auto:
// by the prefix check started on resume, or where that could not run (no
// head on the server, whose pipe then hashes nothing), by the whole file.
func (u *upload) verifyResumed(ctx context.Context, n int64) (string, error) {
	ps := u.prefix
	if ps == nil || ps.n != n {
		return u.verifyHash(ctx, false)
	}
	select {
	case <-ps.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if ps.err != nil || ps.remote == emptySHA256 {
		if ps.err != nil && !u.c.alive() {
			return "", ps.err
		}
		u.b.log.Debug("server could not hash the kept prefix; hashing the whole file", "path", u.p, "err", ps.err)
		return u.verifyHash(ctx, false)
	}
	if ps.localErr != nil {
		return "", ps.localErr
	}
	if ps.local != ps.remote {
		return "", u.mismatch(fmt.Sprintf("sha256 of the first %d bytes %s != %s", n, ps.remote, ps.local))
	}
	return "sha256-prefix", nil
}
