package sftp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// rawSession is ferry's own SFTP version 3 client, on a second "sftp"
// subsystem session of a connection. It exists for uploads: pkg/sftp sends
// no attributes with SSH_FXP_OPEN, so a file it creates starts with the
// server's default mode, readable by others until a later chmod; this
// session creates a partial owner-only in the OPEN itself. It carries the
// whole upload of a new partial too: requests queued together go out in
// one channel write (several requests per SSH packet, one system call),
// and requests of concurrent uploads share those writes, which saves
// packets and system calls on both ends.
//
// Requests are matched to answers by id. The session dies with its
// connection: every pending call then fails with an error wrapping
// sftp.ErrSSHFxConnectionLost, so errors classify as pkg/sftp's do.
type rawSession struct {
	ch          ssh.Channel
	wg          *sync.WaitGroup // the connection's goroutines
	written     atomic.Int64    // bytes of file data sent with WRITE
	posixRename bool
	copyData    bool // the server copies between handles (copy-data)

	mu      sync.Mutex
	next    uint32
	pending map[uint32]*rawCall
	err     error // why the session ended, once it has

	wmu      sync.Mutex
	out      []byte // requests queued, not yet written
	outN     int64  // how many requests out holds
	spare    []byte
	flushing bool // a caller is writing out; others only queue
	// inflight counts the requests written and not yet answered. While
	// it is above zero, flush leaves what is queued to readLoop, which
	// writes it out after handing out the next answers: requests then
	// travel in batches, one channel write for what many uploads asked
	// meanwhile, and so do the server's answers.
	inflight atomic.Int64
}

// rawCall is one request awaiting its answer.
type rawCall struct {
	done chan struct{}
	// then, when set, runs once the call is settled, after done is
	// closed: on readLoop's goroutine with the answer (so it must not
	// block; what it queues goes out after the answers at hand are handed
	// out), or on another goroutine when the session ended.
	then func(*rawCall)
	typ  byte   // answer's packet type
	body []byte // answer after the request id
	err  error  // the session ended before the answer came
}

// errNoRawSession means the server refused a second sftp session; the
// connection then works with pkg/sftp alone.
var errNoRawSession = errors.New("server refused a second sftp session")

// openRawSession starts the session on client and exchanges INIT and
// VERSION. Its goroutines are counted in wg and end when the connection
// closes. The caller bounds the exchange with a deadline on the socket.
func openRawSession(client *ssh.Client, wg *sync.WaitGroup) (*rawSession, error) {
	ch, reqs, err := client.OpenChannel("session", nil)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return nil, fmt.Errorf("%w: %v", errNoRawSession, err)
		}
		return nil, err
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, ch.Stderr())
	}()
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
	if err == nil && !ok {
		err = errNoRawSession
	}
	if err != nil {
		ch.Close()
		return nil, err
	}
	if _, err := ch.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3}); err != nil {
		ch.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(ch, 64<<10)
	var hdr [4]byte
	b, err := readPacket(br, hdr[:])
	if err == nil && (len(b) < 5 || b[0] != fxpVersion) {
		err = fmt.Errorf("sftp: unexpected answer (type %d) to INIT", b[0])
	}
	if err != nil {
		ch.Close()
		return nil, err
	}
	rs := &rawSession{ch: ch, pending: map[uint32]*rawCall{}, wg: wg}
	rs.posixRename, rs.copyData = versionExtensions(b[5:])
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs.readLoop(br)
	}()
	return rs, nil
}

// versionExtensions reads the extensions a VERSION body after the version
// number announces. A truncated list counts for what it held whole.
func versionExtensions(body []byte) (posixRename, copyData bool) {
	d := &decoder{b: body}
	for len(d.b) > 0 && d.err == nil {
		name, data := d.str(), d.str()
		if d.err != nil {
			break
		}
		switch {
		case name == "posix-rename@openssh.com" && data == "1":
			posixRename = true
		case name == "copy-data" && data == "1":
			copyData = true
		}
	}
	return posixRename, copyData
}

