package sftp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// heldConn is a socket whose writes wait until the test lets them go. It
// keeps each write's slice, so a test can see whether the caller changed
// it while the write was under way.
type heldConn struct {
	net.Conn // nil: only Write and Close are used
	release  chan struct{}
	mu       sync.Mutex
	writes   [][]byte // the slices passed in
	copies   [][]byte // their contents when the write began
	closed   chan struct{}
	once     sync.Once
	fail     error
	reused   bool // a slice changed while its write was under way
}

func newHeldConn() *heldConn {
	return &heldConn{release: make(chan struct{}, 1<<16), closed: make(chan struct{})}
}

func (h *heldConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	h.writes = append(h.writes, p)
	h.copies = append(h.copies, bytes.Clone(p))
	fail := h.fail
	h.mu.Unlock()
	if fail != nil {
		return 0, fail
	}
	select {
	case <-h.release:
	case <-h.closed:
		return 0, net.ErrClosed
	}
	h.mu.Lock()
	if !bytes.Equal(p, h.copies[len(h.copies)-1]) {
		h.reused = true
	}
	h.mu.Unlock()
	return len(p), nil
}

func (h *heldConn) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

// received is what the socket got, in order, and in how many writes.
func (h *heldConn) received() (got []byte, calls int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.copies {
		got = append(got, c...)
	}
	return got, len(h.copies)
}

func packet(i int) []byte {
	return fmt.Appendf(nil, "packet %06d %s|", i, bytes.Repeat([]byte{byte('a' + i%26)}, i%300))
}

// TestLinkGathersWritesInOrder: packets written while the socket is busy go
// out together, in order, and no buffer handed to the socket is written
// into before the socket has taken it.
func TestLinkGathersWritesInOrder(t *testing.T) {
	h := newHeldConn()
	l := newLinkConn(h)
	var want []byte
	const n = 5000
	released := make(chan struct{})
	go func() {
		defer close(released)
		for i := 0; i < n; i++ {
			if i%97 == 0 {
				h.release <- struct{}{}
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	for i := 0; i < n; i++ {
		p := packet(i)
		want = append(want, p...)
		if _, err := l.Write(p); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		clear(p) // the caller reuses its buffer at once
	}
	<-released
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.release <- struct{}{}
		got, _ := h.received()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, calls := h.received()
	if !bytes.Equal(got, want) {
		t.Fatalf("the socket got %d bytes in %d writes, not the %d written in order", len(got), calls, len(want))
	}
	if h.reused {
		t.Fatal("a buffer was written into while the socket still held it")
	}
	if calls >= n/4 {
		t.Errorf("%d packets took %d socket writes; gathered, they take far fewer", n, calls)
	}
}

// TestLinkWriteFailureIsReported: once the socket fails, the next write
// says so, and so does every one after it.
func TestLinkWriteFailureIsReported(t *testing.T) {
	h := newHeldConn()
	boom := errors.New("connection reset")
	h.fail = boom
	l := newLinkConn(h)
	defer l.Close()
	if _, err := l.Write([]byte("first")); err != nil {
		t.Fatalf("first write: %v (the failure is not known yet)", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := l.Write([]byte("next"))
		if errors.Is(err, boom) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes after a failed socket write still succeed: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := l.Write([]byte("again")); !errors.Is(err, boom) {
		t.Fatalf("a later write: %v, want %v", err, boom)
	}
}

// TestLinkCloseReleasesBlockedWrite: with the socket taking nothing and
// the buffer full, a write waits; Close releases it with an error and
// does not return before the writing goroutine is gone.
func TestLinkCloseReleasesBlockedWrite(t *testing.T) {
	h := newHeldConn()
	l := newLinkConn(h)
	big := make([]byte, 64<<10)
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := l.Write(big); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		t.Fatalf("write failed before Close: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	l.mu.Lock()
	held := len(l.pending)
	l.mu.Unlock()
	if held < gatherMax || held > gatherMax+len(big) {
		t.Fatalf("%d bytes gathered with the socket stuck; want the bound %d (+ one write)", held, gatherMax)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.done:
	default:
		t.Fatal("Close returned before the writing goroutine ended")
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked write ended with %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write blocked on a full buffer was not released by Close")
	}
}
