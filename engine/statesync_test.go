package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// countingLists counts the List calls made on a target.
type countingLists struct {
	backends.Backend
	lists atomic.Int64
}

func (c *countingLists) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	c.lists.Add(1)
	return c.Backend.List(ctx, dir)
}

func (c *countingLists) Unwrap() backends.Backend { return c.Backend }

type stateRig struct {
	t         *testing.T
	src, dst  string
	statePath string
	// streamed runs go through syncStreamed (the scan merged with the
	// state as it goes) instead of a whole scan and MakePlan.
	streamed bool
	// wrap, when set, wraps the target of each run.
	wrap func(backends.Backend) backends.Backend
}

// bothPaths runs a state test over both ways of planning a run.
func bothPaths(t *testing.T, test func(t *testing.T, r *stateRig)) {
	for _, streamed := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "streamed"}[streamed], func(t *testing.T) {
			r := newStateRig(t)
			r.streamed = streamed
			test(t, r)
		})
	}
}

func newStateRig(t *testing.T) *stateRig {
	r := &stateRig{t: t, src: t.TempDir(), dst: t.TempDir()}
	r.statePath = filepath.Join(t.TempDir(), "state", "job.db")
	mt := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	for d := range 5 {
		for f := range 8 {
			mkfile(t, r.src, fmt.Sprintf("d%d/sub/f%d.txt", d, f), fmt.Sprintf("content %d %d", d, f), mt)
		}
	}
	mkfile(t, r.src, "top.txt", "top", mt)
	if err := os.Symlink("top.txt", filepath.Join(r.src, "link")); err != nil {
		t.Fatal(err)
	}
	return r
}

// run syncs with the state and reports, plus how many List calls were made.
func (r *stateRig) run(ctx context.Context, ss *StateSync) (Report, int64, error) {
	r.t.Helper()
	st, err := state.Open(r.statePath, state.Options{Target: r.dst})
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	ss.Store = st
	var tb backends.Backend = localTarget(r.t, r.dst)
	if r.wrap != nil {
		tb = r.wrap(tb)
	}
	b := &countingLists{Backend: tb}
	if !r.streamed {
		rep, err := Sync(ctx, SyncOptions{Source: r.src, Target: b, MaxDelete: -1, State: ss})
		return rep, b.lists.Load(), err
	}
	f, err := NewFilter(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	res, err := syncStreamed(ctx, &FanOutOptions{Source: r.src, MaxDelete: -1, Targets: []FanOutTarget{{Target: b, State: ss}}}, f, nil)
	if len(res) == 0 {
		return Report{}, b.lists.Load(), err
	}
	if res[0].Err != nil && res[0].Err != res[0].Report.Err {
		return Report{}, b.lists.Load(), res[0].Err
	}
	return res[0].Report, b.lists.Load(), res[0].Err
}

// check asserts the target equals the source and the store the target.
func (r *stateRig) check() {
	r.t.Helper()
	if d := diffTrees(tree(r.t, r.src, false), tree(r.t, r.dst, false)); d != "" {
		r.t.Fatalf("target differs from the source:\n%s", d)
	}
	st, err := state.Open(r.statePath, state.Options{Target: r.dst})
	if err != nil {
		r.t.Fatal(err)
	}
	defer st.Close()
	if err := storeMatchesTarget(st, localTarget(r.t, r.dst)); err != nil {
		r.t.Fatal(err)
	}
}

// storeMatchesTarget compares every record with a fresh listing: same
// paths, types, sizes, link targets, and file mtimes.
func storeMatchesTarget(st *state.Store, b backends.Backend) error {
	listed, partials, problems, err := ListTarget(context.Background(), b, nil, nil)
	if err != nil || len(problems) > 0 {
		return fmt.Errorf("list: %v %v", err, problems)
	}
	if len(partials) > 0 {
		return fmt.Errorf("partials left: %v", partials)
	}
	recs, err := st.Entries()
	if err != nil {
		return err
	}
	if len(recs) != len(listed) {
		return fmt.Errorf("store holds %d entries, target %d", len(recs), len(listed))
	}
	for i := range recs {
		a, b := recs[i], listed[i]
		if a.Path != b.Path || a.Mode.Type() != b.Mode.Type() || a.IsRegular() && (a.Size != b.Size || !a.ModTime.Equal(b.ModTime)) || a.LinkTarget != b.LinkTarget {
			return fmt.Errorf("store says %+v, target has %+v", a, b)
		}
	}
	return nil
}

func TestStateSyncRestartWithoutListing(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		ss := &StateSync{}
		rep, lists, err := r.run(context.Background(), ss)
		if err != nil || !ss.Stats.Listed || rep.Uploaded != 41 {
			t.Fatalf("first run: err %v, listed %v, uploaded %d (lists %d)", err, ss.Stats.Listed, rep.Uploaded, lists)
		}
		r.check()
		rep, lists, err = r.run(context.Background(), ss)
		if err != nil || ss.Stats.Listed || lists != 0 || len(rep.Plan.Ops) != 0 {
			t.Fatalf("no-op restart: err %v, listed %v (%s), %d List calls, ops %v", err, ss.Stats.Listed, ss.Stats.Why, lists, rep.Plan.Ops)
		}
		// A change in the source is planned against the store alone.
		mkfile(t, r.src, "d1/new.txt", "new", time.Now())
		os.Remove(filepath.Join(r.src, "d2/sub/f3.txt"))
		rep, lists, err = r.run(context.Background(), ss)
		if err != nil || lists != 0 || rep.Uploaded != 1 || rep.Deleted != 1 {
			t.Fatalf("change: err %v, %d lists, uploaded %d, deleted %d", err, lists, rep.Uploaded, rep.Deleted)
		}
		r.check()
	})
}

