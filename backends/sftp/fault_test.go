package sftp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// proxied returns a config whose connections run through a new proxy.
func proxied(t *testing.T, e *env) (Config, *proxy) {
	p := newProxy(t, e.srv.addr)
	cfg := e.config()
	cfg.Dial = p.dial
	return cfg, p
}

func TestKeepaliveDetectsDeadLinkAndReconnects(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg, p := proxied(t, e)
	cfg.KeepaliveInterval = 100 * time.Millisecond
	cfg.KeepaliveMaxMissed = 3
	cfg.Connections = 1
	var reconnects atomic.Int64
	cfg.OnReconnect = func() { reconnects.Add(1) }
	b := dial(t, cfg)
	ctx := context.Background()
	c, err := b.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An idle but healthy connection is kept, not dropped.
	time.Sleep(500 * time.Millisecond)
	if !c.alive() {
		t.Fatalf("idle connection died: %s", c.reason())
	}
	p.pause()
	start := time.Now()
	// A call on the black-holed link blocks until the keepalive gives up,
	// then runs again on a new connection.
	if _, err := b.Stat(ctx, ""); err != nil {
		t.Fatalf("stat across the loss: %v", err)
	}
	took := time.Since(start)
	if limit := 300*time.Millisecond + 2*time.Second; took > limit {
		t.Errorf("dead link detected after %v, want within interval x misses + slack = %v", took, limit)
	}
	select {
	case <-c.dead:
	default:
		t.Fatal("connection not declared dead")
	}
	c2, _ := b.get(ctx)
	if c2 == c || !c2.alive() {
		t.Error("no new live connection after the loss")
	}
	if n := reconnects.Load(); n != 1 {
		t.Errorf("OnReconnect called %d times for one replaced connection, want 1", n)
	}
	// What cannot run twice reports the loss and leaves the retry to the
	// caller.
	p.pause()
	err = b.Remove(ctx, "nothing")
	wantErr(t, err, backends.ErrUnreachable)
	if backends.IsPermanent(err) {
		t.Errorf("lost connection should be retryable: %v", err)
	}
}

func TestResumeAfterCutSendsLittle(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg, p := proxied(t, e)
	cfg.Connections = 1
	b := dial(t, cfg)
	src := newSource(16<<20, 7)
	p.cutAt.Store(p.up.Load() + src.Size()/2)
	_, err := b.Upload(context.Background(), "big.bin", src)
	wantErr(t, err, backends.ErrUnreachable)
	if backends.IsPermanent(err) {
		t.Fatalf("cut upload should be retryable: %v", err)
	}
	partial := filepath.Join(e.root, backends.PartialName("big.bin", src.Size(), src.ModTime()))
	fi, err := os.Stat(partial)
	if err != nil {
		t.Fatalf("partial kept after the cut? %v", err)
	}
	t.Logf("cut after %d upstream bytes; partial holds %d", p.up.Load(), fi.Size())
	if _, err := os.Stat(filepath.Join(e.root, "big.bin")); err == nil {
		t.Fatal("a file was published at the final name after a cut")
	}
	before := p.up.Load()
	res := mustUpload(t, b, "big.bin", src)
	sent := p.up.Load() - before
	// The server may still write requests it had buffered when the link was
	// cut, so the partial can grow after the Stat above: same bytes at the
	// same offsets, which is harmless.
	if res.Resumed < src.Size()/3 {
		t.Errorf("resumed only %d bytes from a partial of %d", res.Resumed, fi.Size())
	}
	if res.Resumed+res.Sent != src.Size() {
		t.Errorf("resumed %d + sent %d != size %d", res.Resumed, res.Sent, src.Size())
	}
	if limit := (src.Size()-res.Resumed)*105/100 + 64<<10; sent > limit {
		t.Errorf("second attempt sent %d wire bytes for %d missing bytes, want at most %d", sent, src.Size()-res.Resumed, limit)
	}
	t.Logf("partial %d, resumed %d, second attempt sent %d wire bytes of %d", fi.Size(), res.Resumed, sent, src.Size())
}

func TestResumeOverGarbageTail(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	b := dial(t, cfg)
	src := newSource(3<<20, 11)
	good := int64(2<<20 + 12345)
	tail := bytes.Repeat([]byte{0xAA}, 100<<10)
	// What a failed concurrent write leaves: good bytes, then a hole of
	// zeros and garbage past it, all within the last window.
	content := append(append([]byte{}, src.data[:good]...), make([]byte, 4096)...)
	content = append(content, tail...)
	partial := filepath.Join(e.root, backends.PartialName("f", src.Size(), src.ModTime()))
	if err := os.WriteFile(partial, content, 0o600); err != nil {
		t.Fatal(err)
	}
	res := mustUpload(t, b, "f", src)
	// The hole's first zero byte may match the source by chance.
	if res.Resumed < good || res.Resumed > good+4 {
		t.Errorf("resumed from %d, want the first bad byte %d", res.Resumed, good)
	}
	if res.Sent != src.Size()-res.Resumed {
		t.Errorf("sent %d, want %d", res.Sent, src.Size()-res.Resumed)
	}
	// A partial longer than the source is cut back.
	src2 := newSource(1<<20, 12)
	partial2 := filepath.Join(e.root, backends.PartialName("g", src2.Size(), src2.ModTime()))
	os.WriteFile(partial2, append(append([]byte{}, src2.data...), tail...), 0o600)
	res = mustUpload(t, b, "g", src2)
	if res.Resumed != src2.Size() || res.Sent != 0 {
		t.Errorf("overlong partial: %+v", res)
	}
}

