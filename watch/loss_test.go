package watch

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

func TestOverflowInjectedAsksForRescan(t *testing.T) {
	r := newRig(t, Options{})
	r.w.fsw.Errors <- fsnotify.ErrEventOverflow
	r.waitRescan(0, "")
	if !strings.Contains(r.logs.String(), "max_queued_events") {
		t.Errorf("overflow not logged: %s", r.logs.String())
	}
}

// TestOverflowRealFlood stops taking events while it creates more files than
// the kernel queue holds, so inotify itself overflows.
func TestOverflowRealFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("creates tens of thousands of files")
	}
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skip("no inotify queue limit to read:", err)
	}
	limit, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if limit <= 0 || limit > 200000 {
		t.Skipf("max_queued_events=%d: too large to flood in a test", limit)
	}
	paused := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	opts := Options{eventHook: func(fsnotify.Event) {
		once.Do(func() {
			close(paused)
			<-release
		})
	}}
	r := newRig(t, opts)
	r.write("trigger", "x")
	<-paused
	// fsnotify reads up to a few thousand events ahead; go well past both.
	n := limit + 10000
	for i := range n {
		f, err := os.Create(r.path(fmt.Sprintf("f%06d", i)))
		if err != nil {
			close(release)
			t.Fatal(err)
		}
		f.Close()
	}
	close(release)
	r.waitRescan(0, "")
	if !strings.Contains(r.logs.String(), "overflow") {
		t.Errorf("overflow not logged")
	}
}

func TestOutOfWatchesFallsBackToPolling(t *testing.T) {
	noSpace := func(dir string) error {
		if strings.HasPrefix(dir, "big") {
			return fmt.Errorf("add watch: %w", syscall.ENOSPC)
		}
		return nil
	}
	r := newRig(t, Options{addWatchHook: noSpace, PollEvery: 100 * time.Millisecond})
	r.mkdirAll("big/sub")
	r.write("big/sub/f1", "x")
	r.waitFor(0, "big", "big/sub/f1")

	i := r.mark()
	r.write("big/sub/f2", "x")
	r.mkdirAll("big/sub/deeper")
	r.write("big/sub/deeper/f3", "x")
	r.waitFor(i, "big/sub/f2", "big/sub/deeper/f3")
	i = r.mark()
	os.Remove(r.path("big/sub/f1"))
	r.write("big/sub/f2", "changed")
	r.waitFor(i, "big/sub/f1", "big/sub/f2")

	// A second directory out of watches: no second warning.
	i = r.mark()
	r.mkdirAll("big2")
	r.write("big2/g", "x")
	r.waitFor(i, "big2/g")
	logs := r.logs.String()
	if n := strings.Count(logs, "level=WARN msg=\"watch: out of inotify watches (fs.inotify.max_user_watches="); n != 1 {
		t.Errorf("sysctl named in %d log lines, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "sysctl -w fs.inotify.max_user_watches=") {
		t.Errorf("warning does not say how to raise the limit:\n%s", logs)
	}
	if st := r.w.Stats(); st.Polled != 2 || r.w.isWatched("big") {
		t.Errorf("stats %+v, big watched %v; want 2 polled subtrees, big not watched", st, r.w.isWatched("big"))
	}
	// The rest of the tree is still watched.
	i = r.mark()
	r.write("normal", "x")
	r.waitFor(i, "normal")
}

func TestRootOutOfWatchesAtStart(t *testing.T) {
	r := newRig(t, Options{
		addWatchHook: func(string) error { return syscall.ENOSPC },
		PollEvery:    100 * time.Millisecond,
	})
	r.mkdirAll("d")
	r.write("d/f", "x")
	r.waitFor(0, "d", "d/f")
	if st := r.w.Stats(); st.Dirs != 0 || st.Polled != 1 {
		t.Errorf("stats %+v, want nothing watched and the root polled", st)
	}
}

func TestPeriodicRescan(t *testing.T) {
	r := newRig(t, Options{RescanEvery: 100 * time.Millisecond})
	r.waitRescan(0, "")
	r.waitRescan(r.mark(), "")
}

func TestRootRemovedAndBack(t *testing.T) {
	root := t.TempDir() + "/src"
	if err := os.MkdirAll(root+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	r := newRigAt(t, root, Options{PollEvery: 100 * time.Millisecond}, false)
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	r.waitRescan(0, "")
	i := r.mark()
	if err := os.MkdirAll(root+"/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	r.write("sub/back", "x")
	r.waitFor(i, "sub/back")
}

func TestTooManyPendingBecomesRescan(t *testing.T) {
	r := newRig(t, Options{maxPending: 10})
	for i := range 30 {
		r.write(fmt.Sprintf("f%02d", i), "x")
	}
	r.waitRescan(0, "")
	if !strings.Contains(r.logs.String(), "too many changed paths") {
		t.Errorf("collapse not logged")
	}
}

func TestTooManyReadyBecomesRescan(t *testing.T) {
	w, err := New(t.TempDir(), Options{maxReady: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		w.emit(Hint{Path: fmt.Sprint(i)})
	}
	w.emit(Hint{Path: "1", Rescan: true})
	if got := w.ready.list; len(got) != 3 || !got[1].Rescan {
		t.Fatalf("merged per path: got %+v", got)
	}
	for i := range 10 {
		w.emit(Hint{Path: fmt.Sprint("x", i)})
	}
	found := false
	for _, h := range w.ready.list {
		found = found || h == Hint{Path: "", Rescan: true}
	}
	if !found || len(w.ready.list) > 5 {
		t.Fatalf("past the bound: got %+v, want a root rescan and at most 5 hints", w.ready.list)
	}
}

func TestOtherWatchFailureFallsBackToPolling(t *testing.T) {
	fail := func(dir string) error {
		if dir == "odd" {
			return fmt.Errorf("add watch: %w", syscall.ENOMEM)
		}
		return nil
	}
	r := newRig(t, Options{addWatchHook: fail, PollEvery: 100 * time.Millisecond})
	r.mkdirAll("odd")
	r.write("odd/f", "x")
	r.waitFor(0, "odd", "odd/f")
	i := r.mark()
	r.write("odd/g", "x")
	r.waitFor(i, "odd/g")
	if logs := r.logs.String(); !strings.Contains(logs, "polling it instead") || strings.Contains(logs, "max_user_watches") {
		t.Errorf("want a polling warning that does not blame the watch limit:\n%s", logs)
	}
}
