package engine

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Why deletes were left out of a plan (Plan.DeletesRefused wraps one).
var (
	// ErrSourceEmpty: mirror mode with nothing in the source while the target
	// has entries, which is far more often a wrong or unmounted source than a
	// wish to wipe the target.
	ErrSourceEmpty = errors.New("source is empty but the target is not: refusing to delete")
	// ErrTooManyDeletes: more deletes than PlanOptions.MaxDelete allows.
	ErrTooManyDeletes = errors.New("too many deletes")
	// ErrIncompleteListing: the scan or the listing had errors, so a missing
	// entry may only be unread; nothing is deleted.
	ErrIncompleteListing = errors.New("scan or listing was incomplete: refusing to delete")
)

// Why the planner skipped a path (Plan.Skipped problems wrap one).
var (
	// ErrTypeConflict: the source and the target hold different types (file,
	// directory, symlink) at one path, and the planner may not replace the
	// target's (backup mode, excluded entries, refused deletes).
	ErrTypeConflict = errors.New("type differs between source and target")
	// ErrSymlinkUnsupported: a source symlink that the target cannot hold.
	ErrSymlinkUnsupported = errors.New("symlink skipped: the target cannot hold symlinks")
)

// PlanOptions are the knobs of MakePlan.
type PlanOptions struct {
	Mode         Mode
	Checksum     bool          // compare FileInfo.Hash when both set and sizes equal
	MaxDelete    int           // <0: no cap; else at most this many deletes (0 forbids deletes)
	ModifyWindow time.Duration // mtimes within this are equal (0 = exact)
	Symlinks     bool          // the target can hold symlinks
	Filter       *Filter       // excluded paths are never touched, also if listed
	Incomplete   bool          // the scan or listing had errors: plan no deletes at all
	IgnoreModes  bool          // the target keeps no permission bits: do not compare them
}

// Plan is what MakePlan decided.
type Plan struct {
	// Ops run in order. Groups, each holding runs of one OpKind: deletes
	// of entries whose type changes (Reason "type", deepest first), mkdirs
	// (parents first), uploads, symlinks, mtime/mode fixes of files, other
	// deletes (deepest first), mtime fixes of directories (deepest first,
	// after the deletes that change their mtime).
	Ops     []Op
	Skipped []Problem // e.g. symlinks a target cannot hold, type conflicts in backup mode
	// DeletesRefused is non-nil when deletes were dropped from the plan
	// (Incomplete, MaxDelete exceeded, source empty while the target is not);
	// the copies still run and the run exits 1.
	DeletesRefused error
}

// ComparePaths orders slash-separated paths element by element, which is
// byte order with '/' below every other byte. In this order a directory's
// whole subtree follows it without a gap ("a", "a/b", "a-c"; plain string
// order puts "a-c" between them), which is what lets MakePlan merge two
// trees in one pass.
func ComparePaths(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		switch {
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		}
		return 1
	}
	return cmp.Compare(len(a), len(b))
}

// SortEntries sorts es by Path in ComparePaths order.
func SortEntries(es []backends.FileInfo) {
	slices.SortFunc(es, func(a, b backends.FileInfo) int { return ComparePaths(a.Path, b.Path) })
}

// MakePlan decides what makes the target dst match the source src. It is
// pure: no I/O, and src and dst are only read. Both should be sorted in
// ComparePaths order as Scan and ListTarget return them; a list that is not
// (or holds a path twice) is sorted in a copy first, which costs memory.
//
// Files compare by size and mtime (within ModifyWindow); with Checksum and
// equal sizes, equal hashes mean equal content whatever the mtimes say.
// Equal content with another mtime or permission bits only gets an
// OpSetModTime. A type change (file, directory, symlink) deletes the old
// entry first in mirror mode and is skipped in backup mode. Excluded paths
// on either side are never touched, and a directory the source lacks is
// deleted only if everything under it is. Symlinks are never followed.
func MakePlan(src, dst []backends.FileInfo, opts PlanOptions) Plan {
	pl := &planner{opts: opts}
	pl.src = pl.prepare(src, "source")
	pl.dst = pl.prepare(dst, "target")
	pl.children("", true, true, &pl.deletes)
	return pl.finish()
}

