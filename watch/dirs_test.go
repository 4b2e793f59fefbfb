package watch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/fsnotify/fsnotify"
)

// watchedUnder lists the directories under rel that the watcher and
// fsnotify still hold watches for.
func (r *rig) watchedUnder(rel string) (ours, fsn []string) {
	r.w.mu.Lock()
	for d := range r.w.dirs {
		if within(d, rel) {
			ours = append(ours, d)
		}
	}
	r.w.mu.Unlock()
	abs := r.path(rel)
	for _, p := range r.w.fsw.WatchList() {
		if p == abs || strings.HasPrefix(p, abs+string(filepath.Separator)) {
			fsn = append(fsn, p)
		}
	}
	return ours, fsn
}

func TestNewDirectories(t *testing.T) {
	cases := []struct {
		name   string
		create func(r *rig, outside string)
		want   []string
		later  string // a file written afterwards, which must be hinted too
	}{
		{"mkdir -p and a file at once", func(r *rig, _ string) {
			r.mkdirAll("a/b/c")
			r.write("a/b/c/f", "x")
		}, []string{"a", "a/b", "a/b/c", "a/b/c/f"}, "a/b/c/g"},
		{"many files in a new nested directory at once", func(r *rig, _ string) {
			r.mkdirAll("n/x/y")
			for i := range 300 {
				r.write(fmt.Sprintf("n/x/y/f%03d", i), "x")
			}
			for i := range 50 {
				r.write(fmt.Sprintf("n/g%02d", i), "x")
			}
		}, append(append([]string{"n", "n/x", "n/x/y"}, names("n/x/y/f%03d", 300)...), names("n/g%02d", 50)...), "n/x/late"},
		{"populated directory moved in", func(r *rig, outside string) {
			for _, p := range []string{"m/s/t"} {
				os.MkdirAll(filepath.Join(outside, p), 0o755)
			}
			for _, p := range []string{"m/f1", "m/s/f2", "m/s/t/f3"} {
				os.WriteFile(filepath.Join(outside, p), []byte("x"), 0o644)
			}
			if err := os.Rename(filepath.Join(outside, "m"), r.path("m")); err != nil {
				r.t.Fatal(err)
			}
		}, []string{"m", "m/f1", "m/s", "m/s/f2", "m/s/t", "m/s/t/f3"}, "m/s/t/f4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Options{})
			tc.create(r, t.TempDir())
			r.waitFor(0, tc.want...)
			i := r.mark()
			r.write(tc.later, "later")
			r.waitFor(i, tc.later)
		})
	}
}

func names(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

func TestDirectoriesLeaving(t *testing.T) {
	cases := []struct {
		name  string
		leave func(r *rig, outside string)
		want  []string // hinted after the move
		moved string   // where the subtree now is inside the tree, if it is
	}{
		{"renamed within the tree", func(r *rig, _ string) {
			os.Rename(r.path("d"), r.path("e"))
		}, []string{"d", "e", "e/s", "e/s/f"}, "e"},
		{"renamed over an empty watched directory", func(r *rig, _ string) {
			i := r.mark()
			r.mkdirAll("e")
			r.waitFor(i, "e")
			// os.Rename refuses to replace a directory; the system call does not.
			if err := syscall.Rename(r.path("d"), r.path("e")); err != nil {
				r.t.Fatal(err)
			}
		}, []string{"d", "e", "e/s", "e/s/f"}, "e"},
		{"moved into a subdirectory", func(r *rig, _ string) {
			r.mkdirAll("p")
			os.Rename(r.path("d"), r.path("p/d"))
		}, []string{"d", "p/d", "p/d/s/f"}, "p/d"},
		{"removed", func(r *rig, _ string) {
			os.RemoveAll(r.path("d"))
		}, []string{"d"}, ""},
		{"moved out of the tree", func(r *rig, outside string) {
			os.Rename(r.path("d"), filepath.Join(outside, "d"))
		}, []string{"d"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Options{})
			r.mkdirAll("d/s/t")
			r.write("d/s/f", "x")
			r.waitFor(0, "d", "d/s", "d/s/t", "d/s/f")
			outside := t.TempDir()
			i := r.mark()
			tc.leave(r, outside)
			r.waitFor(i, tc.want...)

			if ours, fsn := r.watchedUnder("d"); len(ours)+len(fsn) > 0 {
				t.Errorf("watches left under the old name: ours %v, fsnotify %v", ours, fsn)
			}
			// Changes at the old place (now outside) must not be hinted;
			// changes at the new place must be, under the new name.
			if _, err := os.Stat(filepath.Join(outside, "d")); err == nil {
				os.WriteFile(filepath.Join(outside, "d/s/outside"), []byte("x"), 0o644)
			}
			i = r.mark()
			if tc.moved != "" {
				r.write(tc.moved+"/s/t/new", "x")
				r.waitFor(i, tc.moved+"/s/t/new")
				ours, _ := r.watchedUnder(tc.moved)
				if len(ours) != 3 {
					t.Errorf("watched under %s: %v, want 3 directories", tc.moved, ours)
				}
			}
			got := r.barrier(i)
			for _, h := range got {
				if strings.HasPrefix(h.Path, "d/") {
					t.Errorf("hint under the old name after the move: %q", h.Path)
				}
			}
		})
	}
}

