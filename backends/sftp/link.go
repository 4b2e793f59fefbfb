package sftp

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// gatherMax is how many bytes of SSH packets linkConn gathers, beside
// those of the write under way, before the transport has to wait: enough
// that one system call carries many packets.
const gatherMax = 512 << 10

// linkConn is a connection's socket as the SSH transport sees it. Reads
// stamp the time bytes last arrived, for the keepalive. Writes are
// gathered: the transport writes each packet with a system call of its
// own (a 32 KiB write request is two; a batch of small requests is one
// per packet), and on a fast link those calls, with the per-segment work
// they cause on both ends, cost as much CPU as the encryption. So Write
// copies the packet into a buffer and returns, and one goroutine writes
// out whatever gathered meanwhile in one call: one call per packet when
// the link is idle, one per several hundred KiB when it is busy.
//
// A failed write is reported by the next Write and by Close; the
// transport then tears the connection down, as on a failed direct write.
// What is still gathered at Close is dropped: ferry closes a connection
// only once every request on it was answered, or to abandon it. Close
// waits for the writing goroutine, which its closing of the socket
// releases from a write the peer does not take.
type linkConn struct {
	net.Conn
	last atomic.Int64 // UnixNano of the last read that returned data

	mu      sync.Mutex
	more    sync.Cond     // something was gathered, or the conn closed
	room    sync.Cond     // the writer took what was gathered, or failed
	pending []byte        // gathered, not yet handed to the socket
	spare   []byte        // the buffer of the last write, once it returned
	err     error         // the first write error, or net.ErrClosed
	done    chan struct{} // closed when the writing goroutine ends
}

func newLinkConn(c net.Conn) *linkConn {
	l := &linkConn{Conn: c, done: make(chan struct{})}
	l.more.L = &l.mu
	l.room.L = &l.mu
	l.last.Store(time.Now().UnixNano())
	go l.writeLoop()
	return l
}

func (l *linkConn) Read(p []byte) (int, error) {
	n, err := l.Conn.Read(p)
	if n > 0 {
		l.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// Write gathers p for the writing goroutine. It waits only while
// gatherMax bytes are already held, and fails once a write has failed or
// the connection is closed.
func (l *linkConn) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.err == nil && len(l.pending) >= gatherMax {
		l.room.Wait()
	}
	if l.err != nil {
		return 0, l.err
	}
	if len(l.pending) == 0 {
		l.more.Signal()
	}
	l.pending = append(l.pending, p...)
	return len(p), nil
}

func (l *linkConn) writeLoop() {
	defer close(l.done)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for len(l.pending) == 0 && l.err == nil {
			l.more.Wait()
		}
		if l.err != nil {
			return
		}
		// The buffer written must not be gathered into meanwhile: the
		// spare, if any, takes the next packets, and this one becomes the
		// spare only once the socket has taken it.
		buf := l.pending
		l.pending, l.spare = l.spare[:0], nil
		l.room.Broadcast()
		l.mu.Unlock()
		_, err := l.Conn.Write(buf)
		l.mu.Lock()
		if err != nil && l.err == nil {
			l.err = err
		}
		if cap(buf) <= 2*gatherMax {
			l.spare = buf[:0]
		}
		if err != nil {
			l.room.Broadcast()
		}
	}
}

// Close closes the socket and waits for the writing goroutine.
func (l *linkConn) Close() error {
	l.mu.Lock()
	if l.err == nil {
		l.err = net.ErrClosed
	}
	l.more.Signal()
	l.room.Broadcast()
	l.mu.Unlock()
	err := l.Conn.Close()
	<-l.done
	return err
}