type entryKind int

const (
	kindFile entryKind = iota
	kindDir
	kindLink
	kindOther
)

func kindOf(fi *backends.FileInfo) entryKind {
	switch {
	case fi.IsRegular():
		return kindFile
	case fi.IsDir():
		return kindDir
	case fi.IsSymlink():
		return kindLink
	}
	return kindOther
}

func (k entryKind) String() string {
	return [...]string{"file", "directory", "symlink", "special file"}[k]
}

// planner holds one merge of a source and a target list. The op groups are
// kept apart while merging and joined in the documented order at the end.
type planner struct {
	opts     PlanOptions
	src, dst []backends.FileInfo
	i, j     int // next unread entry of src and dst
	srcKept  int // source entries neither excluded nor misplaced

	typeDeletes, mkdirs, uploads, symlinks, fileTouches, deletes, dirTouches []Op

	typePaths []string // paths whose type change depends on a delete, in order
	skipped   []Problem
}

func (pl *planner) skip(path string, err error) {
	pl.skipped = append(pl.skipped, Problem{Path: path, Err: err})
}

// prepare returns list if it is strictly increasing in ComparePaths order
// without the root, else a sorted copy without the root and duplicates.
func (pl *planner) prepare(list []backends.FileInfo, side string) []backends.FileInfo {
	sorted := true
	for k := range list {
		if list[k].Path == "" || k > 0 && ComparePaths(list[k-1].Path, list[k].Path) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		return list
	}
	c := make([]backends.FileInfo, 0, len(list))
	for _, e := range list {
		if e.Path != "" {
			c = append(c, e)
		}
	}
	slices.SortStableFunc(c, func(a, b backends.FileInfo) int { return ComparePaths(a.Path, b.Path) })
	return slices.CompactFunc(c, func(a, b backends.FileInfo) bool {
		if a.Path == b.Path {
			pl.skip(b.Path, fmt.Errorf("%s lists the path twice: the second entry is ignored", side))
			return true
		}
		return false
	})
}

// under reports whether p lies strictly inside the directory prefix.
func under(p, prefix string) bool {
	if prefix == "" {
		return p != ""
	}
	return len(p) > len(prefix) && p[len(prefix)] == '/' && p[:len(prefix)] == prefix
}

func (pl *planner) skipSrc(dir string) {
	for pl.i < len(pl.src) && under(pl.src[pl.i].Path, dir) {
		pl.i++
	}
}

func (pl *planner) skipDst(dir string) {
	for pl.j < len(pl.dst) && under(pl.dst[pl.j].Path, dir) {
		pl.j++
	}
}

