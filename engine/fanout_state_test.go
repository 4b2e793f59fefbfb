package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// rootLists counts the listings of a target's root, the first step of any
// full listing (versions folders are listed on their own, not counted).
type rootLists struct {
	backends.Backend
	n atomic.Int64
}

func (c *rootLists) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	if dir == "" {
		c.n.Add(1)
	}
	return c.Backend.List(ctx, dir)
}

func (c *rootLists) Unwrap() backends.Backend { return c.Backend }

// fanOutStateRun runs SyncTargets once over dsts, each target with its own
// state file under stateDir, and returns how often each root was listed.
func fanOutStateRun(t *testing.T, opts FanOutOptions, stateDir string, dsts []string, rescan map[string]bool) ([]TargetResult, []int64) {
	t.Helper()
	var counters []*rootLists
	for i, dst := range dsts {
		st, err := state.Open(filepath.Join(stateDir, fmt.Sprintf("t%d.db", i)), state.Options{Target: dst, Scope: StateScope(opts.Excludes)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		c := &rootLists{Backend: localTarget(t, dst)}
		counters = append(counters, c)
		name := filepath.Base(dst)
		opts.Targets = append(opts.Targets, FanOutTarget{Name: name, Target: c, State: &StateSync{Store: st, Rescan: rescan[name]}})
	}
	res, err := SyncTargets(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	lists := make([]int64, len(counters))
	for i, c := range counters {
		lists[i] = c.n.Load()
		if res[i].Err != nil {
			t.Fatalf("target %s: %v", res[i].Name, res[i].Err)
		}
	}
	return res, lists
}

func TestSyncTargetsKeepsAStatePerTarget(t *testing.T) {
	src := t.TempDir()
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 10 {
		mkfile(t, src, fmt.Sprintf("d%d/f.txt", i%3), fmt.Sprint("content ", i), mt)
	}
	base := t.TempDir()
	a, b := filepath.Join(base, "a"), filepath.Join(base, "b")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755)
	stateDir := filepath.Join(base, "state")
	opts := FanOutOptions{Source: src, MaxDelete: -1}
	tests := []struct {
		name   string
		before func()
		rescan map[string]bool
		lists  []int64
	}{
		{"the first run lists both", func() {}, nil, []int64{1, 1}},
		{"a second run lists neither", func() {}, nil, []int64{0, 0}},
		{"drift on b is not seen while trusted", func() { os.Remove(filepath.Join(b, "d1", "f.txt")) }, nil, []int64{0, 0}},
		{"a rescan of b lists b alone and repairs it", func() {}, map[string]bool{"b": true}, []int64{0, 1}},
	}
	for _, tc := range tests {
		tc.before()
		_, lists := fanOutStateRun(t, opts, stateDir, []string{a, b}, tc.rescan)
		if fmt.Sprint(lists) != fmt.Sprint(tc.lists) {
			t.Errorf("%s: root listings %v, want %v", tc.name, lists, tc.lists)
		}
	}
	for _, dst := range []string{a, b} {
		if d := diffTrees(tree(t, src, false), tree(t, dst, false)); d != "" {
			t.Errorf("%s differs from the source:\n%s", dst, d)
		}
	}
}

func TestSyncTargetsBackupVersionsWithState(t *testing.T) {
	src := t.TempDir()
	old := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mkfile(t, src, "keep.txt", "keep", old)
	mkfile(t, src, "changed.txt", "first", old)
	mkfile(t, src, "gone/g.txt", "gone", old)
	base := t.TempDir()
	dst, stateDir := filepath.Join(base, "dst"), filepath.Join(base, "state")
	os.Mkdir(dst, 0o755)
	opts := FanOutOptions{Source: src, Mode: Backup, MaxDelete: -1, Versions: &Versions{Dir: ".v"}}

	if _, lists := fanOutStateRun(t, opts, stateDir, []string{dst}, nil); lists[0] != 1 {
		t.Fatalf("first run: %d root listings, want 1", lists[0])
	}
	mkfile(t, src, "changed.txt", "second, longer", old.Add(time.Hour))
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	res, lists := fanOutStateRun(t, opts, stateDir, []string{dst}, nil)
	if lists[0] != 0 || res[0].Versioned == 0 {
		t.Fatalf("second run: %d root listings (want 0), %d versioned (want some)", lists[0], res[0].Versioned)
	}
	got := tree(t, dst, false)
	if !strings.Contains(got["changed.txt"], " 14 ") {
		t.Errorf("changed.txt not replaced: %v", got)
	}
	var kept []string
	for p := range got {
		if strings.HasPrefix(p, ".v/") {
			kept = append(kept, p)
		}
	}
	if len(kept) < 2 {
		t.Errorf("old versions kept: %v, want changed.txt and gone/g.txt", kept)
	}
	if _, ok := got["gone/g.txt"]; ok {
		t.Errorf("gone/g.txt still at its place on the target")
	}

	// The state holds what a listing outside the versions folder finds.
	st, err := state.Open(filepath.Join(stateDir, "t0.db"), state.Options{Target: dst, Scope: StateScope(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f, _ := NewFilter([]string{"/.v"})
	listed, _, _, err := ListTarget(context.Background(), localTarget(t, dst), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var a, b []string
	for _, r := range recs {
		a = append(a, r.Path)
	}
	for _, l := range listed {
		b = append(b, l.Path)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("state holds %v\ntarget holds %v", a, b)
	}
	st.Close()

	if _, lists := fanOutStateRun(t, opts, stateDir, []string{dst}, nil); lists[0] != 0 {
		t.Errorf("third run: %d root listings, want 0", lists[0])
	}
}

// cancelOnRename cancels the run at its first rename (the first old
// version moved away), after letting that rename through.
type cancelOnRename struct {
	backends.Backend
	cancel context.CancelFunc
}

func (c *cancelOnRename) Rename(ctx context.Context, from, to string) error {
	c.cancel()
	return c.Backend.Rename(ctx, from, to)
}

func (c *cancelOnRename) Unwrap() backends.Backend { return c.Backend }

// TestSyncTargetsBackupCancelledWhileArchiving: a backup run cut while it
// moves the source's deleted files into the versions folder must not leave
// the state saying they are gone from their places: the keeper skips the
// rest without telling which. The next run lists and archives them.
func TestSyncTargetsBackupCancelledWhileArchiving(t *testing.T) {
	src := t.TempDir()
	old := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mkfile(t, src, "keep.txt", "keep", old)
	for i := range 20 {
		mkfile(t, src, fmt.Sprintf("gone/g%02d.txt", i), "gone", old)
	}
	base := t.TempDir()
	dst, stateDir := filepath.Join(base, "dst"), filepath.Join(base, "state")
	os.Mkdir(dst, 0o755)
	opts := FanOutOptions{Source: src, Mode: Backup, MaxDelete: -1, Versions: &Versions{Dir: ".v"}}
	fanOutStateRun(t, opts, stateDir, []string{dst}, nil)
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}

	st, err := state.Open(filepath.Join(stateDir, "t0.db"), state.Options{Target: dst, Scope: StateScope(opts.Excludes)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cut := opts
	cut.Targets = []FanOutTarget{{Name: "dst", Target: &cancelOnRename{localTarget(t, dst), cancel}, State: &StateSync{Store: st}}}
	SyncTargets(ctx, cut) // cancelled: its error says only that
	st.Close()
	var left int
	for p := range tree(t, dst, false) {
		if strings.HasPrefix(p, "gone/") {
			left++
		}
	}
	if left == 0 {
		t.Fatal("the cut run archived everything; the test shows nothing")
	}

	res, lists := fanOutStateRun(t, opts, stateDir, []string{dst}, nil)
	if lists[0] == 0 {
		t.Errorf("the run after the cut trusted the state (%d left to archive), want a listing", left)
	}
	for p := range tree(t, dst, false) {
		if strings.HasPrefix(p, "gone/") {
			t.Errorf("%s still at its place after the next run (versioned %d)", p, res[0].Versioned)
		}
	}
}
