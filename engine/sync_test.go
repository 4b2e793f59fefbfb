package engine

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/local"
)

// tree describes every entry under root except root itself: type, size,
// permission bits, mtime, content hash or link target.
func tree(t *testing.T, root string, withDirTimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link -> " + target
		case fi.IsDir():
			out[rel] = fmt.Sprintf("dir %v", fi.Mode().Perm())
			if withDirTimes {
				out[rel] += " " + fi.ModTime().UTC().Format(time.RFC3339Nano)
			}
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %d %s %x", fi.Mode().Perm(), fi.Size(),
				fi.ModTime().UTC().Format(time.RFC3339Nano), sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(want, got map[string]string) string {
	var d []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			d = append(d, "missing "+p)
		} else if g != w {
			d = append(d, fmt.Sprintf("%s: got %s, want %s", p, g, w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "extra "+p)
		}
	}
	sort.Strings(d)
	return strings.Join(d, "\n")
}

func mkfile(t *testing.T, root, rel, content string, mtime time.Time) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// sourceTree builds a small site with nested folders, an empty file, an
// executable, a symlink and an old directory mtime.
func sourceTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	mt := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	mkfile(t, src, "index.html", "<h1>hi</h1>", mt)
	mkfile(t, src, "css/site.css", "body{}", mt)
	mkfile(t, src, "img/logo.png", strings.Repeat("\x89PNG", 5000), mt)
	mkfile(t, src, "img/deep/er/empty", "", mt)
	mkfile(t, src, "bin/run.sh", "#!/bin/sh\necho hi\n", mt)
	mkfile(t, src, "tmp/cache.tmp", "scratch", mt)
	if err := os.Chmod(filepath.Join(src, "bin/run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../index.html", filepath.Join(src, "css/home")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"img/deep/er", "img/deep", "img", "css", "bin", "tmp"} {
		if err := os.Chtimes(filepath.Join(src, d), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

func localTarget(t *testing.T, dir string) backends.Backend {
	t.Helper()
	b, err := local.New(dir, local.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestSyncLocalToLocal(t *testing.T) {
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		mode     Mode
		excludes []string
		dryRun   bool
		maxDel   int
		// extra target entries before the run
		extras []string
		// what must hold afterwards, given the source and target trees
		check func(t *testing.T, src, dst map[string]string, rep Report)
	}{
		{name: "mirror makes the target equal", mode: Mirror, maxDel: -1, extras: []string{"stale.txt", "old/dir/x"},
			check: func(t *testing.T, src, dst map[string]string, rep Report) {
				if d := diffTrees(src, dst); d != "" {
					t.Errorf("target differs:\n%s", d)
				}
				if rep.Deleted < 4 { // stale.txt, old/dir/x, old/dir, old
					t.Errorf("deleted %d, want at least 4", rep.Deleted)
				}
			}},
		{name: "backup keeps extras", mode: Backup, maxDel: -1, extras: []string{"stale.txt", "old/dir/x"},
			check: func(t *testing.T, src, dst map[string]string, rep Report) {
				for p, w := range src {
					if !strings.HasPrefix(w, "dir") && dst[p] != w {
						t.Errorf("%s: got %q, want %q", p, dst[p], w)
					}
				}
				if _, ok := dst["stale.txt"]; !ok || rep.Deleted != 0 {
					t.Errorf("backup deleted something: %d", rep.Deleted)
				}
			}},
		{name: "excludes neither copied nor deleted", mode: Mirror, maxDel: -1, excludes: []string{"*.tmp", "/bin/"},
			extras: []string{"keep.tmp", "bin/other"},
			check: func(t *testing.T, src, dst map[string]string, rep Report) {
				for _, p := range []string{"tmp/cache.tmp", "bin/run.sh"} {
					if _, ok := dst[p]; ok {
						t.Errorf("excluded %s was copied", p)
					}
				}
				for _, p := range []string{"keep.tmp", "bin/other"} {
					if _, ok := dst[p]; !ok {
						t.Errorf("excluded %s was deleted from the target", p)
					}
				}
				if dst["index.html"] != src["index.html"] {
					t.Errorf("index.html not synced")
				}
			}},
		{name: "dry run changes nothing", mode: Mirror, maxDel: -1, dryRun: true, extras: []string{"stale.txt"},
			check: func(t *testing.T, src, dst map[string]string, rep Report) {
				if len(dst) != 1 || rep.Uploaded != 0 {
					t.Errorf("dry run changed the target: %v", dst)
				}
				var kinds []string
				for _, op := range rep.Plan.Ops {
					kinds = append(kinds, op.String())
				}
				all := strings.Join(kinds, "\n")
				if !strings.Contains(all, "upload index.html") || !strings.Contains(all, "delete stale.txt") {
					t.Errorf("plan lacks the expected ops:\n%s", all)
				}
			}},
		{name: "max delete refuses and copies", mode: Mirror, maxDel: 1, extras: []string{"a", "b", "c"},
			check: func(t *testing.T, src, dst map[string]string, rep Report) {
				if !errors.Is(rep.DeletesRefused, ErrTooManyDeletes) || !rep.Failed() {
					t.Errorf("DeletesRefused = %v, want ErrTooManyDeletes", rep.DeletesRefused)
				}
				for _, p := range []string{"a", "b", "c"} {
					if _, ok := dst[p]; !ok {
						t.Errorf("%s deleted despite the cap", p)
					}
				}
				if dst["img/logo.png"] != src["img/logo.png"] {
					t.Errorf("copies did not run")
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := sourceTree(t)
			dstDir := t.TempDir()
			for _, p := range tc.extras {
				mkfile(t, dstDir, p, "extra", old)
			}
			rep, err := Sync(context.Background(), SyncOptions{
				Source: src, Target: localTarget(t, dstDir), Mode: tc.mode,
				Excludes: tc.excludes, MaxDelete: tc.maxDel, DryRun: tc.dryRun,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != 0 {
				t.Errorf("problems: %v", rep.Problems)
			}
			tc.check(t, tree(t, src, true), tree(t, dstDir, true), rep)
			if tc.dryRun || tc.maxDel >= 0 {
				return
			}
			// A second run has nothing to do.
			rep2, err := Sync(context.Background(), SyncOptions{
				Source: src, Target: localTarget(t, dstDir), Mode: tc.mode, Excludes: tc.excludes, MaxDelete: -1,
			})
			if err != nil || len(rep2.Plan.Ops) != 0 || rep2.Uploaded != 0 || rep2.Failed() {
				t.Errorf("second run: err %v, %d ops (%v), %d uploads", err, len(rep2.Plan.Ops), rep2.Plan.Ops, rep2.Uploaded)
			}
		})
	}
}

func TestSyncChecksum(t *testing.T) {
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, checksum := range []bool{false, true} {
		t.Run(fmt.Sprintf("checksum=%v", checksum), func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			mkfile(t, src, "f", "new content", mt)
			mkfile(t, dst, "f", "old content", mt) // same size, same mtime
			rep, err := Sync(context.Background(), SyncOptions{Source: src, Target: localTarget(t, dst), MaxDelete: -1, Checksum: checksum})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(dst, "f"))
			want := "old content"
			if checksum {
				want = "new content"
			}
			if string(got) != want || (rep.Uploaded == 1) != checksum {
				t.Errorf("target f = %q after %d uploads, want %q", got, rep.Uploaded, want)
			}
		})
	}
}

func TestSyncSourceRoot(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T) string
	}{
		{name: "missing", make: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }},
		{name: "a file", make: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			os.WriteFile(p, nil, 0o644)
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			mkfile(t, dst, "precious", "data", time.Now())
			_, err := Sync(context.Background(), SyncOptions{Source: tc.make(t), Target: localTarget(t, dst), MaxDelete: -1})
			if !errors.Is(err, ErrSourceRoot) {
				t.Errorf("err = %v, want ErrSourceRoot", err)
			}
			if _, err := os.Stat(filepath.Join(dst, "precious")); err != nil {
				t.Errorf("target touched: %v", err)
			}
		})
	}
}

// unreachable is a target whose every call fails as a dead link does.
type unreachable struct{ *fakeBackend }

func (unreachable) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	return nil, fmt.Errorf("dial 127.0.0.1:1: %w", backends.ErrUnreachable)
}

