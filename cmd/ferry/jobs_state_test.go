package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/cmd/ferry/config"
)

// TestMain keeps every state file the tests make out of the real home:
// `ferry run` keeps state by default.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-cmd-state-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// opCounts counts what the configured targets are asked to do.
type opCounts struct {
	lists, uploads atomic.Int64
}

type countingTarget struct {
	backends.Backend
	c *opCounts
}

func (b countingTarget) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	b.c.lists.Add(1)
	return b.Backend.List(ctx, dir)
}

func (b countingTarget) Upload(ctx context.Context, p string, src backends.Source) (backends.UploadResult, error) {
	b.c.uploads.Add(1)
	return b.Backend.Upload(ctx, p, src)
}

func (b countingTarget) Unwrap() backends.Backend { return b.Backend }

// countTargets makes every configured target count its listings and
// uploads in the returned counts, reset by the caller between runs.
func countTargets(t *testing.T) *opCounts {
	t.Helper()
	c := &opCounts{}
	old := configTargetOpener
	t.Cleanup(func() { configTargetOpener = old })
	configTargetOpener = func(ctx context.Context, ct *config.Target, log *slog.Logger, onReconnect func()) (backends.Backend, error) {
		b, err := old(ctx, ct, log, onReconnect)
		if err != nil {
			return nil, err
		}
		return countingTarget{b, c}, nil
	}
	return c
}

func (c *opCounts) reset() (lists, uploads int64) {
	return c.lists.Swap(0), c.uploads.Swap(0)
}

func TestRunOnceWithState(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	stateDir := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir, fmt.Sprintf("state_dir: %q\njobs:\n  - name: site\n    source: %q\n"+
		"    targets: [{name: t, type: local, path: %q, fsync: false}]\n", stateDir, src, out))
	c := countTargets(t)
	runOnce := func(what string, args ...string) {
		t.Helper()
		code, stdout, stderr := runFerry(t, append([]string{"run", "--once", "-c", cfg}, args...)...)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s%s", what, code, stdout, stderr)
		}
	}

	runOnce("first run")
	if lists, uploads := c.reset(); lists == 0 || uploads != 3 {
		t.Fatalf("first run: %d listings, %d uploads; want a listing and 3 uploads", lists, uploads)
	}
	sameFiles(t, src, out)
	ents, err := os.ReadDir(stateDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("state dir holds %v (%v), want one state file", ents, err)
	}
	for p, want := range map[string]os.FileMode{stateDir: 0o700, filepath.Join(stateDir, ents[0].Name()): 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode().Perm(), err, want)
		}
	}

	runOnce("second run")
	if lists, uploads := c.reset(); lists != 0 || uploads != 0 {
		t.Errorf("second run: %d listings, %d uploads; want none (trusted state)", lists, uploads)
	}

	// Changed behind ferry's back: a trusted state does not see it...
	os.Remove(filepath.Join(out, "css", "a.css"))
	os.WriteFile(filepath.Join(out, "index.html"), []byte("defaced, and longer than it was"), 0o644)
	runOnce("run after drift")
	c.reset()
	if got := files(t, out); got["index.html"] == "<h1>hi</h1>" {
		t.Fatalf("a trusted state listed the target anyway: %v", got)
	}
	// ...a forced rescan lists the target and repairs it.
	runOnce("forced rescan", "--rescan-target")
	if lists, uploads := c.reset(); lists == 0 || uploads != 2 {
		t.Errorf("forced rescan: %d listings, %d uploads; want a listing and 2 uploads", lists, uploads)
	}
	sameFiles(t, src, out)
	runOnce("run after the rescan")
	if lists, uploads := c.reset(); lists != 0 || uploads != 0 {
		t.Errorf("run after the rescan: %d listings, %d uploads; want none", lists, uploads)
	}
}

