package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrysync/ferry/backends"
)

// drain reads a whole listWalk.
func drain(t *testing.T, b backends.Backend, f *Filter) (entries, partials []backends.FileInfo, problems []Problem, err error) {
	t.Helper()
	l := newListWalk(context.Background(), b, f, nil)
	var buf []byte
	for {
		ok, nerr := l.next()
		if nerr != nil {
			err = nerr
			break
		}
		if !ok {
			break
		}
		info, _ := l.info()
		if buf = l.appendPath(buf[:0]); string(buf) != info.Path {
			t.Errorf("appendPath %q, info.Path %q", buf, info.Path)
		}
		entries = append(entries, info)
	}
	partials = l.Close()
	if err != nil {
		return nil, nil, nil, err
	}
	if l.incomplete() != (len(l.problems) > 0) {
		t.Errorf("incomplete %v with problems %v", l.incomplete(), l.problems)
	}
	return entries, partials, l.problems, nil
}

// TestListWalkIsListTarget lists targets of several shapes both ways: the
// streamed listing hands out what ListTarget returns, in the same order,
// with the same partial files and problems.
func TestListWalkIsListTarget(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var wide []backends.FileInfo
	for d := range 30 {
		wide = append(wide, dir(fmt.Sprintf("w%02d", d), 1))
		for f := range 20 {
			wide = append(wide, file(fmt.Sprintf("w%02d/f%02d", d, f), int64(f), 1))
		}
		wide = append(wide, dir(fmt.Sprintf("w%02d/sub", d), 1), file(fmt.Sprintf("w%02d/sub/x", d), 1, 1))
	}
	errBroken := errors.New("broken directory")
	broken := newListFake(dir("ok", 1), file("ok/f", 1, 1), dir("bad", 1), file("bad/g", 1, 1), dir("odd", 1), file("odd/h", 1, 1))
	broken.onList = func(_ context.Context, dir string) error {
		if dir == "bad" {
			return errBroken
		}
		return nil
	}
	excl, err := NewFilter([]string{"cache/", "*.log"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    backends.Backend
		f    *Filter
	}{
		{"empty", newListFake(), nil},
		{"wide and deep", newListFake(wide...), nil},
		{"partials, excluded directory, links", newListFake(
			dir("d", 1), file("d/x", 1, 1), file("d/"+backends.PartialPrefix+"00-x", 1, 1),
			dir("d/e", 1), file("d/e/y", 2, 2), file("a-b", 1, 1), dir("a", 1), file("a/z", 1, 1),
			file("keep.log", 1, 1), dir("cache", 1), file("cache/big", 9, 9), link("ln", "d"),
			file(backends.PartialPrefix+"01-top", 1, 1),
		), excl},
		{"a failing directory and a stray entry", &strayLister{listFake: broken}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantE, wantP, wantPr, err := ListTarget(context.Background(), tc.b, tc.f, nil)
			if err != nil {
				t.Fatal(err)
			}
			gotE, gotP, gotPr, err := drain(t, tc.b, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(gotE) != fmt.Sprint(wantE) {
				t.Errorf("entries\n got %v\nwant %v", paths(gotE), paths(wantE))
			}
			if fmt.Sprint(gotP) != fmt.Sprint(wantP) {
				t.Errorf("partials %v, want %v", paths(gotP), paths(wantP))
			}
			if fmt.Sprint(gotPr) != fmt.Sprint(wantPr) {
				t.Errorf("problems %v, want %v", gotPr, wantPr)
			}
		})
	}
}

// TestListWalkRootAndConcurrency: a target whose root cannot be listed
// fails the walk with the backend's class, and no more than 8 List calls
// are ever in flight.
func TestListWalkRootAndConcurrency(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fake := newListFake()
	fake.onList = func(context.Context, string) error { return fmt.Errorf("root: %w", backends.ErrNotExist) }
	if _, _, _, err := drain(t, fake, nil); !errors.Is(err, backends.ErrNotExist) {
		t.Errorf("unlistable root: err %v, want one wrapping ErrNotExist", err)
	}
	var es []backends.FileInfo
	for d := range 200 {
		es = append(es, dir(fmt.Sprintf("d%03d", d), 1), file(fmt.Sprintf("d%03d/f", d), 1, 1))
	}
	fake = newListFake(es...)
	got, _, _, err := drain(t, fake, nil)
	if err != nil || len(got) != len(es) {
		t.Fatalf("listed %d entries, %v; want %d", len(got), err, len(es))
	}
	if n := fake.maxSeen.Load(); n > listConcurrency {
		t.Errorf("%d List calls in flight at once, want at most %d", n, listConcurrency)
	}
}

// TestListWalkCloseCutsLists: a walk closed before its end (the scan
// failed, the merge stopped) cancels the List calls running ahead instead
// of waiting for them, and leaves no goroutine behind.
func TestListWalkCloseCutsLists(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var es []backends.FileInfo
	for d := range 20 {
		es = append(es, dir(fmt.Sprintf("d%02d", d), 1), file(fmt.Sprintf("d%02d/f", d), 1, 1))
	}
	fake := newListFake(es...)
	started := make(chan struct{}, 64)
	fake.onList = func(ctx context.Context, dir string) error {
		if dir == "" {
			return nil
		}
		started <- struct{}{}
		<-ctx.Done() // a slow server: only a cancel ends the call
		return ctx.Err()
	}
	l := newListWalk(context.Background(), fake, nil, nil)
	if ok, err := l.next(); !ok || err != nil {
		t.Fatalf("first entry: %v, %v", ok, err)
	}
	<-started
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for List calls that only a cancel ends")
	}
}

// dupLister lists one entry of the root twice, as a faulty server might.
type dupLister struct{ *listFake }

func (d *dupLister) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	es, err := d.listFake.List(ctx, dir)
	if dir == "" && len(es) > 0 {
		es = append(es, es[0])
	}
	return es, err
}

// TestListWalkDuplicateName: a name listed twice in one directory comes
// out once, with a problem, so the run deletes nothing: the merge would
// otherwise take the second copy for an entry the source lacks.
func TestListWalkDuplicateName(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fake := &dupLister{newListFake(file("a", 1, 1), file("b", 2, 2))}
	es, _, problems, err := drain(t, fake, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(paths(es)); got != fmt.Sprint(paths([]backends.FileInfo{file("a", 1, 1), file("b", 2, 2)})) {
		t.Errorf("entries %s, want a and b once", got)
	}
	if !Incomplete(problems) {
		t.Errorf("problems %v do not stop deletes", problems)
	}
}

// TestPlanFromSourceTargetOutOfOrder: a target stream that repeats a path
// or goes back fails the merge instead of planning from it.
func TestPlanFromSourceTargetOutOfOrder(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		dst  []backends.FileInfo
	}{
		{"repeated", []backends.FileInfo{file("a", 1, 1), file("a", 1, 1)}},
		{"backwards", []backends.FileInfo{file("b", 1, 1), file("a", 1, 1)}},
		{"slash sorted as a byte", []backends.FileInfo{file("a-b", 1, 1), file("a/b", 1, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planFromSource(context.Background(), root, nil, nil, &listStream{list: tc.dst}, PlanOptions{})
			var te *targetError
			if !errors.As(err, &te) {
				t.Errorf("err %v, want a target error", err)
			}
		})
	}
}
