package engine

import (
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// This file holds an in-memory target that plans are applied to, and the
// invariants every plan must keep. Both the table test and the fuzz test
// check them, so each table row is also checked for more than its listed ops.

// modelNow is the mtime a directory gets when an entry inside it is created
// or removed, so a directory whose mtime fix ran too early shows up.
var modelNow = time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)

type model map[string]backends.FileInfo

func newModel(dst []backends.FileInfo) model {
	m := make(model, len(dst))
	for _, e := range dst {
		m[e.Path] = e
	}
	return m
}

func (m model) hasChildren(dir string) bool {
	for p := range m {
		if under(p, dir) {
			return true
		}
	}
	return false
}

// touchParent is what a real filesystem does to a directory whose entries change.
func (m model) touchParent(p string) {
	parent, _ := backends.Split(p)
	if parent == "" {
		return
	}
	e := m[parent]
	e.ModTime = modelNow
	m[parent] = e
}

// apply runs one op the way a backend would, refusing what a backend would
// refuse (a missing parent, a non-empty directory, a file over a directory).
func (m model) apply(op Op) error {
	parent, _ := backends.Split(op.Path)
	if parent != "" {
		if pe, ok := m[parent]; !ok || !pe.IsDir() {
			return fmt.Errorf("%v: parent %q is not a directory on the target", op, parent)
		}
	}
	cur, exists := m[op.Path]
	switch op.Kind {
	case OpMkdir:
		if exists {
			return fmt.Errorf("%v: path exists as %v", op, cur.Mode)
		}
		if !op.Src.IsDir() {
			return fmt.Errorf("%v: source is not a directory", op)
		}
		e := op.Src
		e.ModTime = modelNow
		m[op.Path] = e
		m.touchParent(op.Path)
	case OpUpload, OpSymlink:
		if exists && cur.IsDir() {
			return fmt.Errorf("%v: path is a directory", op)
		}
		if op.Kind == OpUpload && !op.Src.IsRegular() || op.Kind == OpSymlink && !op.Src.IsSymlink() {
			return fmt.Errorf("%v: source has type %v", op, op.Src.Mode.Type())
		}
		m[op.Path] = op.Src
		m.touchParent(op.Path)
	case OpSetModTime:
		if !exists {
			return fmt.Errorf("%v: path does not exist", op)
		}
		if cur.Mode.Type() != op.Src.Mode.Type() {
			return fmt.Errorf("%v: target type %v, source type %v", op, cur.Mode.Type(), op.Src.Mode.Type())
		}
		cur.ModTime = op.Src.ModTime
		cur.Mode = cur.Mode.Type() | op.Src.Mode.Perm()
		m[op.Path] = cur
	case OpArchive:
		// A rename moves the entry with all it holds.
		if !exists {
			return fmt.Errorf("%v: path does not exist", op)
		}
		for p := range m {
			if under(p, op.Path) {
				delete(m, p)
			}
		}
		delete(m, op.Path)
		m.touchParent(op.Path)
	case OpDelete:
		if !exists {
			return fmt.Errorf("%v: path does not exist", op)
		}
		if cur.IsDir() && m.hasChildren(op.Path) {
			return fmt.Errorf("%v: directory not empty", op)
		}
		delete(m, op.Path)
		m.touchParent(op.Path)
	default:
		return fmt.Errorf("%v: unknown kind", op)
	}
	return nil
}