func TestRunOnceStateSettings(t *testing.T) {
	tests := []struct {
		name string
		keys string // job keys added to the config
		// listsAgain: whether the second of two runs lists the target
		listsAgain bool
	}{
		{"state on by default", "", false},
		{"state: false lists every run", "    state: false\n", true},
		{"target_rescan_every: 0 never lists again", "    target_rescan_every: 0s\n", false},
		{"a listing older than target_rescan_every is redone", "    target_rescan_every: 1ms\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := jobSite(t, dir)
			out := filepath.Join(dir, "out")
			cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: site\n    source: %q\n%s"+
				"    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, tc.keys, out))
			c := countTargets(t)
			var lists [2]int64
			for run := range 2 {
				if code, stdout, stderr := runFerry(t, "run", "--once", "-c", cfg); code != exitOK {
					t.Fatalf("run %d: exit %d\n%s%s", run+1, code, stdout, stderr)
				}
				lists[run], _ = c.reset()
				time.Sleep(5 * time.Millisecond)
			}
			if lists[0] == 0 {
				t.Errorf("the first run did not list the target")
			}
			if again := lists[1] > 0; again != tc.listsAgain {
				t.Errorf("second run made %d listings; want listed: %v", lists[1], tc.listsAgain)
			}
			sameFiles(t, src, out)
		})
	}
}

func TestRunOnceStateInUseFailsTheTarget(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	stateDir := filepath.Join(dir, "state")
	cfg := writeConfig(t, dir, fmt.Sprintf("state_dir: %q\njobs:\n  - name: site\n    source: %q\n"+
		"    targets:\n      - {name: a, type: local, path: %q, fsync: false}\n      - {name: b, type: local, path: %q, fsync: false}\n",
		stateDir, src, filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	loaded, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j := loaded.Jobs[0]
	// Another ferry holds target a's state.
	_, held, err := openTargetState(stateSettings{dir: stateDir}, j, j.Targets[0], slog.New(slog.DiscardHandler))
	if err != nil || held == nil {
		t.Fatalf("open state: %v", err)
	}
	defer held.Close()
	code, stdout, stderr := runFerry(t, "run", "--once", "-c", cfg)
	if code != exitFailed || !strings.Contains(stdout, "in use by another ferry") {
		t.Errorf("exit %d, want %d with the state in use named\n%s%s", code, exitFailed, stdout, stderr)
	}
	sameFiles(t, src, filepath.Join(dir, "b"))
}

func TestDaemonWatchJobRecordsItsChanges(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: live\n    source: %q\n    watch: true\n"+
		"    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, out))
	c := countTargets(t)
	// during sees the daemon's log, to wait for what it did rather than
	// for a time that a loaded machine may not keep.
	daemon := func(during func(log *syncBuffer), flags ...string) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(ctx, append([]string{"run", "-c", cfg}, flags...), &stdout, &stderr) }()
		waitFor(t, "the first sync", 10*time.Second, func() bool { return len(files(t, out)) == len(files(t, src)) })
		during(&stderr)
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("daemon exit %d after cancel\n%s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("daemon did not stop")
		}
	}
	daemon(func(*syncBuffer) {
		os.WriteFile(filepath.Join(src, "new.txt"), []byte("watched"), 0o644)
		os.Remove(filepath.Join(src, "css", "a.css"))
		waitFor(t, "the change", 15*time.Second, func() bool {
			f := files(t, out)
			_, gone := f["css/a.css"]
			return f["new.txt"] == "watched" && !gone
		})
	})
	c.reset()
	// A restart trusts what the watch recorded: nothing listed or copied.
	// Its first full sync must have planned before the counts are read.
	daemon(func(log *syncBuffer) {
		waitFor(t, "the first sync planned from the state", 10*time.Second, func() bool {
			return strings.Contains(log.String(), "target state trusted")
		})
	}, "-v")
	if lists, uploads := c.reset(); lists != 0 || uploads != 0 {
		t.Errorf("restart: %d listings, %d uploads; want none", lists, uploads)
	}
	sameFiles(t, src, out)
	// --rescan-target lists the target at the start all the same.
	daemon(func(*syncBuffer) {
		waitFor(t, "a listing", 10*time.Second, func() bool { return c.lists.Load() > 0 })
	}, "--rescan-target")
	if _, uploads := c.reset(); uploads != 0 {
		t.Errorf("rescan: %d uploads, want none", uploads)
	}
}

