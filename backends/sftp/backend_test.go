package sftp

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func TestUploadStatListOpen(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	ctx := context.Background()
	src := newSource(300<<10+7, 1)
	if err := b.Mkdir(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	res := mustUpload(t, b, "a/b/file.bin", src)
	if res.Resumed != 0 || res.Sent != src.Size() || res.Verified != "size" {
		t.Errorf("result %+v, want a fresh upload of %d bytes checked by size", res, src.Size())
	}
	fi, err := b.Stat(ctx, "a/b/file.bin")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != src.Size() || !fi.ModTime.Equal(src.mtime) || fi.Mode.Perm() != 0o640 || !fi.IsRegular() {
		t.Errorf("stat %+v, want size %d mtime %v mode 0640", fi, src.Size(), src.mtime)
	}
	list, err := b.List(ctx, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Path != "a/b/file.bin" {
		t.Errorf("list %+v, want only a/b/file.bin (no partial left)", list)
	}
	r, err := b.Open(ctx, "a/b/file.bin", 1000)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := r.Read(buf); err != nil || string(buf) != string(src.data[1000:1010]) {
		t.Errorf("read at offset 1000: %v", err)
	}
	r.Close()
	_, err = b.Stat(ctx, "a/missing")
	wantErr(t, err, backends.ErrNotExist)
	if backends.IsPermanent(err) != true {
		t.Errorf("not-exist error should be permanent: %v", err)
	}
}

func TestUploadReplacesExisting(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	mustUpload(t, b, "f", newSource(1000, 1))
	src := newSource(5000, 2)
	src.mtime = src.mtime.Add(time.Hour)
	mustUpload(t, b, "f", src)
}

func TestRenameSymlinkChmodRemove(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	ctx := context.Background()
	mustUpload(t, b, "x", newSource(10, 1))
	mustUpload(t, b, "y", newSource(20, 2))
	if err := b.Rename(ctx, "x", "y"); err != nil {
		t.Fatal(err)
	}
	if fi, err := b.Stat(ctx, "y"); err != nil || fi.Size != 10 {
		t.Fatalf("after rename over y: %+v %v", fi, err)
	}
	if err := b.Symlink(ctx, "y", "l"); err != nil {
		t.Fatal(err)
	}
	if err := b.Symlink(ctx, "other", "l"); err != nil {
		t.Fatalf("replacing a symlink: %v", err)
	}
	fi, err := b.Stat(ctx, "l")
	if err != nil || !fi.IsSymlink() || fi.LinkTarget != "other" {
		t.Fatalf("stat l: %+v %v", fi, err)
	}
	if err := b.Chmod(ctx, "y", 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := b.Stat(ctx, "y"); fi.Mode.Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode)
	}
	when := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := b.SetModTime(ctx, "y", when); err != nil {
		t.Fatal(err)
	}
	if fi, _ := b.Stat(ctx, "y"); !fi.ModTime.Equal(when) {
		t.Errorf("mtime %v, want %v", fi.ModTime, when)
	}
	for _, p := range []string{"y", "l"} {
		if err := b.Remove(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if free, err := b.FreeSpace(ctx, ""); err != nil || free <= 0 {
		t.Errorf("free space %d %v", free, err)
	}
}

func TestRefusesWritingThroughSymlink(t *testing.T) {
	e := newEnv(t, serverOpts{})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.root, "link")); err != nil {
		t.Fatal(err)
	}
	b := dial(t, e.config())
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"upload": func() error { _, err := b.Upload(ctx, "link/f", newSource(10, 1)); return err },
		"mkdir":  func() error { return b.Mkdir(ctx, "link/sub") },
		// The mkdir is sent first and fails on the link; what is there is
		// then looked at, and refused.
		"mkdir-at-link": func() error { return b.Mkdir(ctx, "link") },
		"symlink":       func() error { return b.Symlink(ctx, "t", "link/l") },
		"rename":        func() error { return b.Rename(ctx, "nothing", "link/x") },
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, op(), backends.ErrUnsafePath)
		})
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("something was written outside the root: %v", ents)
	}
	_, err := b.Upload(ctx, "../escape", newSource(1, 1))
	wantErr(t, err, backends.ErrUnsafePath)
}

func TestConcurrentUploads(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 2
	b := dial(t, cfg)
	var wg sync.WaitGroup
	srcs := make([]*memSource, 8)
	for i := range srcs {
		srcs[i] = newSource(100<<10+i, uint64(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Upload(context.Background(), filepathName(i), srcs[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, s := range srcs {
		if got := readAll(t, b, filepathName(i)); string(got) != string(s.data) {
			t.Errorf("file %d differs", i)
		}
	}
}

func filepathName(i int) string { return "dir/f" + string(rune('a'+i)) }

func TestUploadCancelled(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Upload(ctx, "f", newSource(1<<20, 1))
	wantErr(t, err, context.Canceled)
}

func TestSourceChangedIsNotPublished(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	src := newSource(1<<20, 1)
	src.changed = true
	_, err := b.Upload(context.Background(), "f", src)
	wantErr(t, err, backends.ErrSourceChanged)
	if ents, _ := os.ReadDir(e.root); len(ents) != 0 {
		t.Errorf("root holds %v after a changed source, want nothing", ents)
	}
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name   string
		verify Verify
		noExec bool
		want   string
	}{
		{"size only", VerifyNone, false, "size"},
		{"hash by sha256sum", VerifyHash, false, "sha256"},
		{"hash falls back to read-back without exec", VerifyHash, true, "read-back"},
		{"read-back", VerifyReadBack, false, "read-back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{noExec: tc.noExec})
			cfg := e.config()
			cfg.Verify = tc.verify
			b := dial(t, cfg)
			res := mustUpload(t, b, "f", newSource(200<<10, 3))
			if res.Verified != tc.want {
				t.Errorf("verified by %q, want %q", res.Verified, tc.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	e := newEnv(t, serverOpts{})
	b := dial(t, e.config())
	ctx := context.Background()
	src := newSource(70000, 9)
	mustUpload(t, b, "it's a file", src)
	sum, how, err := backends.Hash(ctx, b, "it's a file")
	if err != nil || how != "target" {
		t.Fatalf("hash: %v %q", err, how)
	}
	e2 := newEnv(t, serverOpts{noExec: true})
	b2 := dial(t, e2.config())
	mustUpload(t, b2, "it's a file", src)
	_, err = b2.Hash(ctx, "it's a file")
	wantErr(t, err, backends.ErrUnsupported)
	sum2, how2, err := backends.Hash(ctx, b2, "it's a file")
	if err != nil || how2 != "read-back" || sum2 != sum {
		t.Fatalf("fallback hash %q by %q (%v), want %q by read-back", sum2, how2, err, sum)
	}
	_, err = b.Hash(ctx, "missing")
	wantErr(t, err, backends.ErrNotExist)
}
