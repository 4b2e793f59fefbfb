package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// mkTree creates files (content given), directories (trailing slash) and
// symlinks ("name -> target") under root.
func mkTree(t *testing.T, root string, specs map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(specs))
	for k := range specs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := specs[k]
		p := filepath.Join(root, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case k[len(k)-1] == '/':
			err := os.MkdirAll(p, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case len(v) > 3 && v[:3] == "-> ":
			if err := os.Symlink(v[3:], p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func byPath(es []backends.FileInfo) map[string]backends.FileInfo {
	m := make(map[string]backends.FileInfo, len(es))
	for _, e := range es {
		m[e.Path] = e
	}
	return m
}

func problemFor(ps []Problem, path string) *Problem {
	for k := range ps {
		if ps[k].Path == path {
			return &ps[k]
		}
	}
	return nil
}

func TestScanTree(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	mkTree(t, outside, map[string]string{"secret": "s", "sub/deep": "d"})
	mkTree(t, root, map[string]string{
		"a/b/c.txt":                     "hello",
		"a/empty/":                      "",
		"a-b":                           "x",
		"a.c":                           "y",
		"z":                             "zz",
		"rel":                           "-> a/b/c.txt",
		"a/up":                          "-> ../z",
		"out":                           "-> " + outside,
		"outfile":                       "-> " + filepath.Join(outside, "secret"),
		"dangling":                      "-> does/not/exist",
		"skip.log":                      "log",
		"node_modules/":                 "",
		"node_modules/x":                "x",
		backends.PartialPrefix + "00-z": "partial",
	})
	mtime := time.Date(2024, 2, 3, 4, 5, 6, 7000, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "a/b/c.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "z"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "a/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := NewFilter([]string{"*.log", "node_modules/"})
	if err != nil {
		t.Fatal(err)
	}

	es, problems, err := Scan(context.Background(), root, f, nil)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Path)
	}
	want := []string{"a", "a/b", "a/b/c.txt", "a/empty", "a/up", "a-b", "a.c", "dangling", "out", "outfile", "rel", "z"}
	if !slices.Equal(got, want) {
		t.Errorf("Scan paths (in ComparePaths order, no excluded, partial, fifo or outside entries)\n got %q\nwant %q", got, want)
	}
	m := byPath(es)
	if e := m["a/b/c.txt"]; !e.IsRegular() || e.Size != 5 || !e.ModTime.Equal(mtime) || e.Mode != 0o644 {
		t.Errorf("a/b/c.txt = %+v, want regular, 5 bytes, mtime %v, mode 0644", e, mtime)
	}
	if e := m["z"]; e.Mode != 0o600 {
		t.Errorf("z mode %v, want 0600", e.Mode)
	}
	if e := m["a"]; !e.IsDir() || e.Mode.Perm() != 0o755 {
		t.Errorf("a = %+v, want a directory with mode 0755", e)
	}
	for path, target := range map[string]string{
		"rel": "a/b/c.txt", "a/up": "../z", "out": filepath.ToSlash(outside),
		"outfile": filepath.ToSlash(filepath.Join(outside, "secret")), "dangling": "does/not/exist",
	} {
		e := m[path]
		if !e.IsSymlink() || e.LinkTarget != target {
			t.Errorf("%s = %+v, want a symlink to %q, not followed", path, e, target)
		}
	}
	p := problemFor(problems, "a/fifo")
	if p == nil || !errors.Is(p.Err, ErrSpecialFile) {
		t.Errorf("fifo problem = %v, want one wrapping ErrSpecialFile (problems %v)", p, problems)
	}
	if len(problems) != 1 {
		t.Errorf("problems = %v, want only the fifo", problems)
	}
}

func TestScanBadNames(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{
		"ok":            "1",
		"bad\xffname":   "2",
		"ctl\x01/child": "3",
	})
	es, problems, err := Scan(context.Background(), root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Path != "ok" {
		t.Errorf("entries %v, want only ok (a bad directory name hides its subtree)", paths(es))
	}
	for _, name := range []string{"bad\xffname", "ctl\x01"} {
		p := problemFor(problems, name)
		if p == nil || !errors.Is(p.Err, backends.ErrUnsafePath) {
			t.Errorf("problem for %q = %v, want one wrapping ErrUnsafePath", name, p)
		}
	}
	if len(problems) != 2 {
		t.Errorf("problems %v, want 2", problems)
	}
}

// Root ignores permission bits, so an unreadable directory is made with the
// readDirFault seam; chmod is tried as well when the test does not run as root.
func TestScanUnreadableDirectory(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{"locked/inner": "x", "open/f": "y"})
	locked := filepath.Join(root, "locked")

	t.Run("seam", func(t *testing.T) {
		t.Cleanup(func() { readDirFault = nil })
		readDirFault = func(path string) error {
			if path == locked {
				return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
			}
			return nil
		}
		checkLocked(t, root)
	})
	t.Run("chmod", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads a mode-000 directory anyway; the seam subtest covers this")
		}
		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(locked, 0o755) })
		checkLocked(t, root)
	})
}

