package backendtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

func init() {
	register("Symlinks", testSymlinks)
	register("HashFallback", testHash)
	register("ConcurrentUploadsOneDir", testConcurrent)
}

func testSymlinks(t *testing.T, e *env) {
	s, ok := backends.As[backends.Symlinker](e.b)
	if !ok {
		t.Skip("backend has no Symlinker")
	}
	ctx, b := t.Context(), e.b
	Upload(t, b, "target.txt", []byte("target"), BaseTime)
	link := func(target, path string) {
		t.Helper()
		if err := s.Symlink(ctx, target, path); err != nil {
			t.Fatalf("Symlink(%q, %q): %v", target, path, err)
		}
		fi := Stat(t, b, path)
		if !fi.IsSymlink() || fi.LinkTarget != target {
			t.Fatalf("Stat(%q) = mode %v target %q, want a link to %q", path, fi.Mode, fi.LinkTarget, target)
		}
	}
	link("target.txt", "l")
	link("other name", "l") // replaces a link
	Upload(t, b, "f", []byte("file"), BaseTime)
	link("target.txt", "f")               // replaces a file
	link("does/not/exist", "dangling")    // dangling links are data too
	link("../../outside/of/root", "away") // stored as given, never followed by ferry
	if fi := List(t, b, "")["l"]; !fi.IsSymlink() || fi.LinkTarget != "other name" {
		t.Errorf("List shows l as mode %v target %q", fi.Mode, fi.LinkTarget)
	}

	// An upload replaces the link itself and leaves what it points to.
	link("target.txt", "l2")
	Upload(t, b, "l2", []byte("new"), BaseTime)
	WantContent(t, b, "l2", []byte("new"))
	WantContent(t, b, "target.txt", []byte("target"))

	if err := b.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := s.Symlink(ctx, "x", "d"); err == nil {
		t.Errorf("Symlink over a directory succeeded")
	}
	if fi := Stat(t, b, "d"); !fi.IsDir() {
		t.Errorf("d is %v after a refused Symlink", fi.Mode)
	}
	if err := b.Remove(ctx, "f"); err != nil {
		t.Fatalf("Remove of a link: %v", err)
	}
	WantNotExist(t, b, "f")
	WantContent(t, b, "target.txt", []byte("target"))
	for name := range List(t, b, "") {
		if backends.IsPartialName(name) {
			t.Errorf("symlink replacement left temporary %q", name)
		}
	}
}

func testHash(t *testing.T, e *env) {
	data := RandomBytes(1<<20+1, 13)
	Upload(t, e.b, "h", data, BaseTime)
	sum := sha256.Sum256(data)
	got, how, err := backends.Hash(t.Context(), e.b, "h")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	if got != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash = %s via %s, want %x", got, how, sum)
	}
	if how != "target" && how != "read-back" {
		t.Errorf("Hash says it was computed by %q", how)
	}
	_, _, err = backends.Hash(t.Context(), e.b, "missing")
	wantErr(t, "Hash of a missing file", err, backends.ErrNotExist)
}

func testConcurrent(t *testing.T, e *env) {
	ctx := t.Context()
	if err := e.b.Mkdir(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	const files, workers = 96, 16
	want := make([][]byte, files)
	for i := range want {
		want[i] = RandomBytes(i*2711%(200<<10), uint64(100+i))
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				p := fmt.Sprintf("c/f%03d", i)
				if _, err := e.b.Upload(ctx, p, NewBytes(want[i], BaseTime)); err != nil {
					t.Errorf("Upload(%q): %v", p, err)
				}
				if _, err := e.b.List(ctx, "c"); err != nil {
					t.Errorf("List during uploads: %v", err)
				}
			}
		})
	}
	for i := range files {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if got := List(t, e.b, "c"); len(got) != files {
		t.Errorf("List(c) has %d entries after %d uploads", len(got), files)
	}
	for i, data := range want {
		WantContent(t, e.b, fmt.Sprintf("c/f%03d", i), data)
	}
}
