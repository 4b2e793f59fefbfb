package engine

import (
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
	// source is a walk of the source already under way, taken over by the
	// streamed planner's scan (see preWalk); nil for none.
	source *preWalk
	// Versions is the folder (relative to the target root) that holds old
	// versions, "" for none. Entries at or under it, on either side, are
	// never touched. In backup mode, target entries the source lacks are
	// archived (OpArchive) into it instead of being left alone; archives
	// count as deletes for MaxDelete, Incomplete and an empty source.
	Versions string
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
//
// MakePlan never fails: what it will not do is in Plan.Skipped, and it is
// safe to call concurrently. Op.Dst points into dst (or its sorted copy),
// so dst must not change while the plan is in use.
//
// Memory: one merge pass over both lists counts the ops of each group, and
// a second writes them straight into a slice of the exact size, so a plan
// of a million uploads is allocated once; a plan with no ops takes one pass
// and allocates nothing.
func MakePlan(src, dst []backends.FileInfo, opts PlanOptions) Plan {
	return makePlan(src, dst, opts, false)
}

// makePlan is MakePlan for lists from which entries that need nothing were
// left out (see pruner); srcPruned says some source entry was, so the
// source is not empty whatever the lists say.
func makePlan(src, dst []backends.FileInfo, opts PlanOptions, srcPruned bool) Plan {
	pl := &planner{opts: opts}
	pl.src = pl.prepare(src, "source")
	pl.dst = pl.prepare(dst, "target")
	inputProblems := len(pl.skipped)

	pl.run()
	if n := pl.count[gTypeDelete] + pl.count[gDelete]; n > 0 {
		switch {
		case opts.Incomplete:
			pl.refused = fmt.Errorf("%w: %d deletes not done", ErrIncompleteListing, n)
		case (opts.Mode == Mirror || pl.archiving()) && pl.srcKept == 0 && !srcPruned:
			pl.refused = fmt.Errorf("%w: %d deletes not done", ErrSourceEmpty, n)
		case opts.MaxDelete >= 0 && n > opts.MaxDelete:
			pl.refused = fmt.Errorf("%w: %d planned, at most %d allowed: none done", ErrTooManyDeletes, n, opts.MaxDelete)
		}
	}
	if pl.refused != nil {
		// Count again without deletes: type changes that needed one are
		// skipped now, with what depended on them.
		pl.skipped = pl.skipped[:inputProblems]
		pl.run()
	}
	plan := Plan{Skipped: pl.skipped, DeletesRefused: pl.refused}
	if pl.startFill() {
		pl.run()
		pl.checkFilled()
		plan.Ops = pl.out
	}
	return plan
}

// The groups of a plan, in the order they run.
const (
	gTypeDelete = iota // deletes that make room for an entry of another type
	gMkdir
	gUpload
	gSymlink
	gFileTouch
	gDelete
	gDirTouch
	nGroups
)

// deepestFirst marks the groups whose ops run deepest path first.
var deepestFirst = [nGroups]bool{gTypeDelete: true, gDelete: true, gDirTouch: true}

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

// planner holds one merge of a source and a target list. The same merge
// runs to count ops and then to place them, so every decision it makes must
// depend only on the lists, the options and refused.
type planner struct {
	opts     PlanOptions
	src, dst []backends.FileInfo
	i, j     int // next unread entry of src and dst
	srcKept  int // source entries neither excluded nor misplaced
	refused  error
	dry      int // >0: only find out whether a subtree can go; record nothing

	// Counting pass: ops per group, and per depth for deepestFirst groups.
	count  [nGroups]int
	depths [nGroups][]int
	// Filling pass: where the next op of each group (and depth) goes.
	fill      bool
	out       []Op
	next      [nGroups]int
	nextDepth [nGroups][]int
	placed    int

	skipped []Problem
}

func (pl *planner) run() {
	pl.i, pl.j, pl.srcKept = 0, 0, 0
	if !pl.fill {
		pl.count = [nGroups]int{}
		for g := range pl.depths {
			pl.depths[g] = pl.depths[g][:0]
		}
	}
	pl.children("", true, true, gDelete)
}

// startFill sizes the plan from the counts and reports whether it has ops.
func (pl *planner) startFill() bool {
	total := 0
	for _, n := range pl.count {
		total += n
	}
	if total == 0 {
		return false
	}
	pl.out = make([]Op, total)
	pos := 0
	for g := range nGroups {
		if !deepestFirst[g] {
			pl.next[g] = pos
			pos += pl.count[g]
			continue
		}
		nd := pl.depths[g]
		pl.nextDepth[g] = make([]int, len(nd))
		for d := len(nd) - 1; d >= 0; d-- {
			pl.nextDepth[g][d] = pos
			pos += nd[d]
		}
	}
	pl.fill = true
	return true
}

// checkFilled guards the promise that both passes decide alike; a broken
// one would leave zero ops in the plan, which must never reach a target.
func (pl *planner) checkFilled() {
	if pl.placed != len(pl.out) {
		panic(fmt.Sprintf("engine: planner placed %d ops, counted %d", pl.placed, len(pl.out)))
	}
}

func (pl *planner) emit(g int, op Op) {
	if pl.dry > 0 {
		return
	}
	if !pl.fill {
		pl.count[g]++
		if deepestFirst[g] {
			d := strings.Count(op.Path, "/")
			for len(pl.depths[g]) <= d {
				pl.depths[g] = append(pl.depths[g], 0)
			}
			pl.depths[g][d]++
		}
		return
	}
	var at *int
	if deepestFirst[g] {
		at = &pl.nextDepth[g][strings.Count(op.Path, "/")]
	} else {
		at = &pl.next[g]
	}
	pl.out[*at] = op
	*at++
	pl.placed++
}

func (pl *planner) skip(path string, err error) {
	if pl.fill || pl.dry > 0 {
		return
	}
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
// are left alone. Deletes go to group del. allGone reports that every
// target entry inside prefix is deleted (so prefix itself may be); changed
// that a direct child is created, replaced or deleted, which changes the
// mtime of prefix.
func (pl *planner) children(prefix string, srcDir, dstDir bool, del int) (allGone, changed bool) {
	allGone = true
	for {
		hasS := pl.i < len(pl.src) && under(pl.src[pl.i].Path, prefix)
		hasD := pl.j < len(pl.dst) && under(pl.dst[pl.j].Path, prefix)
		if !hasS && !hasD {
			return allGone, changed
		}
		var s, d *backends.FileInfo
		c := 1
		if hasS && hasD {
			c = ComparePaths(pl.src[pl.i].Path, pl.dst[pl.j].Path)
		} else if hasS {
			c = -1
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
		sOut := s != nil && pl.excluded(path, s.IsDir())
		dOut := false
		if d != nil {
			if s != nil && s.IsDir() == d.IsDir() {
				dOut = sOut
			} else {
				dOut = pl.excluded(path, d.IsDir())
			}
		}
		if sOut {
			if s.IsDir() {
				pl.skipSrc(path)
			}
			s = nil
		}
		if dOut {
			allGone = false
			if d.IsDir() {
				pl.skipDst(path)
			}
			if s != nil {
				// Only differing types make one side excluded and not the other.
				pl.skip(path, fmt.Errorf("%w: %s in source, excluded %s on target: left as is",
					ErrTypeConflict, kindOf(s), kindOf(d)))
				if s.IsDir() {
					pl.skipSrc(path)
				}
			}
			continue
		}
		if s != nil && pl.dry == 0 {
			pl.srcKept++
		}
		switch {
		case s == nil && d == nil:
		case s == nil:
			if pl.dropDst(d, del) {
				changed = true
			} else {
				allGone = false
			}
		case d == nil:
			allGone = false // only orphans could be here; they were set aside above
			if pl.create(s, "new", del) {
				changed = true
			}
		default:
			allGone = false
			if pl.update(s, d, del) {
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

// dropDst deletes a target entry the source lacks (mirror mode), or
// archives it (backup mode with versions), a directory only if all it holds
// goes too. It reports whether it did.
func (pl *planner) dropDst(d *backends.FileInfo, del int) bool {
	if pl.archiving() && pl.refused == nil {
		return pl.archive(d)
	}
	if pl.opts.Mode != Mirror || pl.refused != nil {
		if d.IsDir() {
			pl.skipDst(d.Path)
		}
		return false
	}
	if d.IsDir() {
		if gone, _ := pl.children(d.Path, false, true, del); !gone {
			return false
		}
	}
	reason := "extraneous"
	if del == gTypeDelete {
		reason = "type"
	}
	pl.emit(del, Op{Kind: OpDelete, Path: d.Path, Dst: d, Reason: reason})
	return true
}

// create brings over a source entry the target lacks (or has just lost to
// a type change) and reports whether an op was planned for it.
func (pl *planner) create(s *backends.FileInfo, reason string, del int) bool {
	switch kindOf(s) {
	case kindDir:
		pl.emit(gMkdir, Op{Kind: OpMkdir, Path: s.Path, Src: *s, Reason: reason})
		pl.children(s.Path, true, false, del)
		// Creating the directory and its contents sets its mtime to now.
		pl.emit(gDirTouch, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Reason: reason})
	case kindFile:
		pl.emit(gUpload, Op{Kind: OpUpload, Path: s.Path, Src: *s, Reason: reason})
	case kindLink:
		if !pl.opts.Symlinks {
			pl.skip(s.Path, fmt.Errorf("%w (-> %s)", ErrSymlinkUnsupported, s.LinkTarget))
			return false
		}
		pl.emit(gSymlink, Op{Kind: OpSymlink, Path: s.Path, Src: *s, Reason: reason})
	default:
		pl.skip(s.Path, ErrSpecialFile)
		return false
	}
	return true
}

// update reconciles a path both sides hold and reports whether a direct
// change (create, replace, delete) was planned at it.
func (pl *planner) update(s, d *backends.FileInfo, del int) bool {
	ks, kd := kindOf(s), kindOf(d)
	if ks == kd {
		switch ks {
		case kindDir:
			_, changed := pl.children(s.Path, true, true, del)
			reason := pl.metaDiff(s, d)
			if changed && reason == "" {
				reason = "mtime"
			}
			if reason != "" {
				pl.emit(gDirTouch, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Dst: d, Reason: reason})
			}
			return false
		case kindFile:
			kind, reason := pl.compareFiles(s, d)
			switch {
			case reason == "":
				return false
			case kind == OpUpload:
				pl.emit(gUpload, Op{Kind: OpUpload, Path: s.Path, Src: *s, Dst: d, Reason: reason})
				return true
			}
			pl.emit(gFileTouch, Op{Kind: OpSetModTime, Path: s.Path, Src: *s, Dst: d, Reason: reason})
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
			pl.emit(gSymlink, Op{Kind: OpSymlink, Path: s.Path, Src: *s, Dst: d, Reason: "link"})
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
	case pl.refused != nil:
		return leave(fmt.Errorf("%w: %s in source, %s on target: not replaced: %w", ErrTypeConflict, ks, kd, pl.refused))
	}
	if kd == kindDir {
		// Find out first whether all the directory holds can go (excluded
		// entries keep it), then walk it again to plan for real.
		i, j := pl.i, pl.j
		pl.dry++
		gone, _ := pl.children(d.Path, false, true, gTypeDelete)
		pl.dry--
		pl.i, pl.j = i, j
		if !gone {
			// The source entry cannot take its place; what can go still
			// goes, as ordinary deletes of entries the source lacks.
			pl.children(d.Path, false, true, del)
			pl.skip(s.Path, fmt.Errorf("%w: %s in source, directory with excluded entries on target: left as is", ErrTypeConflict, ks))
			return false
		}
		pl.children(d.Path, false, true, gTypeDelete)
	}
	pl.emit(gTypeDelete, Op{Kind: OpDelete, Path: d.Path, Dst: d, Reason: "type"})
	pl.create(s, "type", del)
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