func TestSyncUnreachableTarget(t *testing.T) {
	src := sourceTree(t)
	_, err := Sync(context.Background(), SyncOptions{Source: src, Target: unreachable{newFake()}, MaxDelete: -1})
	if !errors.Is(err, backends.ErrUnreachable) {
		t.Errorf("err = %v, want it to wrap ErrUnreachable", err)
	}
}

func TestSyncDryRunMissingTargetRoot(t *testing.T) {
	src := sourceTree(t)
	rep, err := Sync(context.Background(), SyncOptions{Source: src, Target: missingRoot{newFake()}, MaxDelete: -1, DryRun: true})
	if err != nil || len(rep.Plan.Ops) == 0 {
		t.Errorf("dry run against a missing root: err %v, %d ops", err, len(rep.Plan.Ops))
	}
	if _, err := Sync(context.Background(), SyncOptions{Source: src, Target: missingRoot{newFake()}, MaxDelete: -1}); !errors.Is(err, backends.ErrNotExist) {
		t.Errorf("real run against a missing root: err %v, want ErrNotExist", err)
	}
}

type missingRoot struct{ *fakeBackend }

func (missingRoot) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	return nil, fmt.Errorf("list %q: %w", dir, backends.ErrNotExist)
}

func TestSyncSpecialFileIsSkipped(t *testing.T) {
	src, dst := sourceTree(t), t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
		t.Skip("no fifo:", err)
	}
	mkfile(t, dst, "extra", "x", time.Now())
	rep, err := Sync(context.Background(), SyncOptions{Source: src, Target: localTarget(t, dst), MaxDelete: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || len(rep.Skipped) != 1 || !errors.Is(rep.Skipped[0].Err, ErrSpecialFile) {
		t.Errorf("failed=%v problems=%v skipped=%v, want the fifo skipped as a warning", rep.Failed(), rep.Problems, rep.Skipped)
	}
	if _, err := os.Stat(filepath.Join(dst, "extra")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a skipped fifo held back the deletes: %v", err)
	}
}

func TestSyncCancelled(t *testing.T) {
	src, dst := sourceTree(t), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Sync(ctx, SyncOptions{Source: src, Target: localTarget(t, dst), MaxDelete: -1})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if got := tree(t, dst, false); len(got) != 0 {
		t.Errorf("a cancelled sync wrote %v", got)
	}
}

// cancelAfter cancels a run once n bytes were read for sending.
type cancelAfter struct {
	nopProgress
	n      int64
	seen   atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Bytes(_ string, n int64) {
	if c.seen.Add(n) >= c.n {
		c.cancel()
	}
}

func TestSyncResumesAfterCancel(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	mkfile(t, src, "big.bin", string(big), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Sync(ctx, SyncOptions{Source: src, Target: localTarget(t, dst), MaxDelete: -1,
		Exec: ExecOptions{Progress: &cancelAfter{n: 3 << 20, cancel: cancel}}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: err %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a cancelled upload was published: %v", err)
	}
	rep, err := Sync(context.Background(), SyncOptions{Source: src, Target: localTarget(t, dst), MaxDelete: -1})
	if err != nil || rep.Uploaded != 1 {
		t.Fatalf("second run: err %v, uploaded %d, problems %v", err, rep.Uploaded, rep.Problems)
	}
	if rep.ResumedBytes == 0 {
		t.Errorf("second run resumed nothing")
	}
	if d := diffTrees(tree(t, src, false), tree(t, dst, false)); d != "" {
		t.Errorf("target differs after resume:\n%s", d)
	}
}

// TestSyncOpensTargetWhileWalking gives Sync an Open that takes a while:
// the source's walk must already be under way meanwhile. A file written
// into the source root while Open waits is therefore not seen by this run
// (the root was read before), where a walk started after Open would copy
// it. A failing Open ends the run with its error, nothing done.
func TestSyncOpensTargetWhileWalking(t *testing.T) {
	src := sourceTree(t)
	dst := t.TempDir()
	open := func(ctx context.Context) (backends.Backend, error) {
		time.Sleep(300 * time.Millisecond) // the walk reads the root long before
		if err := os.WriteFile(filepath.Join(src, "late.txt"), []byte("late"), 0o644); err != nil {
			return nil, err
		}
		return local.New(dst, local.Options{NoFsync: true})
	}
	rep, err := Sync(t.Context(), SyncOptions{Source: src, Open: open, Mode: Mirror, MaxDelete: -1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Uploaded == 0 {
		t.Fatalf("nothing copied: %+v", rep)
	}
	if _, err := os.Lstat(filepath.Join(dst, "late.txt")); err == nil {
		t.Fatal("a file written while the target was being opened was copied: the source was walked only after the open")
	}
	if _, err := os.Lstat(filepath.Join(dst, "index.html")); err != nil {
		t.Fatalf("the source was not copied: %v", err)
	}

	boom := errors.New("boom")
	dst2 := t.TempDir()
	_, err = Sync(t.Context(), SyncOptions{Source: src, Mode: Mirror, MaxDelete: -1,
		Open: func(context.Context) (backends.Backend, error) { return nil, boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("Sync with a failing Open: %v, want its error", err)
	}
	if ents, _ := os.ReadDir(dst2); len(ents) != 0 {
		t.Fatalf("the failed run wrote %v", ents)
	}
}
