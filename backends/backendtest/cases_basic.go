package backendtest

import (
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func init() {
	register("MissingPathsWrapErrNotExist", testNotExist)
	register("ListRootAndNested", testList)
	register("MkdirCreatesParentsIdempotent", testMkdir)
	register("RenameReplacesExisting", testRename)
	register("Remove", testRemove)
	register("SetModTime", testSetModTime)
	register("OpenAtOffset", testOpenOffset)
	register("UnsafePathsRefusedBeforeIO", testUnsafePaths)
	register("CancelledContext", testCancelled)
}

func testNotExist(t *testing.T, e *env) {
	ctx := t.Context()
	b := e.b
	Upload(t, b, "present", []byte("x"), BaseTime)
	ops := []struct {
		name string
		call func(p string) error
	}{
		{"Stat", func(p string) error { _, err := b.Stat(ctx, p); return err }},
		{"List", func(p string) error { _, err := b.List(ctx, p); return err }},
		{"Open", func(p string) error {
			r, err := b.Open(ctx, p, 0)
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"Remove", func(p string) error { return b.Remove(ctx, p) }},
		{"RenameFrom", func(p string) error { return b.Rename(ctx, p, "elsewhere") }},
		{"SetModTime", func(p string) error { return b.SetModTime(ctx, p, BaseTime) }},
	}
	for _, op := range ops {
		for _, p := range []string{"missing", "no-dir/missing"} {
			t.Run(op.name+"/"+p, func(t *testing.T) {
				wantErr(t, op.name+"("+p+")", op.call(p), backends.ErrNotExist)
			})
		}
	}
	WantNotExist(t, b, "elsewhere")
	WantContent(t, b, "present", []byte("x"))
}

func testList(t *testing.T, e *env) {
	b := e.b
	if got := List(t, b, ""); len(got) != 0 {
		t.Fatalf("a fresh backend's root lists %v, want nothing", got)
	}
	Upload(t, b, "f1", []byte("one"), BaseTime)
	if err := b.Mkdir(t.Context(), "d/e"); err != nil {
		t.Fatal(err)
	}
	Upload(t, b, "d/f2", []byte("second"), BaseTime)
	Upload(t, b, "d/e/f3", nil, BaseTime)

	tests := []struct {
		dir  string
		want map[string]string // name -> "dir" or the file's size
	}{
		{"", map[string]string{"f1": "3", "d": "dir"}},
		{"d", map[string]string{"f2": "6", "e": "dir"}},
		{"d/e", map[string]string{"f3": "0"}},
	}
	for _, tt := range tests {
		got := List(t, b, tt.dir)
		if len(got) != len(tt.want) {
			t.Errorf("List(%q) = %v, want %v", tt.dir, keys(got), tt.want)
			continue
		}
		for name, kind := range tt.want {
			fi, ok := got[name]
			switch {
			case !ok:
				t.Errorf("List(%q) lacks %q", tt.dir, name)
			case kind == "dir" && !fi.IsDir():
				t.Errorf("List(%q): %q has mode %v, want a directory", tt.dir, name, fi.Mode)
			case kind != "dir" && (!fi.IsRegular() || strconv.FormatInt(fi.Size, 10) != kind):
				t.Errorf("List(%q): %q has mode %v size %d, want a regular file of %s bytes", tt.dir, name, fi.Mode, fi.Size, kind)
			case kind != "dir" && !e.sameTime(fi.ModTime, BaseTime):
				t.Errorf("List(%q): %q has mtime %v, want %v", tt.dir, name, fi.ModTime, BaseTime)
			}
		}
	}
	if _, err := b.List(t.Context(), "f1"); err == nil {
		t.Errorf("List of a file succeeded, want an error")
	}
}

func testMkdir(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	for range 2 {
		if err := b.Mkdir(ctx, "a/b/c"); err != nil {
			t.Fatalf("Mkdir(a/b/c): %v", err)
		}
	}
	for _, p := range []string{"a", "a/b", "a/b/c"} {
		if fi := Stat(t, b, p); !fi.IsDir() {
			t.Fatalf("%q has mode %v after Mkdir, want a directory", p, fi.Mode)
		}
	}
	if err := b.Mkdir(ctx, "a"); err != nil {
		t.Fatalf("Mkdir of an existing parent: %v", err)
	}
	if err := b.Mkdir(ctx, ""); err != nil {
		t.Fatalf("Mkdir of the root: %v", err)
	}
	Upload(t, b, "a/file", []byte("x"), BaseTime)
	if err := b.Mkdir(ctx, "a/file"); err == nil {
		t.Fatalf("Mkdir over a file succeeded")
	}
	if err := b.Mkdir(ctx, "a/file/sub"); err == nil {
		t.Fatalf("Mkdir below a file succeeded")
	}
	WantContent(t, b, "a/file", []byte("x"))
}

func testRename(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	Upload(t, b, "a", []byte("content of a"), BaseTime)
	Upload(t, b, "b", []byte("old b"), BaseTime.Add(time.Hour))
	if err := b.Rename(ctx, "a", "b"); err != nil {
		t.Fatalf("Rename(a, b) over an existing file: %v", err)
	}
	WantNotExist(t, b, "a")
	WantContent(t, b, "b", []byte("content of a"))
	if fi := Stat(t, b, "b"); !e.sameTime(fi.ModTime, BaseTime) {
		t.Errorf("renamed file has mtime %v, want its own %v", fi.ModTime, BaseTime)
	}
	if err := b.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := b.Rename(ctx, "b", "d/c"); err != nil {
		t.Fatalf("Rename into a directory: %v", err)
	}
	WantContent(t, b, "d/c", []byte("content of a"))
	if err := b.Rename(ctx, "d/c", "missing-dir/c"); err == nil {
		t.Fatalf("Rename into a missing directory succeeded")
	}
	WantContent(t, b, "d/c", []byte("content of a"))
}

func testRemove(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	mkdir(t, b, "d")
	Upload(t, b, "d/f", []byte("x"), BaseTime)
	if err := b.Remove(ctx, "d"); err == nil {
		t.Fatalf("Remove of a non-empty directory succeeded")
	}
	WantContent(t, b, "d/f", []byte("x"))
	for _, p := range []string{"d/f", "d"} {
		if err := b.Remove(ctx, p); err != nil {
			t.Fatalf("Remove(%q): %v", p, err)
		}
		WantNotExist(t, b, p)
	}
}

func testSetModTime(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	mkdir(t, b, "d")
	Upload(t, b, "d/f", []byte("x"), BaseTime)
	times := []time.Time{
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2038, 1, 19, 3, 14, 8, 1, time.UTC), // past 32-bit time_t
		time.Unix(0, 0),
	}
	for _, p := range []string{"d/f", "d"} {
		for _, want := range times {
			if err := b.SetModTime(ctx, p, want); err != nil {
				t.Fatalf("SetModTime(%q, %v): %v", p, want, err)
			}
			if got := Stat(t, b, p).ModTime; !e.sameTime(got, want) {
				t.Errorf("after SetModTime(%q, %v) Stat says %v", p, want, got)
			}
		}
	}
}

func testOpenOffset(t *testing.T, e *env) {
	data := RandomBytes(3<<20+17, 1)
	Upload(t, e.b, "f", data, BaseTime)
	for _, off := range []int64{0, 1, 1 << 20, int64(len(data)) - 1, int64(len(data))} {
		r, err := e.b.Open(t.Context(), "f", off)
		if err != nil {
			t.Fatalf("Open(f, %d): %v", off, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatalf("read from %d: %v", off, err)
		}
		if string(got) != string(data[off:]) {
			t.Errorf("Open(f, %d) read %d bytes, want the %d from the offset on", off, len(got), len(data)-int(off))
		}
	}
}

// unsafePaths are refused by CheckPath; no backend may clean them into
// something it then uses.
var unsafePaths = []string{"../x", "/etc/x", "a/../../x", "a/../x", "a\x00b", "a//b", "a/./b", "a/", ".", "..", "a/b\nc", "\xff"}

func testUnsafePaths(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	if err := b.Mkdir(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	Upload(t, b, "a/b", []byte("x"), BaseTime)
	calls := map[string]func(p string) error{
		"Stat":       func(p string) error { _, err := b.Stat(ctx, p); return err },
		"List":       func(p string) error { _, err := b.List(ctx, p); return err },
		"Mkdir":      func(p string) error { return b.Mkdir(ctx, p) },
		"Remove":     func(p string) error { return b.Remove(ctx, p) },
		"RenameFrom": func(p string) error { return b.Rename(ctx, p, "a/new") },
		"RenameTo":   func(p string) error { return b.Rename(ctx, "a/b", p) },
		"SetModTime": func(p string) error { return b.SetModTime(ctx, p, BaseTime) },
		"Open": func(p string) error {
			r, err := b.Open(ctx, p, 0)
			if err == nil {
				r.Close()
			}
			return err
		},
		"Upload": func(p string) error { _, err := b.Upload(ctx, p, NewBytes([]byte("y"), BaseTime)); return err },
	}
	if s, ok := backends.As[backends.Symlinker](b); ok {
		calls["Symlink"] = func(p string) error { return s.Symlink(ctx, "a/b", p) }
	}
	if c, ok := backends.As[backends.Chmoder](b); ok {
		calls["Chmod"] = func(p string) error { return c.Chmod(ctx, p, 0o600) }
	}
	if s, ok := backends.As[backends.SpaceReporter](b); ok {
		calls["FreeSpace"] = func(p string) error { _, err := s.FreeSpace(ctx, p); return err }
	}
	if h, ok := backends.As[backends.Hasher](b); ok {
		calls["Hash"] = func(p string) error { _, err := h.Hash(ctx, p); return err }
	}
	for name, call := range calls {
		for _, p := range unsafePaths {
			t.Run(name+"/"+p, func(t *testing.T) {
				wantErr(t, name+"("+p+")", call(p), backends.ErrUnsafePath)
			})
		}
	}
	// Nothing was created, moved or removed by any of them.
	if got := List(t, b, ""); len(got) != 1 {
		t.Errorf("root lists %v after refused calls, want only a", keys(got))
	}
	if got := List(t, b, "a"); len(got) != 1 {
		t.Errorf("a lists %v after refused calls, want only b", keys(got))
	}
	WantContent(t, b, "a/b", []byte("x"))
}

func testCancelled(t *testing.T, e *env) {
	b := e.b
	Upload(t, b, "f", []byte("x"), BaseTime)
	ctx := cancelled(t)
	calls := map[string]func() error{
		"Stat":       func() error { _, err := b.Stat(ctx, "f"); return err },
		"List":       func() error { _, err := b.List(ctx, ""); return err },
		"Mkdir":      func() error { return b.Mkdir(ctx, "d") },
		"Remove":     func() error { return b.Remove(ctx, "f") },
		"Rename":     func() error { return b.Rename(ctx, "f", "g") },
		"SetModTime": func() error { return b.SetModTime(ctx, "f", time.Now()) },
		"Open": func() error {
			r, err := b.Open(ctx, "f", 0)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			return err
		},
		"Upload": func() error { _, err := b.Upload(ctx, "new", NewBytes([]byte("y"), BaseTime)); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			wantErr(t, name+" with a cancelled context", call(), context.Canceled)
		})
	}
	WantContent(t, b, "f", []byte("x"))
	WantNotExist(t, b, "new")

	// Cancelled in the middle of a large upload.
	ctx2, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := RandomBytes(32<<20, 2)
	src := OnRead(NewBytes(data, BaseTime), func(off int64) {
		if off >= 8<<20 {
			cancel()
		}
	})
	_, err := b.Upload(ctx2, "big", src)
	wantErr(t, "Upload cancelled mid-way", err, context.Canceled)
	WantNotExist(t, b, "big")
	if !errors.Is(ctx2.Err(), context.Canceled) {
		t.Fatalf("the source never reached 8 MiB")
	}
}

func keys(m map[string]backends.FileInfo) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
