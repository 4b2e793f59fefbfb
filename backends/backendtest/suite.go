package backendtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Options declares what a backend cannot do, so the suite holds it only to
// what it claims. The zero value asks for everything.
type Options struct {
	// ModTimePrecision is how finely the backend keeps modification times
	// (time.Second for SFTP v3); zero means nanoseconds.
	ModTimePrecision time.Duration
	// NoModes says the backend does not keep permission bits.
	NoModes bool
	// LargeFileSize is the size of the large-file case; zero means 64 MiB.
	LargeFileSize int64
	// NoPartialFiles says the backend publishes atomically without a
	// partial file beside the final name (an object store's multipart
	// upload), so the resume cases look only at what Upload reports and
	// the cases that plant partial files are skipped.
	NoPartialFiles bool
}

// Run runs the conformance suite against backends made by newBackend, one
// fresh backend with an empty root per subtest. Run closes each backend when
// its subtest ends; newBackend may register its own cleanup for the rest.
// Capabilities the backend lacks (Symlinker, Chmoder, ...) are skipped.
func Run(t *testing.T, newBackend func(t *testing.T) backends.Backend, opts Options) {
	if opts.LargeFileSize == 0 {
		opts.LargeFileSize = 64 << 20
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBackend(t)
			t.Cleanup(func() { b.Close() })
			c.fn(t, &env{b: b, opts: opts})
		})
	}
}

// env is what one case gets: its backend and the declared options.
type env struct {
	b    backends.Backend
	opts Options
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

// cases lists every case; each file adds its own with register.
var cases []testCase

func register(name string, fn func(t *testing.T, e *env)) {
	cases = append(cases, testCase{name, fn})
}

// BaseTime is the mtime the suite's uploads carry unless a case says
// otherwise; it has nanoseconds so that truncation shows.
var BaseTime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

// Upload uploads data to path with mtime and fails the test on error. The
// parent directory must exist: the contract does not promise that Upload
// creates it.
func Upload(t testing.TB, b backends.Backend, path string, data []byte, mtime time.Time) backends.UploadResult {
	t.Helper()
	res, err := b.Upload(t.Context(), path, NewBytes(data, mtime))
	if err != nil {
		t.Fatalf("Upload(%q, %d bytes): %v", path, len(data), err)
	}
	return res
}

// ReadFile reads the whole file at path through Open and fails the test on
// error.
func ReadFile(t testing.TB, b backends.Backend, path string) []byte {
	t.Helper()
	r, err := b.Open(t.Context(), path, 0)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %q: %v", path, err)
	}
	return data
}

// WantContent fails the test unless the file at path holds exactly want.
func WantContent(t testing.TB, b backends.Backend, path string, want []byte) {
	t.Helper()
	got := ReadFile(t, b, path)
	if !bytes.Equal(got, want) {
		t.Fatalf("%q holds %d bytes (%.20q...), want %d bytes (%.20q...)", path, len(got), got, len(want), want)
	}
	if fi := Stat(t, b, path); fi.Size != int64(len(want)) || !fi.IsRegular() {
		t.Fatalf("Stat(%q) = size %d mode %v, want a regular file of %d bytes", path, fi.Size, fi.Mode, len(want))
	}
}

// WantNotExist fails the test unless Stat of path wraps ErrNotExist.
func WantNotExist(t testing.TB, b backends.Backend, path string) {
	t.Helper()
	fi, err := b.Stat(t.Context(), path)
	if !errors.Is(err, backends.ErrNotExist) {
		t.Fatalf("Stat(%q) = %+v, %v; want an error wrapping ErrNotExist", path, fi, err)
	}
}

// Stat stats path and fails the test on error.
func Stat(t testing.TB, b backends.Backend, path string) backends.FileInfo {
	t.Helper()
	fi, err := b.Stat(t.Context(), path)
	if err != nil {
		t.Fatalf("Stat(%q): %v", path, err)
	}
	if fi.Path != path {
		t.Fatalf("Stat(%q).Path = %q", path, fi.Path)
	}
	return fi
}

// List lists dir, fails the test on error, and checks what every backend
// must: each entry is a direct child of dir with a name that passes
// CheckName. It returns the entries by name.
func List(t testing.TB, b backends.Backend, dir string) map[string]backends.FileInfo {
	t.Helper()
	fis, err := b.List(t.Context(), dir)
	if err != nil {
		t.Fatalf("List(%q): %v", dir, err)
	}
	out := make(map[string]backends.FileInfo, len(fis))
	for _, fi := range fis {
		parent, name := backends.Split(fi.Path)
		if parent != dir {
			t.Fatalf("List(%q) returned %q, not a direct child", dir, fi.Path)
		}
		if err := backends.CheckName(name); err != nil {
			t.Fatalf("List(%q) returned a name that fails CheckName: %v", dir, err)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("List(%q) returned %q twice", dir, name)
		}
		out[name] = fi
	}
	return out
}

func mkdir(t testing.TB, b backends.Backend, dir string) {
	t.Helper()
	if err := b.Mkdir(t.Context(), dir); err != nil {
		t.Fatalf("Mkdir(%q): %v", dir, err)
	}
}

// sameTime compares mtimes at the backend's declared precision.
func (e *env) sameTime(a, b time.Time) bool {
	if p := e.opts.ModTimePrecision; p > 0 {
		return a.Truncate(p).Equal(b.Truncate(p))
	}
	return a.Equal(b)
}

// wantErr fails unless err wraps want.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

func cancelled(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