func TestDaemonWatchJobRepairsDriftPeriodically(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: live\n    source: %q\n    watch: true\n    target_rescan_every: 200ms\n"+
		"    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, out))
	stderr := startDaemon(t, "-c", cfg)
	waitFor(t, "the first sync", 10*time.Second, func() bool { return len(files(t, out)) == 3 })
	// Behind ferry's back, with nothing changing in the source: only the
	// periodic listing of the target can find it.
	os.Remove(filepath.Join(out, "css", "a.css"))
	os.WriteFile(filepath.Join(out, "index.html"), []byte("defaced, and longer than it was"), 0o644)
	waitFor(t, "the drift repaired", 15*time.Second, func() bool { return fmt.Sprint(files(t, src)) == fmt.Sprint(files(t, out)) })
	if !strings.Contains(stderr.String(), "drifted") {
		t.Errorf("the repair was not reported:\n%s", stderr.String())
	}
}

func TestWatchCommandKeepsState(t *testing.T) {
	src := site(t)
	out := filepath.Join(t.TempDir(), "out")
	stateDir := filepath.Join(t.TempDir(), "state")
	watch := func(during func()) string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"-v", "watch", "--fsync=false", "--debounce=20ms", "--status-interval=50ms", "--state-dir", stateDir, src, out}, &stdout, &stderr)
		}()
		waitFor(t, "the first sync", 15*time.Second, func() bool { return strings.Contains(stderr.String(), "synced=true") })
		during()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("watch exit %d after cancel\n%s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop")
		}
		return stderr.String()
	}
	log := watch(func() {
		write(t, src, "later/new.txt", "watched")
		waitFor(t, "the change", 15*time.Second, func() bool { return files(t, out)["later/new.txt"] == "watched" })
	})
	if !strings.Contains(log, "listing the target") {
		t.Errorf("the first watch did not list the target:\n%s", log)
	}
	log = watch(func() {})
	if !strings.Contains(log, "target state trusted") || strings.Contains(log, "listing the target") {
		t.Errorf("the restart did not plan from the state:\n%s", log)
	}
	if !strings.Contains(log, "msg=target") || !strings.Contains(log, " uploaded=0 ") {
		t.Errorf("the restart copied files again:\n%s", log)
	}
	// ferry sync reads the same state: nothing to list, nothing to copy.
	code, stdout, stderr := runFerry(t, "-v", "sync", "--state-dir", stateDir, src, out)
	if code != exitOK || !strings.Contains(stderr, "target state trusted") || !strings.Contains(stdout, "copied 0 files") {
		t.Errorf("sync after watch: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestSyncAndWatchShareTheirFlags(t *testing.T) {
	shared := []string{"mode", "exclude", "transfers", "retries", "bwlimit", "fsync", "state", "state-dir",
		"rescan-target", "target-rescan-every", "identity", "known-hosts", "s3-endpoint"}
	g := &globalOptions{}
	for _, cmd := range []string{"sync", "watch"} {
		t.Run(cmd, func(t *testing.T) {
			c := newSyncCmd(g)
			if cmd == "watch" {
				c = newWatchCmd(g)
			}
			for _, name := range shared {
				if c.Flags().Lookup(name) == nil {
					t.Errorf("ferry %s lacks --%s", cmd, name)
				}
			}
		})
	}
	code, _, stderr := runFerry(t, "watch", "--target-rescan-every=-1h", t.TempDir(), t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "--target-rescan-every") {
		t.Errorf("a negative --target-rescan-every: exit %d\n%s", code, stderr)
	}
}
