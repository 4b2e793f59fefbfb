package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// fakeBackend is an in-memory target. Hooks let a test make calls fail or
// block; a nil hook does nothing.
type fakeBackend struct {
	// beforeUpload runs before any byte is copied; attempt counts from 1.
	beforeUpload func(ctx context.Context, path string, src backends.Source, attempt int) error
	// afterRead runs after the content is read and before Check.
	afterRead func(path string, attempt int)

	mu       sync.Mutex
	files    map[string][]byte
	mtimes   map[string]time.Time
	dirs     map[string]bool
	attempts map[string]int
	calls    []string // "kind path" in the order calls began
	active   int
	maxActiv int
}

func newFake() *fakeBackend {
	return &fakeBackend{
		files:    map[string][]byte{},
		mtimes:   map[string]time.Time{},
		dirs:     map[string]bool{},
		attempts: map[string]int{},
	}
}

func (f *fakeBackend) record(kind, path string) {
	f.mu.Lock()
	f.calls = append(f.calls, kind+" "+path)
	f.mu.Unlock()
}

func (f *fakeBackend) Stat(ctx context.Context, path string) (backends.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b, ok := f.files[path]; ok {
		return backends.FileInfo{Path: path, Size: int64(len(b)), ModTime: f.mtimes[path]}, nil
	}
	if f.dirs[path] {
		return backends.FileInfo{Path: path, Mode: fs.ModeDir | 0o755}, nil
	}
	return backends.FileInfo{}, fmt.Errorf("stat %s: %w", path, backends.ErrNotExist)
}

func (f *fakeBackend) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	return nil, backends.ErrUnsupported
}

func (f *fakeBackend) Mkdir(ctx context.Context, path string) error {
	f.record("mkdir", path)
	f.mu.Lock()
	f.dirs[path] = true
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) Remove(ctx context.Context, path string) error {
	f.record("remove", path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.files[path]; ok {
		delete(f.files, path)
		return nil
	}
	if f.dirs[path] {
		for p := range f.files {
			if len(p) > len(path) && p[:len(path)+1] == path+"/" {
				return fmt.Errorf("remove %s: directory not empty", path)
			}
		}
		delete(f.dirs, path)
		return nil
	}
	return fmt.Errorf("remove %s: %w", path, backends.ErrNotExist)
}

func (f *fakeBackend) Rename(ctx context.Context, from, to string) error {
	return backends.ErrUnsupported
}

func (f *fakeBackend) SetModTime(ctx context.Context, path string, t time.Time) error {
	f.record("touch", path)
	f.mu.Lock()
	f.mtimes[path] = t
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) Open(ctx context.Context, path string, offset int64) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[path]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", path, backends.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

func (f *fakeBackend) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	f.record("upload", path)
	f.mu.Lock()
	f.attempts[path]++
	attempt := f.attempts[path]
	f.active++
	f.maxActiv = max(f.maxActiv, f.active)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	if f.beforeUpload != nil {
		if err := f.beforeUpload(ctx, path, src, attempt); err != nil {
			return backends.UploadResult{}, err
		}
	}
	buf := make([]byte, src.Size())
	const chunk = 32 << 10
	for off := int64(0); off < src.Size(); off += chunk {
		if err := ctx.Err(); err != nil {
			return backends.UploadResult{}, err
		}
		end := min(off+chunk, src.Size())
		n, err := src.ReadAt(buf[off:end], off)
		if err != nil && err != io.EOF {
			return backends.UploadResult{}, err
		}
		if int64(n) < end-off {
			return backends.UploadResult{}, fmt.Errorf("upload %s: short read: %w", path, backends.ErrSourceChanged)
		}
	}
	if f.afterRead != nil {
		f.afterRead(path, attempt)
	}
	if err := src.Check(); err != nil {
		return backends.UploadResult{}, err
	}
	f.mu.Lock()
	f.files[path] = buf
	f.mtimes[path] = src.ModTime()
	f.mu.Unlock()
	return backends.UploadResult{Sent: src.Size(), Verified: "size"}, nil
}

func (f *fakeBackend) Close() error { return nil }

func (f *fakeBackend) content(path string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.files[path]
	return b, ok
}

func (f *fakeBackend) attemptsOf(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[path]
}

// symlinkFake adds the Symlinker capability.
type symlinkFake struct {
	*fakeBackend
	links sync.Map
}

func (s *symlinkFake) Symlink(ctx context.Context, target, path string) error {
	s.links.Store(path, target)
	return nil
}

var (
	_ backends.Backend   = (*fakeBackend)(nil)
	_ backends.Symlinker = (*symlinkFake)(nil)
)

// writeSrc writes a source file under root and returns its entry as Scan
// would.
func writeSrc(t *testing.T, root, path string, content []byte) backends.FileInfo {
	t.Helper()
	local := filepath.Join(root, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(local, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return statEntry(t, root, path)
}

func statEntry(t *testing.T, root, path string) backends.FileInfo {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return backends.FileInfo{Path: path, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
}

func uploadOp(e backends.FileInfo) Op { return Op{Kind: OpUpload, Path: e.Path, Src: e, Reason: "new"} }

// noSleep records the backoff delays instead of waiting.
type noSleep struct {
	mu     sync.Mutex
	delays []time.Duration
}

func (n *noSleep) sleep(ctx context.Context, d time.Duration) error {
	n.mu.Lock()
	n.delays = append(n.delays, d)
	n.mu.Unlock()
	return ctx.Err()
}

func (n *noSleep) all() []time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := append([]time.Duration(nil), n.delays...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