func TestStallDetectorAbortsUpload(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg, p := proxied(t, e)
	cfg.StallTimeout = time.Second
	cfg.KeepaliveInterval = time.Hour // only the stall detector may act
	cfg.Connections = 1
	b := dial(t, cfg)
	src := newSource(16<<20, 5)
	p.pauseAt.Store(p.up.Load() + 4<<20)
	start := time.Now()
	_, err := b.Upload(context.Background(), "f", src)
	took := time.Since(start)
	p.pauseAt.Store(0)
	select {
	case <-p.paused:
	default:
		t.Fatalf("upload ended (%v) before the link was paused", err)
	}
	if !errors.Is(err, errStalled) {
		t.Fatalf("error %v, want a stall", err)
	}
	wantErr(t, err, backends.ErrUnreachable)
	if backends.IsPermanent(err) {
		t.Errorf("stall should be retryable: %v", err)
	}
	if took > 8*time.Second {
		t.Errorf("stall detected after %v", took)
	}
	// The next attempt reconnects and resumes; a loaded test machine
	// (-race) must not trip the detector there.
	b.cfg.StallTimeout = time.Minute
	res := mustUpload(t, b, "f", src)
	if res.Resumed == 0 {
		t.Error("did not resume after the stall")
	}
}

func TestUploadSplitOverTwoConnections(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 2
	b := dial(t, cfg)
	b.splitAt = 1 << 20
	b.splitRTT = 0
	src := newSource(4<<20+17, 13)
	res := mustUpload(t, b, "big", src)
	if res.Sent != src.Size() {
		t.Errorf("sent %d", res.Sent)
	}
	if c := b.slots[1].peek(); c == nil || c.raw.written.Load() == 0 {
		t.Error("second connection was not used")
	}
}

// TestUploadNotSplitOnShortRoundTrip: over loopback a large upload stays on
// one connection, whose window is no limit there.
func TestUploadNotSplitOnShortRoundTrip(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 2
	b := dial(t, cfg)
	b.splitAt = 1 << 20
	// Uploads until both connections have seen a round trip: past one
	// batch, since batched ones all go to the first connection. Uploads one
	// at a time do not grow the pool: the first one has the first
	// connection to itself, and the second connection is dialled here.
	mustUpload(t, b, "small", newSource(batchChunks*DefaultChunkSize+1, 99))
	if _, err := b.connAt(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	measured := func() bool {
		for i := range b.slots {
			if c := b.slots[i].peek(); c == nil || c.rtt.Load() == 0 {
				return false
			}
		}
		return true
	}
	for i := 0; !measured(); i++ {
		if i == 200 {
			t.Fatal("the second connection never carried an upload")
		}
		mustUpload(t, b, "small", newSource(batchChunks*DefaultChunkSize+1, uint64(i)))
		time.Sleep(time.Millisecond)
	}
	var before [2]int64
	for i := range b.slots {
		c := b.slots[i].peek()
		if rtt := c.minRTT(); rtt >= b.splitRTT {
			t.Skipf("loopback round trip of %v (a loaded machine?): nothing to check", rtt)
		}
		before[i] = c.raw.written.Load()
	}
	res := mustUpload(t, b, "big", newSource(4<<20+17, 13))
	var carried []int64
	for i := range b.slots {
		if d := b.slots[i].peek().raw.written.Load() - before[i]; d > 0 {
			carried = append(carried, d)
		}
	}
	if len(carried) != 1 || carried[0] != res.Sent {
		t.Errorf("bytes carried per connection: %v of %d: the upload was split", carried, res.Sent)
	}
}

func TestHandshakeDeadline(t *testing.T) {
	e := newEnv(t, serverOpts{})
	// A server that accepts the connection and never says a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	defer func() { ln.Close(); <-done }()
	cfg := e.config()
	cfg.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, ln.Addr().String())
	}
	cfg.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	err = dialErr(t, cfg)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("silent server held the handshake for %v with a %v timeout", took, cfg.DialTimeout)
	}
	wantErr(t, err, backends.ErrUnreachable)
}

func TestCancelMidUploadOnDeadLink(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg, p := proxied(t, e)
	cfg.Connections = 1
	cfg.KeepaliveInterval = time.Hour
	cfg.StallTimeout = time.Hour // only the cancel may end it
	b := dial(t, cfg)
	src := newSource(16<<20, 31)
	p.pauseAt.Store(p.up.Load() + 2<<20)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-p.paused
		cancel()
	}()
	start := time.Now()
	_, err := b.Upload(ctx, "f", src)
	took := time.Since(start)
	wantErr(t, err, context.Canceled)
	if took > 6*time.Second {
		t.Errorf("cancelled upload on a dead link returned after %v", took)
	}
	if _, err := os.Stat(filepath.Join(e.root, "f")); err == nil {
		t.Fatal("cancelled upload published a file")
	}
	res := mustUpload(t, b, "f", src)
	if res.Resumed == 0 {
		t.Error("no resume after the cancelled upload")
	}
}
