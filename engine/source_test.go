package engine

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// planned writes a file and returns the entry a scan would have made of it.
func planned(t *testing.T, path string, data []byte) backends.FileInfo {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return backends.FileInfo{Path: filepath.Base(path), Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
}

// TestSourceCheck: Check after the copy passes only when the path still
// names the opened file with the planned size and mtime.
func TestSourceCheck(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, path string)
		changed bool
	}{
		{"Unchanged", func(*testing.T, string) {}, false},
		{"Appended", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("more"))
			f.Close()
		}, true},
		{"Touched", func(t *testing.T, p string) {
			if err := os.Chtimes(p, time.Now(), time.Now()); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"ReplacedSameSizeAndTime", func(t *testing.T, p string) {
			other := p + ".new"
			planned(t, other, []byte("HELLO"))
			if err := os.Rename(other, p); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"Removed", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			entry := planned(t, p, []byte("hello"))
			src, err := openSource(t.Context(), p, entry, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			buf := make([]byte, 5)
			if n, err := src.ReadAt(buf, 0); n != 5 || err != nil || string(buf) != "hello" {
				t.Fatalf("ReadAt = %d %v %q", n, err, buf)
			}
			tt.change(t, p)
			err = src.Check()
			if got := errors.Is(err, backends.ErrSourceChanged); got != tt.changed {
				t.Errorf("Check() = %v, want changed=%v", err, tt.changed)
			}
		})
	}
}

// TestSourceOpenRefuses: a path that is no longer what was planned is
// refused at open, a FIFO without blocking on it.
func TestSourceOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	entry := planned(t, filepath.Join(dir, "f"), []byte("hello"))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{"FIFO", fifo, backends.ErrSourceChanged},
		{"Directory", dir, backends.ErrSourceChanged},
		{"Missing", filepath.Join(dir, "nope"), os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				s, err := openSource(t.Context(), tt.path, entry, nil, nil)
				if err == nil {
					s.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) {
					t.Errorf("openSource(%s) = %v, want %v", tt.name, err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("openSource(%s) blocked", tt.name)
			}
		})
	}
}

// TestSourceReadAtEdges: reads follow io.ReaderAt (io.EOF with a short
// read), a short file is noticed, and reads racing Close fail instead of
// reading whatever file reuses the descriptor.
func TestSourceReadAtEdges(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	entry := planned(t, p, []byte("0123456789"))
	src, err := openSource(t.Context(), p, entry, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if n, err := src.ReadAt(buf, 8); n != 2 || err != io.EOF || string(buf[:n]) != "89" {
		t.Errorf("ReadAt at the end = %d %v %q, want 2 io.EOF \"89\"", n, err, buf[:n])
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			b := make([]byte, 10)
			for range 100 {
				if n, err := src.ReadAt(b, 0); err != nil && !errors.Is(err, errSourceClosed) {
					t.Errorf("ReadAt racing Close = %d %v", n, err)
					return
				} else if err == nil && string(b) != "0123456789" {
					t.Errorf("ReadAt read %q", b)
					return
				}
			}
		})
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := src.ReadAt(buf, 0); !errors.Is(err, errSourceClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if err := src.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}
