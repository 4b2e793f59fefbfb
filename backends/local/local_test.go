package local

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

func newTestBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	b, err := New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"Durable", Options{}},
		{"NoFsync", Options{NoFsync: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backends.Backend { return newTestBackend(t, tt.opts) }, backendtest.Options{})
		})
	}
}

func TestNewRefusesBadRoots(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, root string
		wantErr    error
	}{
		{"Missing", filepath.Join(dir, "missing"), backends.ErrNotExist},
		{"File", file, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.root, Options{})
			if err == nil {
				b.Close()
				t.Fatalf("New(%q) succeeded", tt.root)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("New(%q) = %v, want it to wrap %v", tt.root, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.root) {
				t.Errorf("error %q does not name the root", err)
			}
		})
	}
}

func TestPartialIsOwnerOnly(t *testing.T) {
	b := newTestBackend(t, Options{})
	src := backendtest.NewBytes(backendtest.RandomBytes(3<<20, 1), backendtest.BaseTime)
	src.Perm = 0o644
	if _, err := b.Upload(t.Context(), "f", backendtest.FailAfter(src, 2<<20, errors.New("cut"))); err == nil {
		t.Fatal("upload with a failing source succeeded")
	}
	fi, err := b.root.Stat(backends.PartialName("f", src.Size(), src.MTime))
	if err != nil {
		t.Fatalf("no partial: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("partial has mode %v, want 0600 until published", fi.Mode().Perm())
	}
	backendtest.Upload(t, b, "f", src.Data, src.MTime)
	if got := backendtest.Stat(t, b, "f").Mode.Perm(); got != 0o644 {
		t.Errorf("published file has mode %v, want 0644", got)
	}
}

func TestListSkipsUnsafeNames(t *testing.T) {
	b := newTestBackend(t, Options{})
	for _, name := range []string{"good", "new\nline", "bad\xffutf8"} {
		if err := os.WriteFile(filepath.Join(b.name, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fis, err := b.List(t.Context(), "")
	if !errors.Is(err, backends.ErrUnsafePath) {
		t.Errorf("List of a directory with unsafe names: err %v, want ErrUnsafePath", err)
	}
	if len(fis) != 1 || fis[0].Path != "good" {
		t.Errorf("List returned %+v, want only good", fis)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		errno     syscall.Errno
		class     error
		permanent bool
	}{
		{"ENOENT", syscall.ENOENT, backends.ErrNotExist, true},
		{"EACCES", syscall.EACCES, backends.ErrPermission, true},
		{"EPERM", syscall.EPERM, backends.ErrPermission, true},
		{"EROFS", syscall.EROFS, backends.ErrPermission, true},
		{"ENOSPC", syscall.ENOSPC, backends.ErrNoSpace, true},
		{"EDQUOT", syscall.EDQUOT, backends.ErrNoSpace, true},
		{"EIO", syscall.EIO, nil, false},
		{"ELOOP", syscall.ELOOP, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrap("write", "a/b", &fs.PathError{Op: "write", Path: "x", Err: tt.errno})
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("%v does not wrap %v", err, tt.class)
			}
			if !errors.Is(err, tt.errno) {
				t.Errorf("%v lost its errno", err)
			}
			if got := backends.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
			if !strings.HasPrefix(err.Error(), "write a/b: ") {
				t.Errorf("error %q does not say what and where", err)
			}
		})
	}
}

func TestBusyPartialIsRetryable(t *testing.T) {
	// A descriptor closed twice shows as EBADF on the second close (no
	// other goroutine of this test opens files in between).
	closeOnce := closeFd
	t.Cleanup(func() { closeFd = closeOnce })
	closeFd = func(fd int) {
		if err := unix.Close(fd); err != nil {
			t.Errorf("close of descriptor %d: %v (closed twice?)", fd, err)
		}
	}
	b := newTestBackend(t, Options{})
	src := backendtest.NewBytes([]byte("content"), backendtest.BaseTime)
	part := backends.PartialName("f", src.Size(), src.MTime)
	f, err := b.root.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lock(int(f.Fd())); err != nil {
		t.Fatal(err)
	}
	_, err = b.Upload(t.Context(), "f", src)
	if err == nil || backends.IsPermanent(err) {
		t.Fatalf("upload while another holds the partial: %v, want a retryable error", err)
	}
	if _, err := b.root.Stat(part); err != nil {
		t.Errorf("the busy upload removed the other's partial: %v", err)
	}
	backendtest.WantNotExist(t, b, "f")
	f.Close()
	backendtest.Upload(t, b, "f", src.Data, src.MTime)
	backendtest.WantContent(t, b, "f", src.Data)
}

func TestClosedBackendFails(t *testing.T) {
	b := newTestBackend(t, Options{})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(t.Context(), ""); err == nil {
		t.Error("Stat after Close succeeded")
	}
	if err := b.Close(); err == nil {
		t.Error("second Close succeeded")
	}
}

func TestFreeSpace(t *testing.T) {
	b := newTestBackend(t, Options{})
	n, err := b.FreeSpace(t.Context(), "")
	if err != nil || n <= 0 {
		t.Fatalf("FreeSpace = %d, %v", n, err)
	}
	if _, err := b.FreeSpace(t.Context(), "missing"); !errors.Is(err, backends.ErrNotExist) {
		t.Errorf("FreeSpace of a missing dir: %v", err)
	}
}

// TestDiskFull runs an upload into a 1 MiB tmpfs: it must fail with a
// permanent ErrNoSpace and leave no partial behind.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	for _, opts := range []Options{{}, {NoFsync: true}} {
		b, err := New(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		src := backendtest.NewBytes(backendtest.RandomBytes(2<<20, 1), backendtest.BaseTime)
		_, err = b.Upload(t.Context(), "big", src)
		if !errors.Is(err, backends.ErrNoSpace) || !backends.IsPermanent(err) {
			t.Fatalf("upload of 2 MiB into 1 MiB: %v, want a permanent ErrNoSpace", err)
		}
		if fis, _ := b.List(t.Context(), ""); len(fis) != 0 {
			t.Errorf("a failed upload left %+v", fis)
		}
		free, err := b.FreeSpace(t.Context(), "")
		if err != nil || free > 1<<20 {
			t.Errorf("FreeSpace on a 1 MiB tmpfs = %d, %v", free, err)
		}
		backendtest.Upload(t, b, "small", []byte("fits"), backendtest.BaseTime)
		if err := b.Remove(t.Context(), "small"); err != nil {
			t.Fatal(err)
		}
	}
}
