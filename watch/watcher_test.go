package watch

import (
	"context"
	"os"
	"strings"
	"sync"
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

// TestSettle checks that a file written in pieces is hinted only once it
// has been unchanged for Settle, even when the writer pauses for longer than
// Debounce, and that it is hinted once after the writes stop.
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
			var mu sync.Mutex
			var decided []time.Time
			tc.opts.emitHook = func(rel string, at time.Time) {
				if rel == "growing" {
					mu.Lock()
					decided = append(decided, at)
					mu.Unlock()
				}
			}
			r := newRig(t, tc.opts)
			f, err := os.OpenFile(r.path("growing"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			type write struct{ start, end time.Time }
			var writes []write
			chunk := strings.Repeat("x", 4096)
			for begin := time.Now(); time.Since(begin) < tc.total; {
				s := time.Now()
				if _, err := f.WriteString(chunk); err != nil {
					t.Fatal(err)
				}
				writes = append(writes, write{s, time.Now()})
				time.Sleep(tc.interval)
			}
			f.Close()
			r.waitFor(0, "growing")
			r.barrier(0)

			settle := r.w.opts.Settle
			// Every hint came at least Settle after the start of each write
			// that had ended before it was decided (less the coarseness of
			// file times).
			mu.Lock()
			defer mu.Unlock()
			for _, at := range decided {
				for _, w := range writes {
					if !w.end.After(at) && at.Sub(w.start) < settle-10*time.Millisecond {
						t.Errorf("hint decided %v after a write began, want at least Settle=%v",
							at.Sub(w.start), settle)
					}
				}
			}
			last := writes[len(writes)-1]
			if n := len(decided); n == 0 || decided[n-1].Before(last.end) {
				t.Fatalf("no hint after the last write (hints at %v)", decided)
			}
			// Unless the writer itself stalled for longer than Settle (a
			// loaded machine), there was no hint before the last write.
			stalled := false
			for i := 1; i < len(writes); i++ {
				stalled = stalled || writes[i].start.Sub(writes[i-1].end) >= settle
			}
			if len(decided) != 1 && !stalled {
				t.Errorf("%d hints, want one after the writes stopped", len(decided))
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
		opts Options
		save func(r *rig)
	}{
		{"write temp file, rename over original", Options{}, func(r *rig) {
			r.write(".doc.txt.tmp1234", final)
			os.Rename(r.path(".doc.txt.tmp1234"), r.path("doc.txt"))
		}},
		{"rename original away, write new, delete backup", Options{}, func(r *rig) {
			os.Rename(r.path("doc.txt"), r.path("doc.txt~"))
			r.write("doc.txt", final)
			os.Remove(r.path("doc.txt~"))
		}},
		{"slow save: original away for longer than Debounce, shorter than Settle",
			Options{Debounce: 50 * time.Millisecond, Settle: time.Second}, func(r *rig) {
				os.Rename(r.path("doc.txt"), r.path("doc.txt~"))
				time.Sleep(300 * time.Millisecond)
				r.write("doc.txt", final)
				os.Remove(r.path("doc.txt~"))
			}},
		{"truncate and write in place in two pieces", Options{}, func(r *rig) {
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
			r := newRigAt(t, root, tc.opts, true)
			tc.save(r)
			r.waitFor(0, "doc.txt")
			got := r.barrier(0)
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