func checkLocked(t *testing.T, root string) {
	t.Helper()
	es, problems, err := Scan(context.Background(), root, nil, nil)
	if err != nil {
		t.Fatalf("Scan: %v (an unreadable subdirectory must not be fatal)", err)
	}
	m := byPath(es)
	if _, ok := m["locked"]; !ok {
		t.Errorf("the unreadable directory itself is missing from %v: the target would lose it", paths(es))
	}
	if _, ok := m["locked/inner"]; ok {
		t.Errorf("entries under the unreadable directory listed: %v", paths(es))
	}
	if _, ok := m["open/f"]; !ok {
		t.Errorf("the walk did not go on past the unreadable directory: %v", paths(es))
	}
	p := problemFor(problems, "locked")
	if p == nil || !errors.Is(p.Err, fs.ErrPermission) {
		t.Errorf("problem for locked = %v, want one wrapping fs.ErrPermission", p)
	}
}

func TestScanRootErrors(t *testing.T) {
	dir := t.TempDir()
	mkTree(t, dir, map[string]string{"file": "x", "real/f": "y", "link": "-> real"})

	_, _, err := Scan(context.Background(), filepath.Join(dir, "missing"), nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing root: err %v, want one wrapping fs.ErrNotExist", err)
	}
	if _, _, err := Scan(context.Background(), filepath.Join(dir, "file"), nil, nil); err == nil {
		t.Error("a file as root: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Scan(ctx, dir, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v, want context.Canceled", err)
	}
	// A root that is itself a symlink to a directory is followed: the user named it.
	es, _, err := Scan(context.Background(), filepath.Join(dir, "link"), nil, nil)
	if err != nil || len(es) != 1 || es[0].Path != "f" {
		t.Errorf("symlinked root: %v, %v; want [f]", paths(es), err)
	}

	t.Cleanup(func() { readDirFault = nil })
	readDirFault = func(string) error { return syscall.EACCES }
	if _, _, err := Scan(context.Background(), dir, nil, nil); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("unreadable root: err %v, want one wrapping fs.ErrPermission", err)
	}
}

func TestScanEmptyRoot(t *testing.T) {
	es, problems, err := Scan(context.Background(), t.TempDir(), nil, nil)
	if err != nil || len(es) != 0 || len(problems) != 0 {
		t.Errorf("empty root: %v, %v, %v; want nothing", es, problems, err)
	}
}

// BenchmarkScan walks 10,000 files in 100 directories (a warm cache).
func BenchmarkScan(b *testing.B) {
	root := b.TempDir()
	for d := range 100 {
		dir := filepath.Join(root, fmt.Sprintf("dir%03d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", f)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		es, _, err := Scan(context.Background(), root, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		n = len(es)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/entry")
}

func TestIncomplete(t *testing.T) {
	fifo := Problem{Path: "f", Err: fmt.Errorf("%w: fifo", ErrSpecialFile)}
	unread := Problem{Path: "d", Err: fmt.Errorf("read directory: %w", fs.ErrPermission)}
	for _, tc := range []struct {
		name     string
		problems []Problem
		want     bool
	}{
		{"no problems: complete", nil, false},
		{"only skipped special files: complete", []Problem{fifo, fifo}, false},
		{"an unreadable directory: incomplete", []Problem{unread}, true},
		{"a special file and an unreadable directory: incomplete", []Problem{fifo, unread}, true},
	} {
		if got := Incomplete(tc.problems); got != tc.want {
			t.Errorf("%s: Incomplete = %v", tc.name, got)
		}
	}
}

// Scan's output is what MakePlan expects: sorted so that it needs no copy,
// and a tree whose plan onto an empty target passes every invariant.
func TestScanFeedsPlan(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{
		"a/b/c": "1", "a-b/x": "2", "a.b": "3", "a/link": "-> b/c", "e/": "", "z/y/x/w": "4",
	})
	src, problems, err := Scan(context.Background(), root, nil, nil)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	pl := &planner{}
	if got := pl.prepare(src, "source"); &got[0] != &src[0] {
		t.Error("MakePlan would copy and re-sort Scan's output: it is not in ComparePaths order")
	}
	opts := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true}
	plan := MakePlan(src, nil, opts)
	for _, err := range checkPlan(src, nil, opts, plan) {
		t.Error(err)
	}
}

// TestScanWiderThanItsWindow walks a root with more directories than the
// walk reads ahead, each holding a directory of its own: the reads ahead
// fill the window with siblings while the walk needs a child, which must
// still be read. Every entry comes out once, in ComparePaths order.
func TestScanWiderThanItsWindow(t *testing.T) {
	root := t.TempDir()
	want := 0
	for d := range 150 {
		for _, p := range []string{"f", "sub/g", "sub/deeper/h"} {
			mkfile(t, root, fmt.Sprintf("d%03d/%s", d, p), "x", time.Unix(1e9, 0))
		}
		want += 6 // the directory, sub, deeper and three files
	}
	done := make(chan struct{})
	var es []backends.FileInfo
	var err error
	go func() {
		defer close(done)
		es, _, err = Scan(context.Background(), root, nil, nil)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Scan did not finish: the walk is stuck")
	}
	if err != nil || len(es) != want {
		t.Fatalf("Scan: %d entries, %v; want %d", len(es), err, want)
	}
	for i := 1; i < len(es); i++ {
		if ComparePaths(es[i-1].Path, es[i].Path) >= 0 {
			t.Fatalf("out of order: %q before %q", es[i-1].Path, es[i].Path)
		}
	}
}
