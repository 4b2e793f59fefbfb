package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// prunedPlan runs src and dst through a pruner, as planFromSource does with
// a scan and a target stream, and plans from what it kept. Both lists must
// be in ComparePaths order without duplicates.
func prunedPlan(src, dst []backends.FileInfo, opts PlanOptions) (Plan, *pruner) {
	p := newPruner(opts, false)
	i, j := 0, 0
	meta := func(e backends.FileInfo) *backends.FileInfo {
		if !e.IsDir() {
			e.Path = ""
		}
		return &e
	}
	for i < len(src) || j < len(dst) {
		var s, d *backends.FileInfo
		c := 1
		switch {
		case i < len(src) && j < len(dst):
			c = ComparePaths(src[i].Path, dst[j].Path)
		case i < len(src):
			c = -1
		}
		if c <= 0 {
			s = &src[i]
			i++
		}
		if c >= 0 {
			d = &dst[j]
			j++
		}
		var sm, dm *backends.FileInfo
		if s != nil {
			sm = meta(*s)
		}
		if d != nil {
			dm = meta(*d)
		}
		if p.step(pathOf(s, d), sm, dm) {
			p.keep(s, d)
		}
	}
	return p.plan(opts), p
}

// samePlan says how two plans differ, or "".
func samePlan(a, b Plan) string {
	if len(a.Ops) != len(b.Ops) {
		return fmt.Sprintf("%d ops against %d: %v against %v", len(a.Ops), len(b.Ops), a.Ops, b.Ops)
	}
	for k := range a.Ops {
		x, y := a.Ops[k], b.Ops[k]
		if x.Kind != y.Kind || x.Path != y.Path || x.Reason != y.Reason || !reflect.DeepEqual(x.Src, y.Src) ||
			(x.Dst == nil) != (y.Dst == nil) || x.Dst != nil && !reflect.DeepEqual(*x.Dst, *y.Dst) {
			return fmt.Sprintf("op %d: %+v against %+v", k, x, y)
		}
	}
	if fmt.Sprint(a.Skipped) != fmt.Sprint(b.Skipped) {
		return fmt.Sprintf("skipped %v against %v", a.Skipped, b.Skipped)
	}
	if fmt.Sprint(a.DeletesRefused) != fmt.Sprint(b.DeletesRefused) {
		return fmt.Sprintf("refused %v against %v", a.DeletesRefused, b.DeletesRefused)
	}
	return ""
}

// FuzzPrunedPlan checks that leaving out what a plan would not touch
// changes nothing: the plan from the pruned lists is MakePlan's over the
// whole trees, ops, skipped paths and refusals alike. Some targets lose a
// directory while keeping what it held, as a damaged state could.
func FuzzPrunedPlan(f *testing.F) {
	seeds := [][]byte{
		{},
		{0, 0, 200, 0xC2, 0, 250, 0xC0, 1},
		{0, 0, 10, 0xC0, 0, 60, 0xC2, 0, 60, 0x40, 4},
		{0, 4, 40, 0xC2, 0, 41, 0xC0, 0, 42, 0xC0, 0},
		{0x20, 0, 120, 0xC2, 0, 130, 0xC0, 0, 131, 0x40, 0},
		{1, 0xD9, 5, 0xC0, 0, 6, 0xC0, 0, 7, 0x40, 0, 130, 0xC2, 0},
		{0, 0x18, 5, 0xC0, 0, 6, 0x40, 0, 7, 0x40, 0, 8, 0xC0, 1, 8, 0, 2},
		{0, 0, 1, 0xC2, 0, 2, 0xC0, 0, 1, 0x40, 0, 1, 0, 0},
		// Equal files under a directory the target lost: they are uploaded.
		{0, 4, 48, 0xC0, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src, dst, opts := decodeFuzz(data)
		SortEntries(src)
		SortEntries(dst)
		if len(data) > 1 && data[1]&4 != 0 {
			for k := range dst {
				if dst[k].IsDir() {
					dst = append(dst[:k:k], dst[k+1:]...)
					break
				}
			}
		}
		want := MakePlan(src, dst, opts)
		got, p := prunedPlan(src, dst, opts)
		if diff := samePlan(got, want); diff != "" {
			t.Errorf("pruned plan differs: %s\nsrc: %v\ndst: %v\nkept src: %v\nkept dst: %v\nopts: %+v",
				diff, paths(src), paths(dst), paths(p.src), paths(p.dst), opts)
		}
	})
}

