package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/engine/state"
)

// openJobState opens the state file of a job's target for a test.
func openJobState(t *testing.T, path, target string) *state.Store {
	t.Helper()
	st, err := state.Open(path, state.Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startJob runs a job until the returned stop is called.
func startJob(t *testing.T, opts JobOptions) (*Job, func()) {
	t.Helper()
	opts.Debounce = 30 * time.Millisecond
	opts.Retry = Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	j, err := NewJob(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	jobWaitFor(t, jobConverge, "first full sync", func() error {
		for _, s := range j.Status() {
			if !s.Synced {
				return fmt.Errorf("%s not synced yet: %+v", s.Name, s)
			}
		}
		return nil
	})
	return j, func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}
}

func TestJobStateRecordsChangesForARestart(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	for i := range 20 {
		jobWriteFile(t, filepath.Join(src, fmt.Sprintf("d%d/f%d.txt", i%4, i)), jobContent(fmt.Sprint(i), 10))
	}
	dst, raw := jobLocalTarget(t)
	statePath := filepath.Join(t.TempDir(), "state", "w.db")

	st := openJobState(t, statePath, dst)
	b := &countingLists{Backend: raw}
	j, stop := startJob(t, JobOptions{Source: src, RescanEvery: -1,
		Targets: []JobTarget{{Name: "t", Backend: b, State: &StateSync{Store: st}}}})
	if b.lists.Load() == 0 {
		t.Fatal("the first run with an empty state did not list the target")
	}
	// Changes of every kind, each recorded as it lands.
	jobWriteFile(t, filepath.Join(src, "new/deep/n.txt"), jobContent("n", 5))
	jobWriteFile(t, filepath.Join(src, "d0/f0.txt"), jobContent("changed", 30))
	if err := os.Remove(filepath.Join(src, "d1/f1.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(src, "d2"), filepath.Join(src, "d2moved")); err != nil {
		t.Fatal(err)
	}
	jobWaitFor(t, jobConverge, "changes on the target", func() error { return jobSameTree(src, dst, nil) })
	jobWaitFor(t, jobConverge, "records committed", func() error { return storeMatchesTarget(st, raw) })
	uploaded := j.Status()[0].Uploaded
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart plans from the state: no listing, nothing copied again.
	st = openJobState(t, statePath, dst)
	defer st.Close()
	b = &countingLists{Backend: raw}
	j, stop = startJob(t, JobOptions{Source: src, RescanEvery: -1,
		Targets: []JobTarget{{Name: "t", Backend: b, State: &StateSync{Store: st}}}})
	defer stop()
	if n := b.lists.Load(); n != 0 {
		t.Errorf("restart listed the target %d times, want 0 (trusted state)", n)
	}
	if s := j.Status()[0]; s.Uploaded != 0 || s.Deleted != 0 {
		t.Errorf("restart copied %d and deleted %d, want nothing (the first run copied %d)", s.Uploaded, s.Deleted, uploaded)
	}
	if err := jobSameTree(src, dst, nil); err != nil {
		t.Fatal(err)
	}
}

func TestJobStateRelistRepairsDrift(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	for i := range 6 {
		jobWriteFile(t, filepath.Join(src, fmt.Sprintf("f%d.txt", i)), jobContent(fmt.Sprint(i), 10))
	}
	dst, raw := jobLocalTarget(t)
	st := openJobState(t, filepath.Join(t.TempDir(), "w.db"), dst)
	defer st.Close()
	// No source rescan: only the state's own period can find the drift.
	_, stop := startJob(t, JobOptions{Source: src, RescanEvery: -1,
		Targets: []JobTarget{{Name: "t", Backend: raw, State: &StateSync{Store: st, RescanEvery: 300 * time.Millisecond}}}})
	defer stop()

	if err := os.Remove(filepath.Join(dst, "f1.txt")); err != nil {
		t.Fatal(err)
	}
	jobWriteFile(t, filepath.Join(dst, "f2.txt"), []byte("changed behind ferry's back"))
	jobWriteFile(t, filepath.Join(dst, "extra.txt"), []byte("not in the source"))
	jobWaitFor(t, jobConverge, "drift repaired", func() error { return jobSameTree(src, dst, nil) })
	jobWaitFor(t, jobConverge, "records committed", func() error { return storeMatchesTarget(st, raw) })
}

func TestJobStateOffNeverLeavesTheTargetUnlisted(t *testing.T) {
	// Without a state every start lists: the behaviour the state saves.
	src := t.TempDir()
	jobWriteFile(t, filepath.Join(src, "a.txt"), jobContent("a", 3))
	_, raw := jobLocalTarget(t)
	for run := range 2 {
		b := &countingLists{Backend: raw}
		_, stop := startJob(t, JobOptions{Source: src, RescanEvery: -1, Targets: []JobTarget{{Name: "t", Backend: b}}})
		stop()
		if b.lists.Load() == 0 {
			t.Errorf("run %d without state did not list the target", run+1)
		}
	}
}