// children merges the entries inside the directory prefix. srcDir and dstDir
// say whether each side has prefix as a directory; entries of a side that
// does not, or whose parent is missing from their list, cannot be placed and
// are left alone. Deletes found go to dels. allGone reports that every
// target entry inside prefix is deleted (so prefix itself may be); changed
// that a direct child is created, replaced or deleted, which changes the
// mtime of prefix.
func (pl *planner) children(prefix string, srcDir, dstDir bool, dels *[]Op) (allGone, changed bool) {
	allGone = true
	for {
		hasS := pl.i < len(pl.src) && under(pl.src[pl.i].Path, prefix)
		hasD := pl.j < len(pl.dst) && under(pl.dst[pl.j].Path, prefix)
		if !hasS && !hasD {
			return allGone, changed
		}
		var s, d *backends.FileInfo
		c := 0
		if hasS && hasD {
			c = ComparePaths(pl.src[pl.i].Path, pl.dst[pl.j].Path)
		} else if hasS {
			c = -1
		} else {
			c = 1
		}
		if c <= 0 {
			s = &pl.src[pl.i]
			pl.i++
		}
		if c >= 0 {
			d = &pl.dst[pl.j]
			pl.j++
		}
		path := pathOf(s, d)
		parent, _ := backends.Split(path)
		if s != nil && (!srcDir || parent != prefix) {
			pl.skip(path, fmt.Errorf("source lists it without its parent directory %q: left alone", parent))
			if s.IsDir() {
				pl.skipSrc(path)
			}
			s = nil
		}
		if d != nil && (!dstDir || parent != prefix) {
			// A target entry that cannot be placed in the tree is never
			// touched, and keeps its directory.
			allGone = false
			if d.IsDir() {
				pl.skipDst(path)
			}
			d = nil
		}
		if s != nil && pl.opts.Filter.excludedSelf(path, s.IsDir()) {
			if s.IsDir() {
				pl.skipSrc(path)
			}
			s = nil
		}
		if d != nil && pl.opts.Filter.excludedSelf(path, d.IsDir()) {
			allGone = false
			if d.IsDir() {
				pl.skipDst(path)
			}
			if s != nil {
				// Only types differ can make one side excluded and not the other.
				pl.skip(path, fmt.Errorf("%w: %s in source, excluded %s on target: left as is",
					ErrTypeConflict, kindOf(s), kindOf(d)))
				if s.IsDir() {
					pl.skipSrc(path)
				}
			}
			continue
		}
		if s != nil {
			pl.srcKept++
		}
		switch {
		case s == nil && d == nil:
		case s == nil:
			if pl.dropDst(d, dels) {
				changed = true
			} else {
				allGone = false
			}
		case d == nil:
			allGone = false // nothing of the source sits under a directory it lacks
			if pl.create(s, "new", dels) {
				changed = true
			}
		default:
			allGone = false
			if pl.update(s, d, dels) {
				changed = true
			}
		}
	}
}

func pathOf(s, d *backends.FileInfo) string {
	if s != nil {
		return s.Path
	}
	return d.Path
}

// dropDst deletes a target entry the source lacks (mirror mode), a
// directory only if all it holds goes too. It reports whether it did.
func (pl *planner) dropDst(d *backends.FileInfo, dels *[]Op) bool {
	if pl.opts.Mode != Mirror {
		if d.IsDir() {
			pl.skipDst(d.Path)
		}
		return false
	}
	if d.IsDir() {
		if gone, _ := pl.children(d.Path, false, true, dels); !gone {
			return false
		}
	}
	*dels = append(*dels, Op{Kind: OpDelete, Path: d.Path, Dst: d, Reason: "extraneous"})
	return true
}

// create brings over a source entry the target lacks (or has just lost to
// a type change) and reports whether an op was planned for it.
func (pl *planner) create(s *backends.FileInfo, reason string, dels *[]Op) bool {
	switch kindOf(s) {
	case kindDir:
		pl.mkdirs = append(pl.mkdirs, Op{Kind: OpMkdir, Path: s.Path, Src: *s, Reason: reason})
		pl.children(s.Path, true, false, dels)
		// Creating the directory and its contents sets its mtime to now.
		pl.dirTouches = append(pl.dirTouches, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Reason: reason})
	case kindFile:
		pl.uploads = append(pl.uploads, Op{Kind: OpUpload, Path: s.Path, Src: *s, Reason: reason})
	case kindLink:
		if !pl.opts.Symlinks {
			pl.skip(s.Path, fmt.Errorf("%w (-> %s)", ErrSymlinkUnsupported, s.LinkTarget))
			return false
		}
		pl.symlinks = append(pl.symlinks, Op{Kind: OpSymlink, Path: s.Path, Src: *s, Reason: reason})
	default:
		pl.skip(s.Path, ErrSpecialFile)
		return false
	}
	return true
}

