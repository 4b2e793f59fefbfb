package engine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

func TestFindMoves(t *testing.T) {
	cases := []struct {
		name    string
		src     []backends.FileInfo
		dst     []backends.FileInfo
		opts    []func(*PlanOptions)
		want    []string // "from -> to", "dir from -> to"
		uploads int      // uploads left in the plan without the moves
	}{
		{name: "renamed file in the same directory",
			src:  fs_(dir("a", 1), file("a/new", 10, 5)),
			dst:  fs_(dir("a", 1), file("a/old", 10, 5)),
			want: []string{"a/old -> a/new"}},
		{name: "file moved to another directory",
			src:  fs_(dir("a", 1), dir("b", 1), file("b/x", 10, 5)),
			dst:  fs_(dir("a", 1), file("a/x", 10, 5), dir("b", 1)),
			want: []string{"a/x -> b/x"}},
		{name: "changed size is no move",
			src: fs_(file("new", 11, 5)), dst: fs_(file("old", 10, 5)), uploads: 1},
		{name: "changed mtime is no move",
			src: fs_(file("new", 10, 6)), dst: fs_(file("old", 10, 5)), uploads: 1},
		{name: "different hashes are no move",
			src: fs_(hashed(file("new", 10, 5), "aa")), dst: fs_(hashed(file("old", 10, 5), "bb")), uploads: 1},
		{name: "other permission bits are no move",
			src: fs_(perm(file("new", 10, 5), 0o600)), dst: fs_(file("old", 10, 5)), uploads: 1},
		{name: "permission bits ignored where the target keeps none",
			src:  fs_(perm(file("new", 10, 5), 0o600)),
			dst:  fs_(file("old", 10, 5)),
			opts: []func(*PlanOptions){ignoreModes},
			want: []string{"old -> new"}},
		{name: "renamed directory is one move",
			src:  fs_(dir("new", 1), file("new/a", 1, 1), dir("new/s", 1), file("new/s/b", 2, 2), link("new/l", "a")),
			dst:  fs_(dir("old", 1), file("old/a", 1, 1), dir("old/s", 1), file("old/s/b", 2, 2), link("old/l", "a")),
			want: []string{"dir old -> new"}},
		{name: "directory moved deeper, next to unrelated changes",
			src:  fs_(dir("p", 1), dir("p/q", 1), dir("p/q/d", 1), file("p/q/d/a", 1, 1), file("p/q/d/b", 2, 2), file("z", 9, 9)),
			dst:  fs_(dir("d", 1), file("d/a", 1, 1), file("d/b", 2, 2), dir("p", 1)),
			want: []string{"dir d -> p/q/d"}, uploads: 1},
		{name: "directory with one changed file: the rest move file by file",
			src:  fs_(dir("new", 1), file("new/a", 1, 1), file("new/b", 2, 2), file("new/c", 3, 4)),
			dst:  fs_(dir("old", 1), file("old/a", 1, 1), file("old/b", 2, 2), file("old/c", 3, 3)),
			want: []string{"old/a -> new/a", "old/b -> new/b"}, uploads: 1},
		{name: "directory with an extra file: no directory move",
			src:  fs_(dir("new", 1), file("new/a", 1, 1), file("new/b", 2, 2)),
			dst:  fs_(dir("old", 1), file("old/a", 1, 1)),
			want: []string{"old/a -> new/a"}, uploads: 1},
		{name: "empty directory renamed: nothing worth a move",
			src: fs_(dir("new", 1)), dst: fs_(dir("old", 1))},
		{name: "equal files pair up by name",
			src:  fs_(dir("n", 1), file("n/x", 4, 4), file("n/y", 4, 4), file("n/z", 5, 5)),
			dst:  fs_(dir("o", 1), file("o/x", 4, 4), file("o/y", 4, 4), file("o/z", 5, 5), file("o/w", 1, 1)),
			want: []string{"o/x -> n/x", "o/y -> n/y", "o/z -> n/z"}},
		{name: "backup mode deletes nothing, so nothing moves",
			src: fs_(file("new", 10, 5)), dst: fs_(file("old", 10, 5)),
			opts: []func(*PlanOptions){backup}, uploads: 1},
		{name: "a replaced file is not a move target",
			src: fs_(file("a", 10, 5)), dst: fs_(file("a", 11, 5), file("b", 10, 5)), uploads: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			po := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true}
			for _, o := range c.opts {
				o(&po)
			}
			plan := MakePlan(c.src, c.dst, po)
			moves := FindMoves(plan, MoveOptions{ModifyWindow: po.ModifyWindow, IgnoreModes: po.IgnoreModes})
			var got []string
			for _, m := range moves {
				s := fmt.Sprintf("%s -> %s", m.From, m.To)
				if m.Dir {
					s = "dir " + s
				}
				got = append(got, s)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("moves %q, want %q\nplan: %v", got, c.want, plan.Ops)
			}
			rest := WithoutMoves(plan, moves)
			uploads := 0
			for _, op := range rest.Ops {
				if op.Kind == OpUpload {
					uploads++
				}
				for _, m := range moves {
					if op.Kind == OpDelete && (op.Path == m.From || under(op.Path, m.From)) {
						t.Errorf("%v left in the plan beside move %s -> %s", op, m.From, m.To)
					}
				}
			}
			if uploads != c.uploads {
				t.Errorf("%d uploads left, want %d: %v", uploads, c.uploads, rest.Ops)
			}
		})
	}
}