func (m model) list() []backends.FileInfo {
	out := make([]backends.FileInfo, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	SortEntries(out)
	return out
}

// opGroup numbers the documented groups of a plan, in their order.
func opGroup(op Op) int {
	switch op.Kind {
	case OpDelete:
		if op.Reason == "type" {
			return 0
		}
		return 5
	case OpArchive:
		return 5
	case OpMkdir:
		return 1
	case OpUpload:
		return 2
	case OpSymlink:
		return 3
	case OpSetModTime:
		if op.Src.IsDir() {
			return 6
		}
		return 4
	}
	return -1
}

func depth(p string) int { return strings.Count(p, "/") }

// sameEntry says whether the target entry t is what the planner must leave
// for source entry s: same type, and equal as the options compare.
func sameEntry(s, t backends.FileInfo, opts PlanOptions) error {
	if s.Mode.Type() != t.Mode.Type() {
		return fmt.Errorf("type %v, want %v", t.Mode.Type(), s.Mode.Type())
	}
	pl := planner{opts: opts}
	switch {
	case s.IsSymlink():
		if s.LinkTarget != t.LinkTarget {
			return fmt.Errorf("link -> %q, want -> %q", t.LinkTarget, s.LinkTarget)
		}
		return nil
	case s.IsRegular():
		if s.Size != t.Size {
			return fmt.Errorf("size %d, want %d", t.Size, s.Size)
		}
		if opts.Checksum && s.Hash != "" && t.Hash != "" && s.Hash != t.Hash {
			return fmt.Errorf("hash %s, want %s", t.Hash, s.Hash)
		}
	}
	if !pl.sameTime(s.ModTime, t.ModTime) {
		return fmt.Errorf("mtime %v, want %v", t.ModTime, s.ModTime)
	}
	if pl.modeDiffers(&s, &t) {
		return fmt.Errorf("mode %v, want %v", t.Mode, s.Mode)
	}
	return nil
}

// checkPlan applies plan to a model of dst and returns every broken
// invariant: order of groups and depths, excluded paths touched, deletes
// where none may be, a final target that is not the source (mirror) or does
// not contain it (backup, refused deletes), and a second plan that is not
// empty.
func checkPlan(src, dst []backends.FileInfo, opts PlanOptions, plan Plan) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	srcOf, dstOf := newModel(src), newModel(dst)
	f := opts.Filter
	inVersions := func(p string) bool {
		return opts.Versions != "" && (p == opts.Versions || under(p, opts.Versions))
	}
	archiving := opts.Mode == Backup && opts.Versions != ""
	archived := map[string]bool{}

	skippedUnder := func(p string) bool {
		for _, s := range plan.Skipped {
			if p == s.Path || under(p, s.Path) {
				return true
			}
		}
		return false
	}

	// Order and touch rules, op by op.
	lastGroup, lastDepth, deletes := -1, 0, 0
	for k, op := range plan.Ops {
		g := opGroup(op)
		if g < lastGroup {
			bad("op %d %v (group %d) after group %d", k, op, g, lastGroup)
		}
		d := depth(op.Path)
		if g == lastGroup && (g == 0 || g == 5 || g == 6) && d > lastDepth {
			bad("op %d %v: depth %d after depth %d, want deepest first", k, op, d, lastDepth)
		}
		lastGroup, lastDepth = g, d
		removes := op.Kind == OpDelete || op.Kind == OpArchive
		switch op.Kind {
		case OpDelete:
			deletes++
		case OpArchive:
			archived[op.Path] = true
			if !archiving {
				bad("%v planned with mode=%v versions=%q", op, opts.Mode, opts.Versions)
			}
		}
		if inVersions(op.Path) {
			bad("%v touches the versions folder %q", op, opts.Versions)
		}
		if e, ok := dstOf[op.Path]; ok && f.Excluded(op.Path, e.IsDir()) {
			bad("%v touches target entry %q that is excluded", op, op.Path)
		}
		if !removes && f.Excluded(op.Path, op.Src.IsDir()) {
			bad("%v brings excluded source entry %q", op, op.Path)
		}
		if !removes {
			if s, ok := srcOf[op.Path]; !ok || s.Mode.Type() != op.Src.Mode.Type() {
				bad("%v: source has no such entry", op)
			}
		}
	}
	if deletes > 0 && (opts.Incomplete || opts.Mode == Backup || plan.DeletesRefused != nil) {
		bad("%d deletes planned with Incomplete=%v mode=%v refused=%v", deletes, opts.Incomplete, opts.Mode, plan.DeletesRefused)
	}
	if len(archived) > 0 && (opts.Incomplete || plan.DeletesRefused != nil) {
		bad("%d archives planned with Incomplete=%v refused=%v", len(archived), opts.Incomplete, plan.DeletesRefused)
	}
	if opts.MaxDelete >= 0 && deletes+len(archived) > opts.MaxDelete {
		bad("%d deletes and %d archives planned, MaxDelete %d", deletes, len(archived), opts.MaxDelete)
	}

	m := newModel(dst)
	for _, op := range plan.Ops {
		if err := m.apply(op); err != nil {
			bad("apply: %w", err)
			return errs
		}
	}

	// Every source entry the plan did not skip is on the target, equal.
	for _, s := range src {
		if s.Path == "" { // the root is not the planner's to fix
			continue
		}
		if f.Excluded(s.Path, s.IsDir()) || skippedUnder(s.Path) || inVersions(s.Path) {
			continue
		}
		t, ok := m[s.Path]
		if !ok {
			bad("after the plan %q is missing from the target", s.Path)
			continue
		}
		if err := sameEntry(s, t, opts); err != nil {
			bad("after the plan %q differs: %v", s.Path, err)
		}
	}
	// Nothing is lost without a delete: what left the target was archived,
	// itself or with a directory that held it.
	isArchived := func(p string) bool {
		for a := range archived {
			if p == a || under(p, a) {
				return true
			}
		}
		return false
	}
	if deletes == 0 {
		for _, d := range dst {
			if _, ok := m[d.Path]; !ok && !isArchived(d.Path) {
				bad("%q vanished from the target though no delete or archive was planned", d.Path)
			}
		}
	}
	for _, d := range dst {
		if inVersions(d.Path) {
			if _, ok := m[d.Path]; !ok {
				bad("%q in the versions folder vanished", d.Path)
			}
		}
	}
	// Mirror, and backup with versions: nothing else is left, but for
	// excluded entries and the directories that hold them.
	if (opts.Mode == Mirror || archiving) && plan.DeletesRefused == nil {
		for p, t := range m {
			if _, ok := srcOf[p]; ok || f.Excluded(p, t.IsDir()) || skippedUnder(p) || inVersions(p) {
				continue
			}
			if t.IsDir() && (holdsExcluded(m, p, f) || opts.Versions != "" && under(opts.Versions, p)) {
				continue
			}
			bad("after the plan the target still holds %q, which the source lacks", p)
		}
	}
	if len(errs) == 0 && plan.DeletesRefused == nil {
		again := MakePlan(src, m.list(), opts)
		if len(again.Ops) > 0 {
			bad("planning again on the result is not a no-op: %v", again.Ops)
		}
	}
	return errs
}

