package watch

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestFileChangesAreHinted(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(r *rig)
		change func(r *rig)
		want   []string
	}{
		{"new file", nil, func(r *rig) { r.write("a", "x") }, []string{"a"}},
		{"existing file rewritten", func(r *rig) { r.write("a", "x") },
			func(r *rig) { r.write("a", "yy") }, []string{"a"}},
		{"file removed", func(r *rig) { r.write("a", "x") },
			func(r *rig) { os.Remove(r.path("a")) }, []string{"a"}},
		{"file renamed", func(r *rig) { r.write("a", "x") },
			func(r *rig) { os.Rename(r.path("a"), r.path("b")) }, []string{"a", "b"}},
		{"file in existing subdirectory", func(r *rig) { r.mkdirAll("d/e") },
			func(r *rig) { r.write("d/e/f", "x") }, []string{"d/e/f"}},
		{"empty directory made", nil, func(r *rig) { r.mkdirAll("d") }, []string{"d"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			r0 := &rig{t: t, root: root}
			if tc.setup != nil {
				tc.setup(r0)
			}
			r := newRigAt(t, root, Options{}, false)
			tc.change(r)
			r.waitFor(0, tc.want...)
		})
	}
}

func TestBurstToOnePathGivesOneHint(t *testing.T) {
	r := newRig(t, Options{})
	f, err := os.OpenFile(r.path("burst"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := f.WriteString("line\n"); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	got := r.barrier(0)
	if n := countPath(got, "burst"); n != 1 {
		t.Fatalf("200 writes gave %d hints for the file, want 1; hints %v", n, pathsOf(got))
	}
}

func TestChmodAloneGivesNoHint(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(root+"/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRigAt(t, root, Options{}, false)
	if err := os.Chmod(r.path("f"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := r.barrier(0)
	if n := countPath(got, "f"); n != 0 {
		t.Fatalf("chmod gave %d hints, want none; hints %v", n, pathsOf(got))
	}
}

func TestIgnoredPathsAreNotHintedNorWatched(t *testing.T) {
	ignore := func(rel string, isDir bool) bool {
		base := rel[strings.LastIndex(rel, "/")+1:]
		return strings.HasPrefix(base, ".ferry-partial-") || (isDir && base == "skip")
	}
	r := newRig(t, Options{Ignore: ignore})
	r.mkdirAll("skip/inner")
	r.write("skip/inner/f", "x")
	r.write("skip/g", "x")
	r.write(".ferry-partial-0123-f", "partial")
	r.mkdirAll("d")
	r.write("d/.ferry-partial-4567-g", "partial")
	r.write("kept", "x")
	got := r.barrier(0)
	for _, h := range got {
		if strings.HasPrefix(h.Path, "skip") || strings.Contains(h.Path, ".ferry-partial-") {
			t.Errorf("ignored path hinted: %q", h.Path)
		}
	}
	if countPath(got, "kept") != 1 {
		t.Errorf("kept not hinted once: %v", pathsOf(got))
	}
	if r.w.isWatched("skip") || r.w.isWatched("skip/inner") {
		t.Errorf("ignored directory is watched")
	}
	// An ignored partial renamed to its final name is a new file there.
	i := r.mark()
	if err := os.Rename(r.path(".ferry-partial-0123-f"), r.path("final")); err != nil {
		t.Fatal(err)
	}
	r.waitFor(i, "final")
}

// TestSettle checks that a file written in pieces is hinted only after its
// writes have stopped for Settle, even when the writer pauses for longer
// than Debounce.
func TestSettle(t *testing.T) {
	cases := []struct {
		name     string
		opts     Options
		interval time.Duration
		total    time.Duration
	}{
		{"defaults, appended every 50ms for 3s", Options{}, 50 * time.Millisecond, 3 * time.Second},
		{"pauses longer than debounce, shorter than settle",
			Options{Debounce: 40 * time.Millisecond, Settle: 600 * time.Millisecond},
			200 * time.Millisecond, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			f, err := os.OpenFile(r.path("growing"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var last time.Time
			chunk := strings.Repeat("x", 4096)
			for time.Since(start) < tc.total {
				last = time.Now()
				if _, err := f.WriteString(chunk); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tc.interval)
			}
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			got := r.waitFor(0, "growing")
			settle := r.w.opts.Settle
			for _, h := range got {
				if h.Path != "growing" {
					continue
				}
				if h.at.Before(last) {
					t.Fatalf("hint at %v, before the last write at %v (file still being written)",
						h.at.Sub(start), last.Sub(start))
				}
				if h.at.Sub(fi.ModTime()) < settle-20*time.Millisecond {
					t.Fatalf("hint %v after the last write, want at least Settle=%v",
						h.at.Sub(fi.ModTime()), settle)
				}
			}
			if n := countPath(r.barrier(0), "growing"); n != 1 {
				t.Fatalf("growing file hinted %d times, want 1", n)
			}
		})
	}
}

// TestEditorSaves checks that the usual ways editors save leave the saved
// path hinted, once, and only when it holds the final content.
func TestEditorSaves(t *testing.T) {
	const final = "final content\n"
	cases := []struct {
		name string
		save func(r *rig)
	}{
		{"write temp file, rename over original", func(r *rig) {
			r.write(".doc.txt.tmp1234", final)
			os.Rename(r.path(".doc.txt.tmp1234"), r.path("doc.txt"))
		}},
		{"rename original away, write new, delete backup", func(r *rig) {
			os.Rename(r.path("doc.txt"), r.path("doc.txt~"))
			r.write("doc.txt", final)
			os.Remove(r.path("doc.txt~"))
		}},
		{"truncate and write in place in two pieces", func(r *rig) {
			f, err := os.OpenFile(r.path("doc.txt"), os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				r.t.Fatal(err)
			}
			f.WriteString(final[:5])
			time.Sleep(20 * time.Millisecond)
			f.WriteString(final[5:])
			f.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(root+"/doc.txt", []byte("original\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			r := newRigAt(t, root, Options{}, true)
			tc.save(r)
			got := r.waitFor(0, "doc.txt")
			got = r.barrier(0)
			if n := countPath(got, "doc.txt"); n != 1 {
				t.Errorf("doc.txt hinted %d times, want 1: %v", n, pathsOf(got))
			}
			for _, h := range got {
				if h.Path == "doc.txt" && (!h.exists || h.content != final) {
					t.Errorf("doc.txt hinted while it held %q (exists %v), want the final content",
						h.content, h.exists)
				}
			}
		})
	}
}

func TestRunStops(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		w, err := New(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Run after cancel = %v, want context.Canceled", err)
		}
		if _, ok := <-w.Hints(); ok {
			t.Fatal("Hints not closed after Run returned")
		}
	})
	t.Run("close", func(t *testing.T) {
		w, err := New(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- w.Run(context.Background()) }()
		for !w.started.Load() {
			time.Sleep(time.Millisecond)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Run after Close = %v, want nil", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	})
	t.Run("close before run, run twice", func(t *testing.T) {
		w, err := New(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		if err := w.Run(context.Background()); err != nil {
			t.Fatalf("Run after Close = %v, want nil", err)
		}
		if err := w.Run(context.Background()); err == nil {
			t.Fatal("second Run succeeded")
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		f := t.TempDir() + "/file"
		os.WriteFile(f, nil, 0o644)
		if w, err := New(f, Options{}); err == nil {
			w.Close()
			t.Fatal("New on a file succeeded")
		}
	})
}