// readLoop hands each answer to its call until the session ends. Once it
// has read every whole answer that arrived, it writes out what was queued
// meanwhile (see flush); a moment first, so that the callers it woke can
// ask their next requests and those go out in the same write.
func (rs *rawSession) readLoop(br *bufio.Reader) {
	var hdr [4]byte
	handed := false
	for {
		if !wholePacketBuffered(br) {
			if handed {
				runtime.Gosched()
				handed = false
			}
			rs.flushFromReader()
		}
		b, err := readPacket(br, hdr[:])
		if err == nil && len(b) < 5 {
			err = errShortPacket
		}
		if err != nil {
			rs.fail(err)
			return
		}
		id := binary.BigEndian.Uint32(b[1:5])
		rs.mu.Lock()
		call := rs.pending[id]
		delete(rs.pending, id)
		rs.mu.Unlock()
		if call == nil {
			rs.fail(fmt.Errorf("sftp: answer to unknown request %d", id))
			return
		}
		call.typ, call.body = b[0], b[5:]
		// Before the caller wakes: what it queues next must see this
		// answer counted, or it could be left for a flush that already ran.
		rs.inflight.Add(-1)
		handed = true
		close(call.done)
		if call.then != nil {
			call.then(call)
		}
	}
}

// wholePacketBuffered reports whether br holds a whole packet, which can
// be read without waiting.
func wholePacketBuffered(br *bufio.Reader) bool {
	if br.Buffered() < 4 {
		return false
	}
	h, _ := br.Peek(4)
	return uint32(br.Buffered()-4) >= binary.BigEndian.Uint32(h)
}

// fail ends the session: pending and later calls fail with err.
func (rs *rawSession) fail(err error) {
	rs.mu.Lock()
	if rs.err == nil {
		rs.err = fmt.Errorf("%w: %v", sftp.ErrSSHFxConnectionLost, err)
	}
	pending := rs.pending
	rs.pending = map[uint32]*rawCall{}
	rs.mu.Unlock()
	for _, call := range pending {
		call.err = rs.err
		close(call.done)
		if call.then != nil {
			call.then(call)
		}
	}
	rs.ch.Close()
}

// queue appends one request of type typ, whose fields body appends, to
// the outgoing buffer. It goes out with the next flush; requests queued
// by one goroutine go out in the order queued.
func (rs *rawSession) queue(typ byte, body func([]byte) []byte) *rawCall {
	return rs.queueThen(typ, body, nil)
}

// queueThen is queue with a step to run once the call is settled (see
// rawCall.then). On a session that has ended, then runs on a goroutine of
// its own, never inside the caller's.
func (rs *rawSession) queueThen(typ byte, body func([]byte) []byte, then func(*rawCall)) *rawCall {
	call := &rawCall{done: make(chan struct{}), then: then}
	rs.mu.Lock()
	if rs.err != nil {
		call.err = rs.err
		rs.mu.Unlock()
		close(call.done)
		if then != nil {
			go then(call)
		}
		return call
	}
	rs.next++
	id := rs.next
	rs.pending[id] = call
	rs.mu.Unlock()
	rs.wmu.Lock()
	b, start := beginPacket(rs.out, typ, id)
	rs.out = endPacket(body(b), start)
	rs.outN++
	rs.wmu.Unlock()
	return call
}

// flush sees that what is queued gets written out. While answers are
// due, it only leaves it queued: readLoop writes it after handing out the
// next answers, with whatever else was queued by then, so concurrent
// uploads share channel writes without a goroutine between them and the
// socket. (Holding a request back costs little: OpenSSH's server handles
// requests one at a time, in order, so it would not start on it before
// answering those ahead of it.) With nothing due, or with the session
// ended, the caller writes itself, including what others queue meanwhile;
// a caller that finds a write under way returns at once, the writer takes
// its requests along. A write that blocks (the server's window is full)
// ends when the connection is closed, like every other call on it.
func (rs *rawSession) flush() {
	rs.wmu.Lock()
	if rs.flushing || rs.inflight.Load() > 0 {
		rs.wmu.Unlock()
		return
	}
	rs.writeOut()
}

