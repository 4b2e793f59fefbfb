package engine

import (
	"slices"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Move is a server-side rename that stands in for ops of a plan: the
// upload (or the mkdir and everything created under it) of a new path To,
// and the delete of From (with everything under it), when From held the
// same content.
type Move struct {
	From, To string
	Dir      bool
	// Entry is the source entry that lands at To.
	Entry backends.FileInfo
	// Files and Bytes count the regular files moved.
	Files int
	Bytes int64
	ops   []int // indices of the plan's ops this move replaces
}

// MoveOptions say when two entries count as the same content.
type MoveOptions struct {
	ModifyWindow time.Duration
	IgnoreModes  bool // the target keeps no permission bits
}

// moveItem is one entry created or deleted by a plan.
type moveItem struct {
	path string
	fi   *backends.FileInfo
	op   int
	used bool
}

// FindMoves finds in a plan the deletes that reappear as creations under
// another path, and returns them as moves; the plan is not changed (see
// WithoutMoves). It is pure and cheap when a plan has no deletes.
//
// A regular file matches when size, mtime (within the window), permission
// bits (unless ignored) and, where both are known, the hash agree; a name
// alike is preferred among equals. A directory matches when its whole
// subtree reappears under the new path with every entry matching (same
// relative paths, types, link targets and file content as above) and holds
// at least one file: it becomes one move, its entries none of their own.
func FindMoves(plan Plan, opts MoveOptions) []Move {
	var added, gone []moveItem
	for i := range plan.Ops {
		op := &plan.Ops[i]
		switch {
		case op.Kind == OpDelete && op.Reason == "extraneous" && op.Dst != nil:
			gone = append(gone, moveItem{path: op.Path, fi: op.Dst, op: i})
		case (op.Kind == OpUpload || op.Kind == OpMkdir || op.Kind == OpSymlink) && op.Dst == nil && op.Reason == "new":
			added = append(added, moveItem{path: op.Path, fi: &op.Src, op: i})
		}
	}
	if len(gone) == 0 || len(added) == 0 {
		return nil
	}
	byPath := func(a, b moveItem) int { return ComparePaths(a.path, b.path) }
	slices.SortFunc(added, byPath)
	slices.SortFunc(gone, byPath)
	m := &mover{opts: opts, added: added, gone: gone}
	moves := m.dirs()
	return append(moves, m.files()...)
}

type mover struct {
	opts        MoveOptions
	added, gone []moveItem
}

// subtree returns the end of the run of items strictly under items[i].
func subtree(items []moveItem, i int) int {
	j := i + 1
	for j < len(items) && under(items[j].path, items[i].path) {
		j++
	}
	return j
}

type dirKey struct {
	n     int
	bytes int64
}

func sizeOf(items []moveItem) (k dirKey, files int) {
	k.n = len(items)
	for _, it := range items {
		if it.fi.IsRegular() {
			files++
			k.bytes += it.fi.Size
		}
	}
	return k, files
}

func (m *mover) dirs() []Move {
	cands := map[dirKey][]int{}
	for i, g := range m.gone {
		if g.fi.IsDir() {
			k, files := sizeOf(m.gone[i+1 : subtree(m.gone, i)])
			if files > 0 {
				cands[k] = append(cands[k], i)
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	var moves []Move
	for i := 0; i < len(m.added); i++ {
		a := m.added[i]
		if !a.fi.IsDir() {
			continue
		}
		end := subtree(m.added, i)
		inner := m.added[i+1 : end]
		k, files := sizeOf(inner)
		if files == 0 {
			continue
		}
		for _, gi := range cands[k] {
			gend := subtree(m.gone, gi)
			if !m.free(m.gone[gi:gend]) || !m.sameTree(a.path, inner, m.gone[gi].path, m.gone[gi+1:gend]) {
				continue
			}
			mv := Move{From: m.gone[gi].path, To: a.path, Dir: true, Entry: *a.fi, Files: files, Bytes: k.bytes}
			for _, set := range [][]moveItem{m.added[i:end], m.gone[gi:gend]} {
				for x := range set {
					set[x].used = true
					mv.ops = append(mv.ops, set[x].op)
				}
			}
			moves = append(moves, mv)
			i = end - 1 // the subtree moves with it
			break
		}
	}
	return moves
}

func (m *mover) free(items []moveItem) bool {
	for _, it := range items {
		if it.used {
			return false
		}
	}
	return true
}

// sameTree compares two subtrees entry by entry, by path relative to
// their roots; both are in path order, so their relative paths are too.
func (m *mover) sameTree(aRoot string, a []moveItem, gRoot string, g []moveItem) bool {
	for k := range a {
		if a[k].path[len(aRoot):] != g[k].path[len(gRoot):] || !m.same(a[k].fi, g[k].fi) {
			return false
		}
	}
	return true
}

// same reports whether the target entry old holds what the source entry s
// describes.
func (m *mover) same(s, old *backends.FileInfo) bool {
	if kindOf(s) != kindOf(old) {
		return false
	}
	switch kindOf(s) {
	case kindDir:
		return true
	case kindLink:
		return s.LinkTarget == old.LinkTarget
	case kindFile:
		if s.Size != old.Size || !(PlanOptions{ModifyWindow: m.opts.ModifyWindow}).sameTime(s.ModTime, old.ModTime) {
			return false
		}
		if !m.opts.IgnoreModes && s.Mode.Perm() != old.Mode.Perm() {
			return false
		}
		return s.Hash == "" || old.Hash == "" || s.Hash == old.Hash
	}
	return false
}

func (m *mover) files() []Move {
	bySize := map[int64][]int{}
	for i, g := range m.gone {
		if !g.used && g.fi.IsRegular() {
			bySize[g.fi.Size] = append(bySize[g.fi.Size], i)
		}
	}
	var moves []Move
	for i := range m.added {
		a := &m.added[i]
		if a.used || !a.fi.IsRegular() {
			continue
		}
		best := -1
		for _, gi := range bySize[a.fi.Size] {
			g := &m.gone[gi]
			if g.used || !m.same(a.fi, g.fi) {
				continue
			}
			if best < 0 {
				best = gi
			}
			if base(g.path) == base(a.path) {
				best = gi
				break
			}
		}
		if best < 0 {
			continue
		}
		g := &m.gone[best]
		a.used, g.used = true, true
		moves = append(moves, Move{From: g.path, To: a.path, Entry: *a.fi, Files: 1, Bytes: a.fi.Size, ops: []int{a.op, g.op}})
	}
	return moves
}

func base(p string) string {
	_, name := backends.Split(p)
	return name
}

// WithoutMoves returns plan without the ops that the moves done replace,
// keeping the order of the rest. Directory mtime fixes stay: a move leaves
// the new parent's mtime to be set.
func WithoutMoves(plan Plan, done []Move) Plan {
	if len(done) == 0 {
		return plan
	}
	drop := map[int]bool{}
	for _, mv := range done {
		for _, i := range mv.ops {
			drop[i] = true
		}
	}
	out := plan
	out.Ops = make([]Op, 0, len(plan.Ops)-len(drop))
	for i, op := range plan.Ops {
		if !drop[i] {
			out.Ops = append(out.Ops, op)
		}
	}
	return out
}
