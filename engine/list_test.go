package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrysync/ferry/backends"
)

// listFake is an in-memory target that only lists. onList, when set, runs
// before each List and can fail it or slow it down.
type listFake struct {
	entries map[string]backends.FileInfo // by path; parents are directories
	onList  func(ctx context.Context, dir string) error

	mu       sync.Mutex
	listed   []string
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func newListFake(es ...backends.FileInfo) *listFake {
	f := &listFake{entries: map[string]backends.FileInfo{}}
	for _, e := range es {
		f.entries[e.Path] = e
	}
	return f
}

func (f *listFake) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	f.mu.Lock()
	f.listed = append(f.listed, dir)
	f.mu.Unlock()
	if f.onList != nil {
		if err := f.onList(ctx, dir); err != nil {
			return nil, err
		}
	}
	if dir != "" {
		if e, ok := f.entries[dir]; !ok || !e.IsDir() {
			return nil, fmt.Errorf("list %s: %w", dir, backends.ErrNotExist)
		}
	}
	var out []backends.FileInfo
	for p, e := range f.entries {
		if parent, _ := backends.Split(p); parent == dir {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *listFake) wasListed(dir string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.listed, dir)
}

var errFakeUnsupported = fmt.Errorf("list-only fake: %w", backends.ErrUnsupported)

func (f *listFake) Stat(context.Context, string) (backends.FileInfo, error) {
	return backends.FileInfo{}, errFakeUnsupported
}
func (f *listFake) Mkdir(context.Context, string) error                 { return errFakeUnsupported }
func (f *listFake) Remove(context.Context, string) error                { return errFakeUnsupported }
func (f *listFake) Rename(context.Context, string, string) error        { return errFakeUnsupported }
func (f *listFake) SetModTime(context.Context, string, time.Time) error { return errFakeUnsupported }
func (f *listFake) Open(context.Context, string, int64) (io.ReadCloser, error) {
	return nil, errFakeUnsupported
}
func (f *listFake) Upload(context.Context, string, backends.Source) (backends.UploadResult, error) {
	return backends.UploadResult{}, errFakeUnsupported
}
func (f *listFake) Close() error { return nil }

var _ backends.Backend = (*listFake)(nil)

func TestListTargetTree(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	partial := "d/" + backends.PartialPrefix + "00-x"
	fake := newListFake(
		dir("d", 1), file("d/x", 1, 1), file(partial, 1, 1),
		dir("d/e", 1), file("d/e/y", 2, 2),
		file("a-b", 1, 1), dir("a", 1), file("a/z", 1, 1),
		file("keep.log", 1, 1),
		dir("cache", 1), file("cache/big", 9, 9),
		link("ln", "d"),
	)
	f, err := NewFilter([]string{"cache/", "*.log"})
	if err != nil {
		t.Fatal(err)
	}
	es, partials, problems, err := ListTarget(context.Background(), fake, f, nil)
	if err != nil || len(problems) > 0 {
		t.Fatalf("ListTarget: %v, problems %v", err, problems)
	}
	want := []string{"a", "a/z", "a-b", "cache", "d", "d/e", "d/e/y", "d/x", "keep.log", "ln"}
	var got []string
	for _, e := range es {
		got = append(got, e.Path)
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries (ComparePaths order; excluded entries kept, their contents not listed)\n got %q\nwant %q", got, want)
	}
	if pl := (&planner{}); &pl.prepare(es, "target")[0] != &es[0] {
		t.Error("MakePlan would copy and re-sort ListTarget's output: it is not in ComparePaths order")
	}
	if len(partials) != 1 || partials[0].Path != partial {
		t.Errorf("partials %v, want [%s]", paths(partials), partial)
	}
	if fake.wasListed("cache") {
		t.Error("the excluded directory cache was listed")
	}
	if fake.wasListed("ln") {
		t.Error("the symlink ln was listed as a directory: it must never be followed")
	}
}

func TestListTargetProblems(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fake := newListFake(dir("ok", 1), file("ok/f", 1, 1), dir("bad", 1), file("bad/g", 1, 1), dir("odd", 1))
	errBroken := errors.New("broken directory")
	fake.onList = func(_ context.Context, dir string) error {
		if dir == "bad" {
			return errBroken
		}
		return nil
	}
	// A listing that returns a path not inside the directory listed, or an
	// unsafe name, is refused entry by entry.
	fake2 := &strayLister{listFake: fake}
	es, _, problems, err := ListTarget(context.Background(), fake2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := problemFor(problems, "bad"); p == nil || !errors.Is(p.Err, errBroken) {
		t.Errorf("problem for bad = %v, want one wrapping the List error", p)
	}
	if p := problemFor(problems, "odd/../x"); p == nil || !errors.Is(p.Err, backends.ErrUnsafePath) {
		t.Errorf("problem for a stray entry = %v, want ErrUnsafePath (problems %v)", p, problems)
	}
	m := byPath(es)
	if _, ok := m["ok/f"]; !ok {
		t.Errorf("listing did not go on past the failed directory: %v", paths(es))
	}
	if _, ok := m["bad"]; !ok {
		t.Errorf("the failed directory itself is missing: %v", paths(es))
	}
}

// strayLister adds an entry outside the listed directory to one listing.
type strayLister struct{ *listFake }

func (s *strayLister) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	es, err := s.listFake.List(ctx, dir)
	if dir == "odd" {
		es = append(es, file("odd/../x", 1, 1))
	}
	return es, err
}

func TestListTargetRootErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fake := newListFake()
	fake.onList = func(context.Context, string) error { return fmt.Errorf("no root: %w", backends.ErrNotExist) }
	if _, _, _, err := ListTarget(context.Background(), fake, nil, nil); !errors.Is(err, backends.ErrNotExist) {
		t.Errorf("missing root: err %v, want ErrNotExist", err)
	}
}