// holdWhile is how many requests in flight let readLoop keep holding what
// was queued, up to one channel packet (32 KiB) of it: the server works
// through those meanwhile, while the requests held gather into fewer,
// fuller writes. Over a whole run of 10,000 small files on loopback, 1
// (hold until nothing is due) idled the server between batches; 4, 8 and
// 16 did alike.
const holdWhile = 8

// flushFromReader writes out what callers queued while answers were due.
// A small batch is written inline; a large one (bulk writes, which may
// wait for the server's window) by another goroutine, so that answers
// keep flowing meanwhile.
func (rs *rawSession) flushFromReader() {
	rs.wmu.Lock()
	n, busy := len(rs.out), rs.flushing
	switch {
	case n == 0 || busy: // the goroutine writing takes it along
		rs.wmu.Unlock()
	case rs.inflight.Load() >= holdWhile && n < 32<<10:
		// The server has work enough meanwhile; answers to come will
		// bring readLoop back here with more to send along.
		rs.wmu.Unlock()
	case n <= 64<<10:
		rs.writeOut()
	default:
		rs.wmu.Unlock()
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			rs.wmu.Lock()
			if rs.flushing {
				rs.wmu.Unlock()
				return
			}
			rs.writeOut()
		}()
	}
}

// writeOut writes out the queue until it is empty; it is called with wmu
// held and no write under way, and returns with wmu released.
func (rs *rawSession) writeOut() {
	rs.flushing = true
	for len(rs.out) > 0 {
		// The spare is out's now: it must not stay the spare too, or the
		// next round would queue into the buffer it is writing.
		buf := rs.out
		rs.out, rs.spare = rs.spare[:0], nil
		// Counted before the write: answers may come before it returns.
		rs.inflight.Add(rs.outN)
		rs.outN = 0
		rs.wmu.Unlock()
		_, err := rs.ch.Write(buf)
		if err != nil {
			rs.fail(err)
		}
		rs.wmu.Lock()
		if err != nil {
			rs.out = rs.out[:0]
			rs.outN = 0
		}
		if cap(buf) <= 4<<20 {
			rs.spare = buf[:0]
		}
	}
	rs.flushing = false
	rs.wmu.Unlock()
}

// wait returns once the answer came, the session ended or ctx is done.
func (c *rawCall) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// status is the outcome of a call answered by SSH_FXP_STATUS.
func (c *rawCall) status() error {
	<-c.done
	if c.err != nil {
		return c.err
	}
	if c.typ != fxpStatus {
		return fmt.Errorf("sftp: unexpected answer type %d, want a status", c.typ)
	}
	return statusErr(c.body)
}

// handle is the handle an OPEN returned.
func (c *rawCall) handle() (string, error) {
	<-c.done
	switch {
	case c.err != nil:
		return "", c.err
	case c.typ == fxpStatus:
		if err := statusErr(c.body); err != nil {
			return "", err
		}
		return "", errors.New("sftp: OPEN answered OK without a handle")
	case c.typ != fxpHandle:
		return "", fmt.Errorf("sftp: unexpected answer type %d to OPEN", c.typ)
	}
	d := &decoder{b: c.body}
	h := d.str()
	return h, d.err
}

// attrs is the answer of an FSTAT.
func (c *rawCall) attrs() (rawAttrs, error) {
	<-c.done
	switch {
	case c.err != nil:
		return rawAttrs{}, c.err
	case c.typ == fxpStatus:
		if err := statusErr(c.body); err != nil {
			return rawAttrs{}, err
		}
		return rawAttrs{}, errors.New("sftp: FSTAT answered OK without attributes")
	case c.typ != fxpAttrs:
		return rawAttrs{}, fmt.Errorf("sftp: unexpected answer type %d to FSTAT", c.typ)
	}
	d := &decoder{b: c.body}
	a := d.attrs()
	return a, d.err
}