// TestPlanFromSourceNoOp plans a tree against an equal listing: nothing is
// kept, nothing planned, and the counts are the source's.
func TestPlanFromSourceNoOp(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{"a/b/c": "1", "a/d": "22", "e": "333", "l": "-> e", "x/": ""})
	src, _, err := Scan(context.Background(), root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true}
	got, err := planFromSource(context.Background(), root, nil, nil, &listStream{list: src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.plan.Ops) != 0 || got.plan.DeletesRefused != nil || len(got.plan.Skipped) != 0 {
		t.Errorf("no-op plan: %v, refused %v, skipped %v", got.plan.Ops, got.plan.DeletesRefused, got.plan.Skipped)
	}
	if got.files != 3 || got.bytes != 6 || got.entries != len(src) {
		t.Errorf("counted %d files, %d bytes, %d entries; want 3, 6, %d", got.files, got.bytes, got.entries, len(src))
	}
	if got.kept != 0 {
		t.Errorf("%d entries reached the planner; a no-op keeps none", got.kept)
	}
}

// TestPlanFromSourceMatchesMakePlan changes a scanned tree's listing in
// every way the planner tells apart and checks that planning while
// scanning gives MakePlan's plan.
func TestPlanFromSourceMatchesMakePlan(t *testing.T) {
	root := t.TempDir()
	mkTree(t, root, map[string]string{
		"a/b/c": "1", "a/d": "22", "a-b": "x", "e": "333", "l": "-> e", "x/": "", "new/deep/f": "n",
		"t/f": "f", "keep.log": "k",
	})
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "a/d"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	src, _, err := Scan(context.Background(), root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dst []backends.FileInfo
	for _, e := range src {
		switch e.Path {
		case "new", "new/deep", "new/deep/f": // missing on the target
		case "a/d":
			e.Size = 3 // changed
			dst = append(dst, e)
		case "e":
			e.ModTime = e.ModTime.Add(time.Hour) // older copy
			dst = append(dst, e)
		case "t":
			dst = append(dst, backends.FileInfo{Path: "t", Size: 1, ModTime: mtime, Mode: 0o644}) // type change
		case "t/f":
		case "x":
			dst = append(dst, e, backends.FileInfo{Path: "x/gone", Size: 1, ModTime: mtime, Mode: 0o644}) // extraneous
		default:
			dst = append(dst, e)
		}
	}
	dst = append(dst, backends.FileInfo{Path: "zz/y", Size: 1, ModTime: mtime, Mode: 0o644}) // orphan on the target
	SortEntries(dst)
	f, err := NewFilter([]string{"*.log"})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{Mirror, Backup} {
		for _, filter := range []*Filter{nil, f} {
			opts := PlanOptions{Mode: mode, MaxDelete: -1, Symlinks: true, Filter: filter}
			scanned, _, err := Scan(context.Background(), root, filter, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := MakePlan(scanned, dst, opts)
			got, err := planFromSource(context.Background(), root, filter, nil, &listStream{list: dst}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := samePlan(got.plan, want); diff != "" {
				t.Errorf("%s, filter %v: %s", mode, filter, diff)
			}
			if len(want.Ops) == 0 {
				t.Errorf("%s: the changed listing planned nothing", mode)
			}
		}
	}
}

// listStream is a targetStream over a sorted listing held whole, the
// tests' stand-in for a target.
type listStream struct {
	list []backends.FileInfo
	i    int
}

func (l *listStream) next() (bool, error) {
	l.i++
	return l.i <= len(l.list), nil
}
func (l *listStream) appendPath(b []byte) []byte       { return append(b, l.list[l.i-1].Path...) }
func (l *listStream) meta() (backends.FileInfo, error) { return l.list[l.i-1], nil }
func (l *listStream) info() (backends.FileInfo, error) { return l.list[l.i-1], nil }
func (l *listStream) incomplete() bool                 { return false }
