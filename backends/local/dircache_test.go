package local

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

// TestCachedDirectoryChangedUnderneath: the descriptor cache must never
// publish into a directory that its path no longer names. Each case uploads
// into "a" (which caches it), changes "a" behind the backend's back or
// through it, and uploads again.
func TestCachedDirectoryChangedUnderneath(t *testing.T) {
	tests := []struct {
		name string
		// change alters the directory "a" of a target at root, outside
		// being a folder beside the target.
		change func(t *testing.T, b *Backend, root, outside string)
		// wantErr is the class the second upload fails with; nil means it
		// succeeds and lands in the new "a".
		wantErr error
	}{
		{"MovedAwayAndRecreated", func(t *testing.T, b *Backend, root, _ string) {
			mustDo(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "old")))
			mustDo(t, os.Mkdir(filepath.Join(root, "a"), 0o755))
		}, nil},
		{"RemovedAndRecreated", func(t *testing.T, b *Backend, root, _ string) {
			mustDo(t, os.RemoveAll(filepath.Join(root, "a")))
			mustDo(t, os.Mkdir(filepath.Join(root, "a"), 0o755))
		}, nil},
		{"RenamedByBackend", func(t *testing.T, b *Backend, _, _ string) {
			mustDo(t, b.Rename(t.Context(), "a", "old"))
			mustDo(t, b.Mkdir(t.Context(), "a"))
		}, nil},
		{"RemovedForGood", func(t *testing.T, b *Backend, root, _ string) {
			mustDo(t, os.RemoveAll(filepath.Join(root, "a")))
		}, backends.ErrNotExist},
		{"ReplacedByLinkOut", func(t *testing.T, b *Backend, root, outside string) {
			mustDo(t, os.Rename(filepath.Join(root, "a"), filepath.Join(root, "old")))
			mustDo(t, os.Symlink(outside, filepath.Join(root, "a")))
		}, backends.ErrUnsafePath},
		// The cached directory itself leaves the root and a link to it
		// takes its place: through the link the path still names it.
		{"MovedOutAndLinked", func(t *testing.T, b *Backend, root, outside string) {
			away := filepath.Join(filepath.Dir(outside), "away")
			mustDo(t, os.Rename(filepath.Join(root, "a"), away))
			mustDo(t, os.Symlink(away, filepath.Join(root, "a")))
		}, backends.ErrUnsafePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			root, outside := filepath.Join(base, "target"), filepath.Join(base, "outside")
			mustDo(t, os.Mkdir(root, 0o755))
			mustDo(t, os.Mkdir(outside, 0o755))
			b, err := New(root, Options{NoFsync: true})
			mustDo(t, err)
			defer b.Close()
			mustDo(t, b.Mkdir(t.Context(), "a"))
			backendtest.Upload(t, b, "a/first", []byte("1"), backendtest.BaseTime)
			if _, ok := b.dirs.m["a"]; !ok {
				t.Fatal("the upload did not cache its directory; the test shows nothing")
			}
			tt.change(t, b, root, outside)

			_, err = b.Upload(t.Context(), "a/second", backendtest.NewBytes([]byte("2"), backendtest.BaseTime))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("second upload: %v, want an error wrapping %v", err, tt.wantErr)
				}
			} else {
				mustDo(t, err)
				got, err := os.ReadFile(filepath.Join(root, "a", "second"))
				if err != nil || string(got) != "2" {
					t.Errorf("a/second after the change: %q %v, want it in the new a", got, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(root, "old", "second")); err == nil {
				t.Error("the upload went to the old directory through a stale descriptor")
			}
			if names, _ := os.ReadDir(outside); len(names) != 0 {
				t.Errorf("outside the target: %v", names)
			}
			if _, err := os.Lstat(filepath.Join(base, "away", "second")); err == nil {
				t.Error("the upload escaped the target through a stale descriptor")
			}
		})
	}
}

// TestDirCacheBounded: a tree of more directories than the cache holds
// keeps at most maxCachedDirs descriptors open, and Close closes them all.
func TestDirCacheBounded(t *testing.T) {
	b := newTestBackend(t, Options{NoFsync: true})
	var handles []*dirHandle
	for i := range maxCachedDirs + 20 {
		p := "d" + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26))
		mustDo(t, b.Mkdir(t.Context(), p))
		backendtest.Upload(t, b, p+"/f", []byte("x"), backendtest.BaseTime)
	}
	if n := len(b.dirs.m); n > maxCachedDirs {
		t.Errorf("%d directories cached, want at most %d", n, maxCachedDirs)
	}
	for _, h := range b.dirs.m {
		handles = append(handles, h)
	}
	handles = append(handles, b.dirs.rootDir)
	mustDo(t, b.Close())
	for _, h := range handles {
		if h.refs != 0 || !h.dead {
			t.Errorf("%s after Close: refs %d dead %v, want closed", h.key, h.refs, h.dead)
		}
	}
	if slices.ContainsFunc(handles, func(h *dirHandle) bool { return h.f.Fd() != ^uintptr(0) }) {
		t.Error("a cached descriptor is still open after Close")
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestUploadUnderNonDirectory: a parent path that is a file or a FIFO is
// refused without blocking (opening a FIFO for reading waits for a writer).
func TestUploadUnderNonDirectory(t *testing.T) {
	b := newTestBackend(t, Options{NoFsync: true})
	mustDo(t, os.WriteFile(filepath.Join(b.name, "file"), nil, 0o644))
	mustDo(t, syscall.Mkfifo(filepath.Join(b.name, "fifo"), 0o644))
	for _, parent := range []string{"file", "fifo"} {
		t.Run(parent, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := b.Upload(t.Context(), parent+"/x", backendtest.NewBytes([]byte("x"), backendtest.BaseTime))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, syscall.ENOTDIR) {
					t.Errorf("upload under a %s: %v, want ENOTDIR", parent, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("upload under a %s blocked", parent)
			}
		})
	}
}

// TestFIFOInTargetDoesNotBlock: List, Open and FreeSpace on a FIFO fail at
// once instead of waiting for a writer.
func TestFIFOInTargetDoesNotBlock(t *testing.T) {
	b := newTestBackend(t, Options{NoFsync: true})
	mustDo(t, syscall.Mkfifo(filepath.Join(b.name, "fifo"), 0o644))
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"List", func() error { _, err := b.List(ctx, "fifo"); return err }},
		{"Open", func() error {
			r, err := b.Open(ctx, "fifo", 0)
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"FreeSpace", func() error { _, err := b.FreeSpace(ctx, "fifo"); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- c.call() }()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("%s on a FIFO succeeded", c.name)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s on a FIFO blocked", c.name)
			}
		})
	}
}