// openFile opens name and waits for its handle. On cancel the server may
// still open it: the handle is then closed once the answer comes, so that
// the server does not hold it for the rest of the connection's life.
func (rs *rawSession) openFile(ctx context.Context, name string, pflags uint32, a rawAttrs) (*rawFile, error) {
	call := rs.open(name, pflags, a)
	rs.flush()
	if err := call.wait(ctx); err != nil {
		go func() {
			if h, err := call.handle(); err == nil {
				(&rawFile{rs: rs, h: h}).release()
			}
		}()
		return nil, err
	}
	h, err := call.handle()
	if err != nil {
		return nil, err
	}
	return &rawFile{rs: rs, h: h}, nil
}

func (rs *rawSession) open(name string, pflags uint32, a rawAttrs) *rawCall {
	return rs.queue(fxpOpen, func(b []byte) []byte {
		return a.append(putU32(putStr(b, name), pflags))
	})
}

func (rs *rawSession) write(h string, off int64, p []byte) *rawCall {
	return rs.writeThen(h, off, p, nil)
}

func (rs *rawSession) writeThen(h string, off int64, p []byte, then func(*rawCall)) *rawCall {
	rs.written.Add(int64(len(p)))
	return rs.queueThen(fxpWrite, func(b []byte) []byte {
		b = putU64(putStr(b, h), uint64(off))
		return append(putU32(b, uint32(len(p))), p...)
	}, then)
}

func (rs *rawSession) fstat(h string) *rawCall {
	return rs.queue(fxpFstat, func(b []byte) []byte { return putStr(b, h) })
}

func (rs *rawSession) fsetstat(h string, a rawAttrs) *rawCall {
	return rs.queue(fxpFsetstat, func(b []byte) []byte { return a.append(putStr(b, h)) })
}

func (rs *rawSession) remove(name string) *rawCall {
	return rs.queue(fxpRemove, func(b []byte) []byte { return putStr(b, name) })
}

func (rs *rawSession) close(h string) *rawCall {
	return rs.queue(fxpClose, func(b []byte) []byte { return putStr(b, h) })
}

// rename is posix-rename@openssh.com: it replaces to in one step.
func (rs *rawSession) rename(from, to string) *rawCall {
	return rs.queue(fxpExtended, func(b []byte) []byte {
		return putStr(putStr(putStr(b, "posix-rename@openssh.com"), from), to)
	})
}

// copyRange is the copy-data extension: the server copies n bytes (to the
// end of the file when n is 0) from rh at roff to wh at woff, without them
// crossing the network.
func (rs *rawSession) copyRange(rh string, roff, n uint64, wh string, woff uint64) *rawCall {
	return rs.queue(fxpExtended, func(b []byte) []byte {
		b = putU64(putU64(putStr(putStr(b, "copy-data"), rh), roff), n)
		return putU64(putStr(b, wh), woff)
	})
}

// rawFile is an open handle on a rawSession; it is an io.WriterAt for the
// upload pipeline.
type rawFile struct {
	rs        *rawSession
	h         string
	closeOnce sync.Once
	closeErr  error
}

// WriteAt writes p at off and waits for the server's answer. Safe for
// concurrent use; it returns when the connection dies.
func (f *rawFile) WriteAt(p []byte, off int64) (int, error) {
	call := f.rs.write(f.h, off, p)
	f.rs.flush()
	if err := call.status(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the handle once and waits for the answer.
func (f *rawFile) Close() error {
	if call := f.queueClose(); call != nil {
		f.rs.flush()
		f.closeErr = call.status()
	}
	return f.closeErr
}

// queueClose queues the handle's CLOSE, the first time only; it goes out
// with the next flush. It returns nil when the handle was closed already.
func (f *rawFile) queueClose() *rawCall {
	var call *rawCall
	f.closeOnce.Do(func() { call = f.rs.close(f.h) })
	return call
}

// release closes the handle without waiting, after a failure: the server
// frees it, and nothing depends on the answer.
func (f *rawFile) release() {
	if f.queueClose() != nil {
		f.rs.flush()
	}
}