// update reconciles a path both sides hold and reports whether a direct
// change (create, replace, delete) was planned at it.
func (pl *planner) update(s, d *backends.FileInfo, dels *[]Op) bool {
	ks, kd := kindOf(s), kindOf(d)
	if ks == kd {
		switch ks {
		case kindDir:
			_, changed := pl.children(s.Path, true, true, dels)
			reason := pl.metaDiff(s, d)
			if changed && reason == "" {
				reason = "mtime"
			}
			if reason != "" {
				pl.dirTouches = append(pl.dirTouches, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Dst: d, Reason: reason})
			}
			return false
		case kindFile:
			kind, reason := pl.compareFiles(s, d)
			switch {
			case reason == "":
				return false
			case kind == OpUpload:
				pl.uploads = append(pl.uploads, Op{Kind: OpUpload, Path: s.Path, Src: *s, Dst: d, Reason: reason})
				return true
			}
			pl.fileTouches = append(pl.fileTouches, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Dst: d, Reason: reason})
			return false
		case kindLink:
			if s.LinkTarget == d.LinkTarget {
				return false
			}
			if !pl.opts.Symlinks {
				pl.skip(s.Path, fmt.Errorf("%w (-> %s)", ErrSymlinkUnsupported, s.LinkTarget))
				return false
			}
			// The target replaces a link atomically: no delete first.
			pl.symlinks = append(pl.symlinks, Op{Kind: OpSymlink, Path: s.Path, Src: *s, Dst: d, Reason: "link"})
			return true
		}
		pl.skip(s.Path, ErrSpecialFile)
		return false
	}

	// The type changes. Whatever is skipped here leaves the target's entry
	// (and everything under it) as it is.
	leave := func(err error) bool {
		pl.skip(s.Path, err)
		if ks == kindDir {
			pl.skipSrc(s.Path)
		}
		if kd == kindDir {
			pl.skipDst(d.Path)
		}
		return false
	}
	switch {
	case ks == kindOther:
		return leave(ErrSpecialFile)
	case ks == kindLink && !pl.opts.Symlinks:
		return leave(fmt.Errorf("%w (-> %s)", ErrSymlinkUnsupported, s.LinkTarget))
	case pl.opts.Mode != Mirror:
		return leave(fmt.Errorf("%w: %s in source, %s on target: left as is in %s mode", ErrTypeConflict, ks, kd, pl.opts.Mode))
	}
	mark := len(pl.typeDeletes)
	if kd == kindDir {
		if gone, _ := pl.children(d.Path, false, true, &pl.typeDeletes); !gone {
			// Excluded entries keep the directory, so the source entry
			// cannot take its place; what could go still goes, as ordinary
			// deletes of entries the source lacks.
			moved := pl.typeDeletes[mark:]
			if dels != &pl.typeDeletes {
				*dels = append(*dels, moved...)
				pl.typeDeletes = pl.typeDeletes[:mark]
			}
			pl.skip(s.Path, fmt.Errorf("%w: %s in source, directory with excluded entries on target: left as is", ErrTypeConflict, ks))
			return len(moved) > 0
		}
	}
	for k := mark; k < len(pl.typeDeletes); k++ {
		pl.typeDeletes[k].Reason = "type"
	}
	pl.typeDeletes = append(pl.typeDeletes, Op{Kind: OpDelete, Path: d.Path, Dst: d, Reason: "type"})
	pl.typePaths = append(pl.typePaths, s.Path)
	pl.create(s, "type", dels)
	return true
}

// compareFiles says whether two regular files at one path differ in content
// (OpUpload) or only in metadata (OpSetModTime), and why; "" if neither.
func (pl *planner) compareFiles(s, d *backends.FileInfo) (OpKind, string) {
	if s.Size != d.Size {
		return OpUpload, "size"
	}
	sameTime := pl.sameTime(s.ModTime, d.ModTime)
	if pl.opts.Checksum && s.Hash != "" && d.Hash != "" {
		if s.Hash != d.Hash {
			return OpUpload, "checksum"
		}
		if !sameTime {
			return OpSetModTime, "mtime"
		}
	} else if !sameTime {
		return OpUpload, "mtime"
	}
	if pl.modeDiffers(s, d) {
		return OpSetModTime, "mode"
	}
	return 0, ""
}

