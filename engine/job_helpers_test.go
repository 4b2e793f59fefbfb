package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/local"
)

// jobConverge is how long a test waits for a target to reach the source's
// state; generous, as -race and a busy machine slow everything.
const jobConverge = 30 * time.Second

// jobWaitFor polls cond until it returns nil or the timeout passes, then fails
// the test with cond's last error.
func jobWaitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// jobLocalTarget makes an empty local target directory and its backend.
func jobLocalTarget(t *testing.T) (string, backends.Backend) {
	t.Helper()
	dir := t.TempDir()
	b, err := local.New(dir, local.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return dir, b
}

// runJob starts a job and stops it at the end of the test, failing the
// test when Run returns anything but the cancellation.
func runJob(t *testing.T, opts JobOptions) *Job {
	t.Helper()
	if opts.Debounce == 0 {
		opts.Debounce = 30 * time.Millisecond
	}
	if opts.Retry.Base == 0 {
		opts.Retry = Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if opts.Probe.Base == 0 {
		opts.Probe = Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if os.Getenv("FERRY_JOB_DEBUG") != "" && opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	j, err := NewJob(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	jobWaitFor(t, jobConverge, "first full sync", func() error {
		for _, s := range j.Status() {
			if !s.Synced && !s.Down {
				return fmt.Errorf("%s not synced yet: %+v", s.Name, s)
			}
		}
		return nil
	})
	return j
}

// jobReadTree reads every regular file, symlink and directory under root, keyed by
// slash path, skipping partial files. Directories map to "/".
func jobReadTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if backends.IsPartialName(rel) {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel] = "/"
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "->" + l
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	return out, err
}

// jobSameTree returns nil when dst holds exactly what src holds (minus the
// paths skip says to ignore in src), or an error naming the first
// differences.
func jobSameTree(src, dst string, skip func(string) bool) error {
	a, err := jobReadTree(src)
	if err != nil {
		return err
	}
	b, err := jobReadTree(dst)
	if err != nil {
		return err
	}
	var diffs []string
	for p, v := range a {
		if skip != nil && skip(p) {
			continue
		}
		w, ok := b[p]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+p)
		case v != w:
			diffs = append(diffs, fmt.Sprintf("differs %s (%d vs %d bytes)", p, len(v), len(w)))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			diffs = append(diffs, "extra "+p)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return errors.New(strings.Join(diffs, "; "))
}

func jobWriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func jobContent(name string, n int) []byte {
	return bytes.Repeat([]byte(name+"\n"), n)
}

// jobFlaky wraps a backend and fails every call with ErrUnreachable
// while down is set, as a target whose server went away does.
type jobFlaky struct {
	backends.Backend
	down  atomic.Bool
	calls atomic.Int64 // calls refused while down
}

func (f *jobFlaky) check(op, p string) error {
	if f.down.Load() {
		f.calls.Add(1)
		return fmt.Errorf("%s %s: connection refused: %w", op, p, backends.ErrUnreachable)
	}
	return nil
}

func (f *jobFlaky) Stat(ctx context.Context, p string) (backends.FileInfo, error) {
	if err := f.check("stat", p); err != nil {
		return backends.FileInfo{}, err
	}
	return f.Backend.Stat(ctx, p)
}

func (f *jobFlaky) List(ctx context.Context, p string) ([]backends.FileInfo, error) {
	if err := f.check("list", p); err != nil {
		return nil, err
	}
	return f.Backend.List(ctx, p)
}

func (f *jobFlaky) Mkdir(ctx context.Context, p string) error {
	if err := f.check("mkdir", p); err != nil {
		return err
	}
	return f.Backend.Mkdir(ctx, p)
}

func (f *jobFlaky) Remove(ctx context.Context, p string) error {
	if err := f.check("remove", p); err != nil {
		return err
	}
	return f.Backend.Remove(ctx, p)
}

func (f *jobFlaky) Rename(ctx context.Context, from, to string) error {
	if err := f.check("rename", from); err != nil {
		return err
	}
	return f.Backend.Rename(ctx, from, to)
}

func (f *jobFlaky) SetModTime(ctx context.Context, p string, tm time.Time) error {
	if err := f.check("chtimes", p); err != nil {
		return err
	}
	return f.Backend.SetModTime(ctx, p, tm)
}

func (f *jobFlaky) Open(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	if err := f.check("open", p); err != nil {
		return nil, err
	}
	return f.Backend.Open(ctx, p, off)
}

func (f *jobFlaky) Upload(ctx context.Context, p string, src backends.Source) (backends.UploadResult, error) {
	if err := f.check("upload", p); err != nil {
		return backends.UploadResult{}, err
	}
	return f.Backend.Upload(ctx, p, src)
}

func (f *jobFlaky) Unwrap() backends.Backend { return f.Backend }

func jobNewLocal(dir string) (backends.Backend, error) {
	return local.New(dir, local.Options{NoFsync: true})
}