func TestStateSyncDrift(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		ss := &StateSync{}
		if _, _, err := r.run(context.Background(), ss); err != nil {
			t.Fatal(err)
		}
		// Behind ferry's back: a file deleted, one changed, one added, a
		// directory removed.
		os.Remove(filepath.Join(r.dst, "d0/sub/f0.txt"))
		os.WriteFile(filepath.Join(r.dst, "d1/sub/f1.txt"), []byte("tampered with"), 0o644)
		os.WriteFile(filepath.Join(r.dst, "d1/intruder"), []byte("x"), 0o644)
		os.RemoveAll(filepath.Join(r.dst, "d3"))

		// Trusted state does not see it...
		if _, lists, _ := r.run(context.Background(), ss); lists != 0 || ss.Stats.Listed {
			t.Fatalf("trusted run listed the target (%d lists)", lists)
		}
		// ...the periodic check does, and repairs each one.
		clock := time.Now().Add(25 * time.Hour)
		ss.Now = func() time.Time { return clock }
		rep, _, err := r.run(context.Background(), ss)
		if err != nil || !ss.Stats.Listed {
			t.Fatalf("periodic rescan: err %v, listed %v", err, ss.Stats.Listed)
		}
		// f0 gone, f1 changed, intruder added, d3 with sub and 8 files gone.
		if want := 1 + 1 + 1 + 10; ss.Stats.Drifted != want {
			t.Errorf("drifted %d, want %d", ss.Stats.Drifted, want)
		}
		if rep.Uploaded != 10 || rep.Deleted != 1 {
			t.Errorf("repair uploaded %d, deleted %d; want 10 and 1", rep.Uploaded, rep.Deleted)
		}
		r.check()
		// A forced rescan of an untouched target finds nothing.
		ss.Rescan = true
		if _, _, err := r.run(context.Background(), ss); err != nil || !ss.Stats.Listed || ss.Stats.Drifted != 0 {
			t.Fatalf("forced rescan: err %v, listed %v, drifted %d", err, ss.Stats.Listed, ss.Stats.Drifted)
		}
	})
}

func TestStateSyncMovesDirectory(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		ss := &StateSync{}
		if _, _, err := r.run(context.Background(), ss); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(r.src, "d2"), filepath.Join(r.src, "moved")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(r.src, "x/y"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(r.src, "top.txt"), filepath.Join(r.src, "x/y/top.txt")); err != nil {
			t.Fatal(err)
		}
		rep, _, err := r.run(context.Background(), ss)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Uploaded != 0 || ss.Stats.Moves != 2 || ss.Stats.MovedFiles != 9 {
			t.Errorf("uploaded %d, moves %d (%d files); want 0 uploads, 2 moves of 9 files", rep.Uploaded, ss.Stats.Moves, ss.Stats.MovedFiles)
		}
		r.check()
	})
}

// failAfter fails every Upload once n have been published, as a run that
// dies half way would leave things.
type failAfter struct {
	backends.Backend
	left atomic.Int64
}

func (f *failAfter) Upload(ctx context.Context, p string, src backends.Source) (backends.UploadResult, error) {
	if f.left.Add(-1) < 0 {
		return backends.UploadResult{}, backends.Permanent(fmt.Errorf("upload %s: injected", p))
	}
	return f.Backend.Upload(ctx, p, src)
}

func (f *failAfter) Unwrap() backends.Backend { return f.Backend }

func TestStateSyncAfterCutRun(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		st, err := state.Open(r.statePath, state.Options{Target: r.dst})
		if err != nil {
			t.Fatal(err)
		}
		fa := &failAfter{Backend: localTarget(t, r.dst)}
		fa.left.Store(15)
		rep, _ := Sync(context.Background(), SyncOptions{Source: r.src, Target: fa, MaxDelete: -1, State: &StateSync{Store: st}})
		st.Close()
		if rep.Uploaded != 15 || len(rep.Problems) == 0 {
			t.Fatalf("cut run uploaded %d with %d problems", rep.Uploaded, len(rep.Problems))
		}
		ss := &StateSync{}
		rep, _, err = r.run(context.Background(), ss)
		if err != nil || ss.Stats.Listed || ss.Stats.Verified == 0 {
			t.Fatalf("restart: err %v, listed %v (%s), verified %d", err, ss.Stats.Listed, ss.Stats.Why, ss.Stats.Verified)
		}
		if rep.Uploaded != 41-15 {
			t.Errorf("restart uploaded %d, want %d", rep.Uploaded, 41-15)
		}
		r.check()
	})
}

// TestStateSyncVerifiesMovedDirectory stands for a run killed after a
// directory move reached the target but not the state: both paths are in
// flight, and the check at the next start must drop the old subtree's
// records and learn the new one's from the target.
func TestStateSyncVerifiesMovedDirectory(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		if _, _, err := r.run(context.Background(), &StateSync{}); err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(r.statePath, state.Options{Target: r.dst})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Begin([]string{"d4", "e4"}); err != nil {
			t.Fatal(err)
		}
		st.Close()
		for _, root := range []string{r.src, r.dst} {
			if err := os.Rename(filepath.Join(root, "d4"), filepath.Join(root, "e4")); err != nil {
				t.Fatal(err)
			}
		}
		ss := &StateSync{}
		rep, _, err := r.run(context.Background(), ss)
		if err != nil || ss.Stats.Listed || ss.Stats.Verified != 2 {
			t.Fatalf("err %v, listed %v (%s), verified %d", err, ss.Stats.Listed, ss.Stats.Why, ss.Stats.Verified)
		}
		if len(rep.Plan.Ops) != 0 {
			t.Errorf("after the check the plan should be empty, got %v", rep.Plan.Ops)
		}
		r.check()
	})
}