// metaDiff says why a directory's metadata needs fixing, or "".
func (pl *planner) metaDiff(s, d *backends.FileInfo) string {
	if !pl.sameTime(s.ModTime, d.ModTime) {
		return "mtime"
	}
	if pl.modeDiffers(s, d) {
		return "mode"
	}
	return ""
}

func (pl *planner) sameTime(a, b time.Time) bool {
	w := pl.opts.ModifyWindow
	if w <= 0 {
		return a.Equal(b)
	}
	d := a.Sub(b)
	return d <= w && d >= -w
}

func (pl *planner) modeDiffers(s, d *backends.FileInfo) bool {
	return !pl.opts.IgnoreModes && s.Mode.Perm() != d.Mode.Perm()
}

// finish applies the delete safety rules and joins the groups.
func (pl *planner) finish() Plan {
	var refused error
	if n := len(pl.typeDeletes) + len(pl.deletes); n > 0 {
		switch {
		case pl.opts.Incomplete:
			refused = fmt.Errorf("%w: %d deletes not done", ErrIncompleteListing, n)
		case pl.opts.Mode == Mirror && pl.srcKept == 0:
			refused = fmt.Errorf("%w: %d deletes not done", ErrSourceEmpty, n)
		case pl.opts.MaxDelete >= 0 && n > pl.opts.MaxDelete:
			refused = fmt.Errorf("%w: %d planned, at most %d allowed: none done", ErrTooManyDeletes, n, pl.opts.MaxDelete)
		}
	}
	if refused != nil {
		pl.typeDeletes, pl.deletes = nil, nil
		pl.dropTypeChanges(refused)
	}
	groups := [][]Op{pl.mkdirs, pl.uploads, pl.symlinks, pl.fileTouches}
	n := len(pl.typeDeletes) + len(pl.deletes) + len(pl.dirTouches)
	for _, g := range groups {
		n += len(g)
	}
	ops := make([]Op, 0, n)
	ops = appendDeepestFirst(ops, pl.typeDeletes)
	for _, g := range groups {
		ops = append(ops, g...)
	}
	ops = appendDeepestFirst(ops, pl.deletes)
	ops = appendDeepestFirst(ops, pl.dirTouches)
	return Plan{Ops: ops, Skipped: pl.skipped, DeletesRefused: refused}
}

// dropTypeChanges removes the creates that needed a refused delete of the
// entry of another type in their way, with everything planned under them.
func (pl *planner) dropTypeChanges(refused error) {
	if len(pl.typePaths) == 0 {
		return
	}
	blocked := func(op Op) bool {
		k, found := slices.BinarySearchFunc(pl.typePaths, op.Path, ComparePaths)
		// No type-changed path lies under another, so only the nearest
		// one at or before op.Path in order can hold it.
		return found || k > 0 && under(op.Path, pl.typePaths[k-1])
	}
	for _, g := range []*[]Op{&pl.mkdirs, &pl.uploads, &pl.symlinks, &pl.fileTouches, &pl.dirTouches} {
		*g = slices.DeleteFunc(*g, blocked)
	}
	for _, p := range pl.typePaths {
		pl.skip(p, fmt.Errorf("%w: not replaced: %w", ErrTypeConflict, refused))
	}
}

// appendDeepestFirst appends ops to out ordered by depth, deepest first,
// keeping the merge order within a depth (a stable counting sort: O(n), and
// no memory beyond out).
func appendDeepestFirst(out, ops []Op) []Op {
	if len(ops) == 0 {
		return out
	}
	var count []int
	for k := range ops {
		d := strings.Count(ops[k].Path, "/")
		for len(count) <= d {
			count = append(count, 0)
		}
		count[d]++
	}
	// next[d] is where the next op of depth d goes; deeper depths go first.
	next := make([]int, len(count))
	pos := len(out)
	for d := len(count) - 1; d >= 0; d-- {
		next[d] = pos
		pos += count[d]
	}
	out = out[:pos]
	for k := range ops {
		d := strings.Count(ops[k].Path, "/")
		out[next[d]] = ops[k]
		next[d]++
	}
	return out
}
