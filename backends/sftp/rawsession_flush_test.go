package sftp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// gatedChannel is the server's end of a raw session in a test: it answers
// every request with status OK and records what each WRITE carried. A
// Write can be held (gate), as a full channel window holds it, and its
// bytes are read only once it is let go, as the channel reads them while
// it encrypts.
type gatedChannel struct {
	ssh.Channel
	pr *io.PipeReader
	pw *io.PipeWriter

	mu     sync.Mutex
	gates  []chan struct{} // one per coming Write; nil lets it through
	held   chan struct{}   // told when a Write is held
	in     []byte
	ids    map[uint32]int
	writes map[int64][]byte // WRITE payloads by offset
	bad    []string
}

func newGatedChannel() *gatedChannel {
	pr, pw := io.Pipe()
	return &gatedChannel{pr: pr, pw: pw, held: make(chan struct{}, 1),
		ids: map[uint32]int{}, writes: map[int64][]byte{}}
}

func (g *gatedChannel) Read(p []byte) (int, error) { return g.pr.Read(p) }
func (g *gatedChannel) Close() error               { return g.pw.Close() }

// hold makes the next Write wait until the returned function is called.
func (g *gatedChannel) hold() (release func()) {
	c := make(chan struct{})
	g.mu.Lock()
	g.gates = append(g.gates, c)
	g.mu.Unlock()
	return func() { close(c) }
}

func (g *gatedChannel) Write(b []byte) (int, error) {
	g.mu.Lock()
	var gate chan struct{}
	if len(g.gates) > 0 {
		gate, g.gates = g.gates[0], g.gates[1:]
	}
	g.mu.Unlock()
	if gate != nil {
		g.held <- struct{}{}
		<-gate
	}
	g.mu.Lock()
	g.in = append(g.in, b...)
	var answers []byte
	for len(g.in) >= 4 {
		n := int(binary.BigEndian.Uint32(g.in))
		if len(g.in) < 4+n {
			break
		}
		pkt := g.in[4 : 4+n]
		id := binary.BigEndian.Uint32(pkt[1:5])
		if g.ids[id]++; g.ids[id] > 1 {
			g.bad = append(g.bad, fmt.Sprintf("request %d sent %d times", id, g.ids[id]))
		}
		if pkt[0] == fxpWrite {
			body := pkt[5:]
			hl := int(binary.BigEndian.Uint32(body))
			off := int64(binary.BigEndian.Uint64(body[4+hl:]))
			g.writes[off] = append([]byte{}, body[4+hl+8+4:]...)
		}
		a, start := beginPacket(nil, fxpStatus, id)
		a = putStr(putStr(putU32(a, 0), ""), "")
		answers = append(answers, endPacket(a, start)...)
		g.in = g.in[4+n:]
	}
	g.mu.Unlock()
	if len(answers) > 0 {
		go g.pw.Write(answers)
	}
	return len(b), nil
}

// TestFlushNeverReusesABufferInUse queues requests while a large batch
// and then a small one are being written: what is queued meanwhile must
// go into a buffer of its own, never into the one the channel is still
// reading, or requests go out twice or not at all and a WRITE can carry
// another's bytes (a torn file the server cannot tell).
func TestFlushNeverReusesABufferInUse(t *testing.T) {
	ch := newGatedChannel()
	var wg sync.WaitGroup
	rs := &rawSession{ch: ch, pending: map[uint32]*rawCall{}, wg: &wg}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs.readLoop(bufio.NewReader(ch))
	}()
	defer func() {
		ch.Close()
		wg.Wait()
	}()

	var calls []*rawCall
	want := map[int64][]byte{}
	off := int64(0)
	queue := func(n, size int, fill byte) {
		for range n {
			p := bytes.Repeat([]byte{fill}, size)
			binary.BigEndian.PutUint64(p, uint64(off)) // each payload unique
			want[off] = p
			calls = append(calls, rs.write("h", off, p))
			off += int64(size)
		}
	}
	waitAll := func(what string) {
		t.Helper()
		for i, c := range calls {
			select {
			case <-c.done:
				if err := c.status(); err != nil {
					t.Fatalf("%s: request %d: %v", what, i, err)
				}
			case <-time.After(10 * time.Second):
				ch.mu.Lock()
				bad := ch.bad
				ch.mu.Unlock()
				t.Fatalf("%s: request %d of %d never answered (the server saw: %v)", what, i, len(calls), bad)
			}
		}
	}

	// A first batch leaves its buffer behind for reuse.
	queue(32, 32<<10, 1)
	rs.flush()
	waitAll("first batch")
	// Let the session go idle, so that it writes nothing of what comes
	// next on its own.
	time.Sleep(50 * time.Millisecond)

	// A batch larger than the buffers kept for reuse, held in the write.
	release1 := ch.hold()
	queue(160, 32<<10, 2)
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		rs.flush()
	}()
	<-ch.held
	queue(64, 1<<10, 3) // queued behind the large batch
	rs.flush()
	release2 := ch.hold()
	release1()
	<-ch.held // the small batch is being written now
	queue(64, 1<<10, 4)
	rs.flush()
	release2()
	<-flushed
	waitAll("batches queued during writes")

	ch.mu.Lock()
	defer ch.mu.Unlock()
	if len(ch.bad) > 0 {
		t.Errorf("the stream the server read is wrong: %v", ch.bad)
	}
	for o, p := range want {
		if !bytes.Equal(ch.writes[o], p) {
			t.Fatalf("WRITE at %d carried other bytes than queued", o)
		}
	}
}