func TestListTargetConcurrency(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var es []backends.FileInfo
	for i := range 40 {
		d := fmt.Sprintf("d%02d", i)
		es = append(es, dir(d, 1), dir(d+"/sub", 1), file(d+"/sub/f", 1, 1))
	}
	fake := newListFake(es...)
	fake.onList = func(context.Context, string) error { time.Sleep(3 * time.Millisecond); return nil }
	got, _, problems, err := ListTarget(context.Background(), fake, nil, nil)
	if err != nil || len(problems) > 0 {
		t.Fatal(err, problems)
	}
	if len(got) != len(es) {
		t.Errorf("%d entries, want %d", len(got), len(es))
	}
	if m := fake.maxSeen.Load(); m > listConcurrency || m < 2 {
		t.Errorf("%d List calls in flight at most, want 2..%d", m, listConcurrency)
	}
}

func TestListTargetCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var es []backends.FileInfo
	for i := range 100 {
		es = append(es, dir(fmt.Sprintf("d%03d", i), 1))
	}
	fake := newListFake(es...)
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	// Every listing below the root blocks until cancelled; the fifth cancels.
	fake.onList = func(lctx context.Context, dir string) error {
		if dir == "" {
			return nil
		}
		if calls.Add(1) == 5 {
			cancel()
		}
		<-lctx.Done()
		return lctx.Err()
	}
	_, _, _, err := ListTarget(ctx, fake, nil, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if n := calls.Load(); n > 5+listConcurrency {
		t.Errorf("%d List calls after cancel: the walk did not stop", n)
	}
}

func TestStalePartials(t *testing.T) {
	mt := at(7)
	live := backends.FileInfo{Path: backends.PartialName("d/f", 3, mt)}
	oldSize := backends.FileInfo{Path: backends.PartialName("d/f", 2, mt)}
	orphan := backends.FileInfo{Path: backends.PartialName("gone", 1, mt)}
	plan := Plan{Ops: []Op{
		{Kind: OpUpload, Path: "d/f", Src: backends.FileInfo{Path: "d/f", Size: 3, ModTime: mt}},
		{Kind: OpDelete, Path: "gone"},
	}}
	// Copies a resume made: named by the key, a dot and a part of their own.
	copyOf := func(p backends.FileInfo) backends.FileInfo {
		key, ok := backends.PartialKey(p.Path)
		if !ok {
			t.Fatalf("no key in %s", p.Path)
		}
		return backends.FileInfo{Path: key + ".0a1b2c3d-f"}
	}
	liveCopy, oldCopy := copyOf(live), copyOf(oldSize)
	stale := StalePartials([]backends.FileInfo{live, oldSize, orphan, liveCopy, oldCopy}, plan)
	if len(stale) != 3 || stale[0] != oldSize || stale[1] != orphan || stale[2] != oldCopy {
		t.Errorf("StalePartials = %v, want the one for an older size, the one with no upload and the copy of the older one", paths(stale))
	}
	if StalePartials(nil, plan) != nil {
		t.Error("StalePartials(nil) is not nil")
	}
}
