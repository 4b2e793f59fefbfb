package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// TestStreamedCorruptRecordRelists damages one record of a trusted store:
// the merge meets it part way, and the run lists the target instead,
// rebuilds the store and still makes the target equal to the source.
func TestStreamedCorruptRecordRelists(t *testing.T) {
	r := newStateRig(t)
	r.streamed = true
	ss := &StateSync{}
	if _, _, err := r.run(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	damageEntries(t, r.statePath, func(b *bolt.Bucket) error {
		return b.Put([]byte("d3\x00sub\x00f2.txt"), []byte{0xff})
	})
	mkfile(t, r.src, "d4/late.txt", "late", time.Now())
	rep, lists, err := r.run(context.Background(), ss)
	if err != nil || !ss.Stats.Listed || lists == 0 || !strings.Contains(ss.Stats.Why, "corrupt") {
		t.Fatalf("err %v, listed %v (%q), %d List calls; want a listing because of the damaged record", err, ss.Stats.Listed, ss.Stats.Why, lists)
	}
	if rep.Uploaded != 1 {
		t.Errorf("uploaded %d, want only the new file", rep.Uploaded)
	}
	r.check()
	if _, lists, err := r.run(context.Background(), ss); err != nil || lists != 0 || ss.Stats.Listed {
		t.Errorf("after the rebuild: err %v, %d List calls, listed %v; want the store trusted again", err, lists, ss.Stats.Listed)
	}
}

// TestStreamedPlanMatchesWhole changes the source in every way the
// planner tells apart and checks that the plan made while scanning
// against the store is the one MakePlan makes from a whole scan and every
// record.
func TestStreamedPlanMatchesWhole(t *testing.T) {
	r := newStateRig(t)
	r.streamed = true
	if _, _, err := r.run(context.Background(), &StateSync{}); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	mkfile(t, r.src, "d0/sub/f1.txt", "changed size", mt)
	mkfile(t, r.src, "d0/sub/f2.txt", "content 0 2", mt.Add(time.Hour))
	mkfile(t, r.src, "new/deeper/n.txt", "n", mt)
	if err := os.Remove(filepath.Join(r.src, "d1/sub/f3.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(r.src, "d2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(r.src, "d3/sub/f4.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(r.src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d0", filepath.Join(r.src, "link")); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(r.statePath, state.Options{Target: r.dst})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	records, err := st.Entries()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := NewFilter(nil)
	opts := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true, Filter: f}
	src, _, err := Scan(context.Background(), r.src, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := MakePlan(src, records, opts)
	ss := &StateSync{Store: st}
	b := &countingLists{Backend: localTarget(t, r.dst)}
	got, listErr, err := ss.scanPlan(context.Background(), r.src, b, f, opts, nil)
	if listErr != nil || err != nil || b.lists.Load() != 0 {
		t.Fatalf("scanPlan: %v, %v, %d List calls", listErr, err, b.lists.Load())
	}
	if diff := samePlan(got.plan, want); diff != "" {
		t.Errorf("streamed plan differs from MakePlan's: %s", diff)
	}
	if len(want.Ops) < 6 {
		t.Errorf("only %d ops planned for six changes: %v", len(want.Ops), want.Ops)
	}
	if got.files != 41-8-1+1 {
		t.Errorf("counted %d source files", got.files)
	}
}

// TestStreamedWithoutState runs syncStreamed on a target without state:
// a first copy, a no-op, and a run with a change, a delete and an
// unreadable directory, which holds the delete back.
func TestStreamedWithoutState(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mt := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	mkfile(t, src, "a/one", "1", mt)
	mkfile(t, src, "a/two", "22", mt)
	mkfile(t, src, "b/three", "333", mt)
	run := func() Report {
		t.Helper()
		f, _ := NewFilter(nil)
		res, err := syncStreamed(context.Background(), &FanOutOptions{Source: src, MaxDelete: -1,
			Targets: []FanOutTarget{{Target: localTarget(t, dst)}}}, f, nil)
		if err != nil || len(res) != 1 {
			t.Fatalf("syncStreamed: %v, %d results", err, len(res))
		}
		return res[0].Report
	}
	if rep := run(); rep.Uploaded != 3 || rep.SourceFiles != 3 || rep.SourceBytes != 6 {
		t.Fatalf("first run: uploaded %d, source %d files %d bytes", rep.Uploaded, rep.SourceFiles, rep.SourceBytes)
	}
	if rep := run(); len(rep.Plan.Ops) != 0 {
		t.Fatalf("no-op run planned %v", rep.Plan.Ops)
	}
	mkfile(t, src, "a/one", "changed", mt)
	if err := os.Remove(filepath.Join(src, "a/two")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { readDirFault = nil })
	locked := filepath.Join(src, "b")
	readDirFault = func(path string) error {
		if path == locked {
			return os.ErrPermission
		}
		return nil
	}
	rep := run()
	if rep.Uploaded != 1 || rep.Deleted != 0 || rep.DeletesRefused == nil || len(rep.Problems) == 0 {
		t.Errorf("with an unreadable directory: uploaded %d, deleted %d, refused %v, problems %v; want the upload, no delete",
			rep.Uploaded, rep.Deleted, rep.DeletesRefused, rep.Problems)
	}
	readDirFault = nil
	if rep := run(); rep.Deleted != 1 {
		t.Errorf("once readable: deleted %d, want 1", rep.Deleted)
	}
	if d := diffTrees(tree(t, src, false), tree(t, dst, false)); d != "" {
		t.Errorf("target differs from the source:\n%s", d)
	}
}

// failingList fails List of one directory.
type failingList struct {
	backends.Backend
	dir string
}

func (f *failingList) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	if dir == f.dir {
		return nil, fmt.Errorf("list %s: %w", dir, backends.ErrPermission)
	}
	return f.Backend.List(ctx, dir)
}

func (f *failingList) Unwrap() backends.Backend { return f.Backend }

// TestStateSyncIncompleteRelist rescans a target one directory of which
// cannot be listed: the run deletes nothing, the rebuilt store is not
// trusted, and the next run, with a full listing, lists again and deletes.
func TestStateSyncIncompleteRelist(t *testing.T) {
	bothPaths(t, func(t *testing.T, r *stateRig) {
		ss := &StateSync{}
		if _, _, err := r.run(context.Background(), ss); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(r.src, "d0/sub/f0.txt")); err != nil {
			t.Fatal(err)
		}
		r.wrap = func(b backends.Backend) backends.Backend { return &failingList{Backend: b, dir: "d2/sub"} }
		ss.Rescan = true
		rep, _, _ := r.run(context.Background(), ss)
		if !ss.Stats.Listed || rep.Deleted != 0 {
			t.Fatalf("incomplete rescan: listed %v, deleted %d; want listed, nothing deleted", ss.Stats.Listed, rep.Deleted)
		}
		if _, err := os.Lstat(filepath.Join(r.dst, "d0/sub/f0.txt")); err != nil {
			t.Fatalf("incomplete rescan deleted a file: %v", err)
		}
		st, err := state.Open(r.statePath, state.Options{Target: r.dst})
		if err != nil {
			t.Fatal(err)
		}
		h, err := st.Header()
		st.Close()
		if err != nil || !h.ListedAt.IsZero() {
			t.Fatalf("store after an incomplete listing says listed at %v (%v): want never", h.ListedAt, err)
		}
		r.wrap = nil
		ss.Rescan = false
		rep, _, err = r.run(context.Background(), ss)
		if err != nil || !ss.Stats.Listed || ss.Stats.Why != "no listing recorded yet" || rep.Deleted != 1 {
			t.Fatalf("next run: err %v, listed %v (%q), deleted %d; want a listing and 1 delete", err, ss.Stats.Listed, ss.Stats.Why, rep.Deleted)
		}
		r.check()
	})
}

// TestStreamedCorruptKeyRelists adds to a trusted store a record whose key
// holds a raw '/' (bytes no path encodes to, which sort away from the
// path's place in the merge): the run does not trust it, lists the target
// instead and leaves it equal to the source.
func TestStreamedCorruptKeyRelists(t *testing.T) {
	r := newStateRig(t)
	r.streamed = true
	ss := &StateSync{}
	if _, _, err := r.run(context.Background(), ss); err != nil {
		t.Fatal(err)
	}
	damageEntries(t, r.statePath, func(b *bolt.Bucket) error {
		return b.Put([]byte("d3/sub/f2.txt"), b.Get([]byte("d3\x00sub\x00f2.txt")))
	})
	rep, lists, err := r.run(context.Background(), ss)
	if err != nil || !ss.Stats.Listed || lists == 0 || !strings.Contains(ss.Stats.Why, "corrupt") {
		t.Fatalf("err %v, listed %v (%q), %d List calls; want a listing because of the damaged key", err, ss.Stats.Listed, ss.Stats.Why, lists)
	}
	if rep.Deleted != 0 || rep.Uploaded != 0 {
		t.Errorf("deleted %d, uploaded %d; want nothing done", rep.Deleted, rep.Uploaded)
	}
	r.check()
}

// damageEntries changes the records of the state file at path behind the
// store's back, as a crash or a stray writer could.
func damageEntries(t *testing.T, path string, damage func(*bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return damage(tx.Bucket([]byte("entries"))) })
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}
