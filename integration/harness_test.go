package integration

import (
	"bytes"
	"crypto/rand"
	"io"
	"path"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/sshd"
)

// These tests check that the fixtures compose as the SFTP fault tests use
// them: a client reaches the real sshd through the fault proxy, and each
// fault shows up at the client the way the real one would.

func dialThrough(t *testing.T, srv *sshd.Server, p *faultproxy.Proxy) (*ssh.Client, *sftp.Client) {
	t.Helper()
	cfg, err := srv.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The client knows the server under the proxy's address, as ferry will
	// when its target URL names the proxy.
	kh, err := srv.KnownHostsFor(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HostKeyCallback, err = knownhosts.New(kh); err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", p.Addr(), cfg)
	if err != nil {
		t.Fatalf("ssh through the proxy: %v", err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		c.Close()
		t.Fatalf("sftp through the proxy: %v", err)
	}
	t.Cleanup(func() {
		sc.Close()
		c.Close()
	})
	return c, sc
}

func upload(sc *sftp.Client, p string, data []byte) error {
	f, err := sc.Create(p)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newProxy(t *testing.T, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestHarnessResetMidUpload(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	p := newProxy(t, srv.Addr())
	_, sc := dialThrough(t, srv, p)

	data := make([]byte, 8<<20)
	rand.Read(data)
	before := p.BytesUp()
	p.ResetAfter(int64(len(data) / 2))
	err := upload(sc, path.Join(srv.Root(), "cut.bin"), data)
	if err == nil {
		t.Fatal("upload through a link reset at half succeeded")
	}
	sent := p.BytesUp() - before
	if sent != int64(len(data)/2) {
		t.Fatalf("proxy forwarded %d bytes before the reset, want exactly %d", sent, len(data)/2)
	}
	t.Logf("upload cut after %d bytes: %v", sent, err)

	// A new connection works and carries the whole file.
	_, sc2 := dialThrough(t, srv, p)
	if err := upload(sc2, path.Join(srv.Root(), "whole.bin"), data); err != nil {
		t.Fatalf("upload after the reset: %v", err)
	}
	if p.Accepted() != 2 {
		t.Fatalf("proxy accepted %d connections, want 2", p.Accepted())
	}
}

func TestHarnessBlackHoleBlocksUntilClosed(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	p := newProxy(t, srv.Addr())
	c, sc := dialThrough(t, srv, p)
	p.BlackHole()
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Stat(srv.Root())
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("request through a black hole returned: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	// Closing the client, as a keepalive that gives up does, unblocks it.
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("request succeeded after the client was closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still blocked after the client was closed")
	}
	p.Pass()
}

func TestHarnessServerRestart(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	p := newProxy(t, srv.Addr())
	_, sc := dialThrough(t, srv, p)
	if err := upload(sc, path.Join(srv.Root(), "a"), []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Stat(path.Join(srv.Root(), "a")); err == nil {
		t.Fatal("session survived the server's restart")
	}
	_, sc2 := dialThrough(t, srv, p)
	f, err := sc2.Open(path.Join(srv.Root(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, []byte("a")) {
		t.Fatalf("read back %q, %v", got, err)
	}
}