func holdsExcluded(m model, dir string, f *Filter) bool {
	for p, e := range m {
		if under(p, dir) && f.Excluded(p, e.IsDir()) {
			return true
		}
	}
	return false
}

// Entry builders for tests.

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func file(path string, size int64, mtime int) backends.FileInfo {
	return backends.FileInfo{Path: path, Size: size, ModTime: at(mtime), Mode: 0o644}
}

func dir(path string, mtime int) backends.FileInfo {
	return backends.FileInfo{Path: path, ModTime: at(mtime), Mode: fs.ModeDir | 0o755}
}

func link(path, target string) backends.FileInfo {
	return backends.FileInfo{Path: path, ModTime: at(0), Mode: fs.ModeSymlink | 0o777,
		LinkTarget: target, Size: int64(len(target))}
}

func special(path string) backends.FileInfo {
	return backends.FileInfo{Path: path, ModTime: at(0), Mode: fs.ModeNamedPipe | 0o644}
}

func hashed(fi backends.FileInfo, h string) backends.FileInfo { fi.Hash = h; return fi }

func perm(fi backends.FileInfo, p fs.FileMode) backends.FileInfo {
	fi.Mode = fi.Mode.Type() | p
	return fi
}

func mtimeAt(fi backends.FileInfo, t time.Time) backends.FileInfo { fi.ModTime = t; return fi }
