package sftp

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/sshd"
)

// openSSH starts a real sshd and returns a config for it whose connections
// run through a new proxy.
func openSSH(t *testing.T) (Config, *proxy, string) {
	if testing.Short() {
		t.Skip("starts sshd")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	srv := sshd.Start(t, sshd.Options{})
	p := newProxy(t, srv.Addr())
	return Config{
		Host: "127.0.0.1", Port: srv.Port(), User: srv.User(), Root: srv.Root(),
		IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: srv.KnownHostsPath(),
		SSHConfigFile: "none", Dial: p.dial,
	}, p, srv.Root()
}

func TestOpenSSHResumeAfterCut(t *testing.T) {
	cfg, p, root := openSSH(t)
	cfg.Connections = 1
	b := dial(t, cfg)
	src := newSource(32<<20, 21)
	p.cutAt.Store(p.up.Load() + src.Size()/2)
	_, err := b.Upload(context.Background(), "big.bin", src)
	wantErr(t, err, backends.ErrUnreachable)
	before := p.up.Load()
	res := mustUpload(t, b, "big.bin", src)
	sent := p.up.Load() - before
	if res.Resumed < src.Size()/3 {
		t.Errorf("resumed only %d of %d bytes", res.Resumed, src.Size())
	}
	if limit := (src.Size()-res.Resumed)*105/100 + 64<<10; sent > limit {
		t.Errorf("second attempt sent %d wire bytes for %d missing bytes", sent, src.Size()-res.Resumed)
	}
	got, err := os.ReadFile(filepath.Join(root, "big.bin"))
	if err != nil || !bytes.Equal(got, src.data) {
		t.Fatalf("file on the server differs from the source (%v)", err)
	}
	ents, _ := os.ReadDir(root)
	if len(ents) != 1 {
		t.Errorf("server root holds %d entries, want only big.bin", len(ents))
	}
	t.Logf("resumed %d, second attempt sent %d wire bytes of %d (first attempt and second: %.2fx the file)",
		res.Resumed, sent, src.Size(), float64(p.up.Load())/float64(src.Size()))
}

func TestOpenSSHBlackHole(t *testing.T) {
	cfg, p, _ := openSSH(t)
	cfg.Connections = 1
	cfg.KeepaliveInterval = 200 * time.Millisecond
	cfg.KeepaliveMaxMissed = 3
	cfg.StallTimeout = time.Hour // the keepalive must find it
	b := dial(t, cfg)
	src := newSource(64<<20, 22)
	p.pauseAt.Store(p.up.Load() + 8<<20)
	start := time.Now()
	_, err := b.Upload(context.Background(), "f", src)
	took := time.Since(start)
	p.pauseAt.Store(0)
	select {
	case <-p.paused:
	default:
		t.Fatalf("upload ended (%v) before the link was paused", err)
	}
	wantErr(t, err, backends.ErrUnreachable)
	if took > 600*time.Millisecond+3*time.Second {
		t.Errorf("black hole found after %v, want within interval x misses + a few seconds", took)
	}
	// The resume runs with an everyday keepalive: 200 ms x 3 is there to
	// find the black hole fast, and a loaded machine can miss it while the
	// server copies and hashes what the resume kept.
	cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed = 0, 0
	res := mustUpload(t, dial(t, cfg), "f", src)
	if res.Resumed == 0 {
		t.Error("no resume after the black hole")
	}
}
