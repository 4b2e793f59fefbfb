package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	ferrysftp "github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/sshd"
)

// memSource is an in-memory upload source.
type memSource struct {
	data  []byte
	mtime time.Time
}

func (s *memSource) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(s.data).ReadAt(p, off)
}
func (s *memSource) Size() int64        { return int64(len(s.data)) }
func (s *memSource) ModTime() time.Time { return s.mtime }
func (s *memSource) Mode() fs.FileMode  { return 0o644 }
func (s *memSource) Check() error       { return nil }

func newMemSource(t *testing.T, n int) *memSource {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return &memSource{data: data, mtime: time.Now().Add(-time.Hour).Truncate(time.Second)}
}

// idleCutter stands in for a NAT or firewall that forgets a flow that
// carried no byte for a while: it resets any proxied connection that stayed
// silent, in both directions, for `after`.
type idleCutter struct {
	cuts atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func startIdleCutter(p *faultproxy.Proxy, after time.Duration) *idleCutter {
	ic := &idleCutter{stop: make(chan struct{})}
	ic.wg.Add(1)
	go func() {
		defer ic.wg.Done()
		type seen struct {
			bytes int64
			at    time.Time
		}
		last := map[*faultproxy.Conn]seen{}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ic.stop:
				return
			case now := <-tick.C:
				for _, c := range p.Open() {
					n := c.BytesUp() + c.BytesDown()
					s, ok := last[c]
					if !ok || s.bytes != n {
						last[c] = seen{n, now}
						continue
					}
					if now.Sub(s.at) >= after {
						c.Reset()
						ic.cuts.Add(1)
						delete(last, c)
					}
				}
			}
		}
	}()
	return ic
}

func (ic *idleCutter) Stop() {
	close(ic.stop)
	ic.wg.Wait()
}

// TestSFTPKeepaliveIdleConnection leaves an SFTP backend idle behind a link
// that drops flows silent for 1.5 s. With keepalives every 500 ms the one
// connection stays up through 4 s of idleness and carries the next upload;
// with keepalives too rare to help, the same link drops it, and the next
// upload must rebuild it by itself. The second case shows the cut is real,
// so that the first one proves the keepalive. No goroutine may outlive the
// backend.
func TestSFTPKeepaliveIdleConnection(t *testing.T) {
	const (
		idleCut = 1500 * time.Millisecond
		idle    = 4 * time.Second
	)
	cases := []struct {
		name      string
		keepalive time.Duration
		// wantConns is how many connections the proxy sees in all: the
		// first, and one more when the idle link was cut.
		wantConns int64
		wantCuts  bool
	}{
		{name: "keepalive within the idle cut keeps the connection", keepalive: 500 * time.Millisecond, wantConns: 1},
		{name: "keepalive too rare: connection cut, rebuilt on next use", keepalive: 30 * time.Second, wantConns: 2, wantCuts: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := sshd.Start(t, sshd.Options{})
			p := newProxy(t, srv.Addr())
			kh, err := srv.KnownHostsFor(p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			// Checked while the proxy still runs (it closes when the test
			// ends): closing the proxy would end the backend's connections
			// and with them goroutines that Close failed to stop. The
			// proxy's own goroutines for those connections end once both
			// sides have closed, which goleak waits for.
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

			root := filepath.Join(srv.Root(), "dst")
			b, err := ferrysftp.Dial(context.Background(), ferrysftp.Config{
				Host: "127.0.0.1", Port: addrPort(t, p.Addr()), User: srv.User(), Root: root,
				IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: kh, SSHConfigFile: "none",
				KeepaliveInterval: tc.keepalive, KeepaliveMaxMissed: 3, Connections: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ic := startIdleCutter(p, idleCut)
			defer ic.Stop()

			ctx := context.Background()
			first := newMemSource(t, 64<<10)
			if _, err := b.Upload(ctx, "before-idle.bin", first); err != nil {
				t.Fatal(err)
			}
			conns := p.Conns()
			if len(conns) != 1 {
				t.Fatalf("proxy saw %d connections before the idle period, want 1", len(conns))
			}
			c := conns[0]
			up0, down0 := c.BytesUp(), c.BytesDown()
			time.Sleep(idle)
			upIdle, downIdle := c.BytesUp()-up0, c.BytesDown()-down0
			t.Logf("keepalive %v, idle %v behind a %v idle cut: %d bytes up, %d down while idle; %d cuts",
				tc.keepalive, idle, idleCut, upIdle, downIdle, ic.cuts.Load())

			second := newMemSource(t, 1<<20)
			upBefore := p.BytesUp()
			res, err := b.Upload(ctx, "after-idle.bin", second)
			if err != nil {
				t.Fatalf("upload after %v idle: %v", idle, err)
			}
			if res.Sent != second.Size() {
				t.Errorf("upload after idle sent %d bytes, want %d", res.Sent, second.Size())
			}
			if got := p.Accepted(); got != tc.wantConns {
				t.Errorf("proxy accepted %d connections in all, want %d", got, tc.wantConns)
			}
			if cuts := ic.cuts.Load(); (cuts > 0) != tc.wantCuts {
				t.Errorf("the idle link was cut %d times; want cuts: %v", cuts, tc.wantCuts)
			}
			if !tc.wantCuts {
				// Keepalives flowed both ways while nothing else did, and the
				// upload after the idle period went over the same connection.
				if upIdle == 0 || downIdle == 0 {
					t.Errorf("no keepalive traffic while idle: %d bytes up, %d down", upIdle, downIdle)
				}
				if c.Closed() {
					t.Errorf("the first connection closed")
				}
				if got := c.BytesUp() - up0 - upIdle; got < second.Size() {
					t.Errorf("the first connection carried %d bytes after the idle period, want the upload's %d", got, second.Size())
				}
			} else if got := p.BytesUp() - upBefore; got < second.Size() {
				t.Errorf("%d bytes upstream for the upload after the cut, want at least %d", got, second.Size())
			}
			for name, src := range map[string]*memSource{"before-idle.bin": first, "after-idle.bin": second} {
				got, err := os.ReadFile(filepath.Join(root, name))
				if err != nil || !bytes.Equal(got, src.data) {
					t.Errorf("%s on the server differs from its source (%d bytes, %v)", name, len(got), err)
				}
			}
		})
	}
}

// addrPort returns the port of "127.0.0.1:PORT".
func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("port of %s: %v", addr, err)
	}
	return n
}