// TestRenameStorm renames directories back and forth quickly and checks
// that the watches end up matching the tree exactly.
func TestRenameStorm(t *testing.T) {
	r := newRig(t, Options{})
	for i := range 10 {
		r.mkdirAll(fmt.Sprintf("d%d/s", i))
	}
	r.waitFor(0, "d0/s", "d9/s")
	for round := range 20 {
		for i := range 10 {
			from, to := fmt.Sprintf("d%d", i), fmt.Sprintf("r%d", i)
			if round%2 == 1 {
				from, to = to, from
			}
			if err := os.Rename(r.path(from), r.path(to)); err != nil {
				t.Fatal(err)
			}
		}
	}
	i := r.mark()
	r.barrier(i)
	ours, fsn := r.watchedUnder("")
	want := 1 + 20 // root, d0..d9 and their s
	if len(ours) != want || len(fsn) != want {
		t.Fatalf("after the storm: %d watched by us, %d by fsnotify, want %d: %v", len(ours), len(fsn), want, ours)
	}
	for _, d := range ours {
		if strings.HasPrefix(d, "r") {
			t.Errorf("stale watch %q", d)
		}
	}
	i = r.mark()
	r.write("d3/s/f", "x")
	r.waitFor(i, "d3/s/f")
}

// TestMoveWalkedBeforeItsEvent holds the event loop while a directory is
// made and another is moved into it, so the walk of the new directory finds
// the moved one before the event of the move arrives. inotify has one watch
// per directory, so the old registration must give way to the new path.
func TestMoveWalkedBeforeItsEvent(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/d/s/t", 0o755); err != nil {
		t.Fatal(err)
	}
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	r := newRigAt(t, root, Options{eventHook: func(fsnotify.Event) {
		once.Do(func() { close(held); <-release })
	}}, false)
	r.mkdirAll("p")
	<-held
	if err := os.Rename(r.path("d"), r.path("p/d")); err != nil {
		t.Fatal(err)
	}
	close(release)
	r.waitFor(0, "p", "p/d", "p/d/s/t", "d")
	i := r.mark()
	r.write("p/d/s/t/new", "x")
	r.waitFor(i, "p/d/s/t/new")
	if ours, fsn := r.watchedUnder("d"); len(ours)+len(fsn) > 0 {
		t.Errorf("watches left under the old name: ours %v, fsnotify %v", ours, fsn)
	}
	if ours, fsn := r.watchedUnder("p"); len(ours) != 4 || len(fsn) != 4 {
		t.Errorf("watched under p: ours %v, fsnotify %v; want p, p/d, p/d/s, p/d/s/t", ours, fsn)
	}
}
