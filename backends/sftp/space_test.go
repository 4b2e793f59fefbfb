package sftp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

// TestDiskFullIsPermanentNoSpace fills a 1 MiB tmpfs under the root: the
// server answers a generic failure, which statvfs confirms as no space.
func TestDiskFullIsPermanentNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	e := newEnv(t, serverOpts{})
	small := filepath.Join(e.root, "small")
	os.Mkdir(small, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	b := dial(t, e.config())
	_, err := b.Upload(context.Background(), "small/big", newSource(3<<20, 1))
	wantErr(t, err, backends.ErrNoSpace)
	if !backends.IsPermanent(err) {
		t.Errorf("disk full should be permanent: %v", err)
	}
	if ents, _ := os.ReadDir(small); len(ents) != 0 {
		t.Errorf("partial left behind on a full disk: %v", ents)
	}
	// Other files still go elsewhere.
	mustUpload(t, b, "fits", newSource(1000, 2))
}

func TestRenameWithoutPosixRename(t *testing.T) {
	e := newEnv(t, serverOpts{memFS: true})
	cfg := e.config()
	cfg.Connections = 1
	cfg.Root = "/data"
	b := dial(t, cfg)
	ctx := context.Background()
	c, err := b.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.posixRename = false // as against a server without the extension
	mustUpload(t, b, "f", newSource(100, 1))
	src := newSource(200, 2)
	mustUpload(t, b, "f", src)
	mustUpload(t, b, "g", newSource(50, 3))
	mustUpload(t, b, "h", newSource(1, 3))
	if err := c.sftp.Rename("/data/h", "/data/f"); err == nil {
		t.Fatal("this server's plain rename replaced a file; the test would not exercise the fallback")
	}
	b.Remove(ctx, "h")
	if err := b.Rename(ctx, "g", "f"); err != nil {
		t.Fatal(err)
	}
	ents, err := b.List(ctx, "")
	if err != nil || len(ents) != 1 || ents[0].Path != "f" {
		t.Errorf("root holds %v (%v), want only f (no file moved aside left over)", ents, err)
	}
	if fi, _ := b.Stat(ctx, "f"); fi.Size != 50 {
		t.Errorf("f has %d bytes after rename, want 50", fi.Size)
	}
}
