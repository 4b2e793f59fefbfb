package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// syncPath brings one path of the target to the source's current state: a
// file is compared and copied, a directory's subtree is compared as a
// whole, and a path the source no longer has is deleted (mirror mode);
// with waitGone set, such a path is first given DeleteDelay (errGoneWait)
// to come back.
func (r *runner) syncPath(ctx context.Context, p string, waitGone bool) error {
	local := filepath.Join(r.j.source, filepath.FromSlash(p))
	fi, err := os.Lstat(local)
	switch {
	case (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) && waitGone:
		// It was there when process looked, and went since: an editor
		// between renaming the old version away and writing the new one.
		// Deleting now would leave the target without the file until the
		// next change lands.
		return errGoneWait
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return r.removePath(ctx, p)
	case err != nil:
		return backends.Permanent(fmt.Errorf("stat source %s: %w", local, err))
	}
	if r.j.filter.Excluded(p, fi.IsDir()) {
		return nil
	}
	src := []backends.FileInfo{entryOf(p, fi)}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if src[0].LinkTarget, err = os.Readlink(local); err != nil {
			return backends.Permanent(fmt.Errorf("readlink %s: %w", local, err))
		}
	}
	var scanProblems []Problem
	if fi.IsDir() {
		sub, problems, err := Scan(ctx, local, nil, r.log)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return backends.Permanent(fmt.Errorf("scan source %s: %w", local, err))
		}
		for _, pr := range problems {
			pr.Path = p + "/" + pr.Path
			scanProblems = append(scanProblems, pr)
		}
		for _, e := range sub {
			e.Path = p + "/" + e.Path
			if !r.j.filter.Excluded(e.Path, e.IsDir()) {
				src = append(src, e)
			}
		}
	}
	dst, partials, listProblems, err := r.listPath(ctx, p)
	if err != nil {
		return err
	}
	if err := r.ensureDir(ctx, parentOf(p)); err != nil {
		return err
	}
	// The planner walks down from the root: give it p's ancestors, the
	// same on both sides so that they need nothing (ensureDir made them).
	anc := ancestors(p)
	src = append(anc, src...)
	dst = append(slices.Clone(anc), dst...)
	popts := r.popts
	popts.Incomplete = Incomplete(scanProblems) || len(listProblems) > 0
	plan := MakePlan(src, dst, popts)
	moved, err := r.moveInstead(ctx, &plan, waitGone)
	if err != nil {
		return err
	}
	if err := r.exec(ctx, plan, partials); err != nil {
		return err
	}
	for _, m := range moved {
		if err := r.syncPath(ctx, m, false); err != nil {
			return err
		}
	}
	return nil
}

// moveInstead replaces uploads and mkdirs of entries that were moved in the
// source (whose own hints may not have come yet) by moves on the target. It
// returns the directories moved, whose subtrees still need a comparison;
// their ops are dropped from the plan.
//
// A move takes the old path away from the target, so with waitGone set it
// is not done at once: errGoneWait gives the old path DeleteDelay to come
// back, as a delete would get. An editor that renames the file away, writes
// the new version and deletes the old one must not leave the target
// without the file in between.
func (r *runner) moveInstead(ctx context.Context, plan *Plan, waitGone bool) (dirs []string, err error) {
	if r.j.opts.Mode != Mirror {
		return nil, nil
	}
	ops := plan.Ops[:0:0]
	var movedDirs []string
	for _, op := range plan.Ops {
		skip := false
		for _, d := range movedDirs {
			if covers(d, op.Path) {
				skip = true
			}
		}
		if skip {
			continue
		}
		if (op.Kind == OpUpload || op.Kind == OpMkdir) && op.Dst == nil {
			if from, old, ok := r.j.movedFrom(&op.Src); ok {
				if waitGone {
					return nil, errGoneWait
				}
				done, err := r.move(ctx, &item{kind: itemRename, path: op.Path, from: from, expect: old})
				if err != nil {
					return nil, err
				}
				if done {
					if op.Kind == OpMkdir {
						movedDirs = append(movedDirs, op.Path)
					}
					continue
				}
			}
		}
		ops = append(ops, op)
	}
	plan.Ops = ops
	return movedDirs, nil
}

// ancestors returns placeholder directory entries for the directories above
// p, parents first.
func ancestors(p string) []backends.FileInfo {
	var out []backends.FileInfo
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, backends.FileInfo{Path: p[:i], Mode: fs.ModeDir | 0o755})
		}
	}
	return out
}

// listPath returns what the target holds at p and, for a directory, under
// it, sorted; a missing path gives nothing. Directories that cannot be
// listed are problems; a failure at p itself is an error.
func (r *runner) listPath(ctx context.Context, p string) (entries, partials []backends.FileInfo, problems []Problem, err error) {
	st, err := r.target.Stat(ctx, p)
	switch {
	case errors.Is(err, backends.ErrNotExist):
		return nil, nil, nil, nil
	case err != nil:
		return nil, nil, nil, fmt.Errorf("stat target %s: %w", p, err)
	}
	st.Path = p
	entries = []backends.FileInfo{st}
	if !st.IsDir() {
		return entries, nil, nil, nil
	}
	dirs := []string{p}
	for len(dirs) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, err
		}
		d := dirs[len(dirs)-1]
		dirs = dirs[:len(dirs)-1]
		list, err := r.target.List(ctx, d)
		if err != nil {
			if d == p || errors.Is(err, backends.ErrUnreachable) {
				return nil, nil, nil, fmt.Errorf("list target %s: %w", d, err)
			}
			problems = append(problems, Problem{Path: d, Err: err})
			continue
		}
		for _, e := range list {
			if backends.IsPartialName(e.Path) {
				partials = append(partials, e)
				continue
			}
			entries = append(entries, e)
			if e.IsDir() && !r.j.filter.Excluded(e.Path, true) {
				dirs = append(dirs, e.Path)
			}
		}
	}
	SortEntries(entries)
	SortEntries(partials)
	return entries, partials, problems, nil
}

// removePath deletes p and everything under it from the target, in mirror
// mode, leaving excluded entries (and the directories holding them) alone.
// It refuses when the source root itself is gone: a missing or unmounted
// source must never empty the target.
func (r *runner) removePath(ctx context.Context, p string) error {
	if r.j.opts.Mode != Mirror {
		return nil
	}
	if err := checkSourceRoot(r.j.source); err != nil {
		return backends.Permanent(fmt.Errorf("not deleting %s: %w", p, err))
	}
	dst, partials, problems, err := r.listPath(ctx, p)
	if err != nil || len(dst) == 0 {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("not deleting %s: %w", p, problems[0])
	}
	var keep []string // directories holding excluded entries
	var ops []Op
	for i := range dst {
		e := &dst[i]
		if r.j.filter.Excluded(e.Path, e.IsDir()) {
			keep = append(keep, e.Path)
			continue
		}
		ops = append(ops, Op{Kind: OpDelete, Path: e.Path, Dst: e, Reason: "extraneous"})
	}
	ops = slices.DeleteFunc(ops, func(op Op) bool {
		for _, k := range keep {
			if covers(op.Path, k) {
				return true
			}
		}
		return false
	})
	// Deepest first, so a directory goes after its contents.
	slices.SortStableFunc(ops, func(a, b Op) int {
		return cmp.Compare(strings.Count(b.Path, "/"), strings.Count(a.Path, "/"))
	})
	r.forget(p)
	// Partials under p lie in a directory being deleted: Execute removes
	// them whatever their age.
	return r.exec(ctx, Plan{Ops: ops}, partials)
}

// rename moves it.from to it.path on the target when the target still holds
// what the source held at it.from, then compares it.path as syncPath does.
// When the move cannot be done (the old path is missing or different on the
// target, or the backend cannot rename) both paths are synced plainly.
func (r *runner) rename(ctx context.Context, it *item) error {
	moved, err := r.move(ctx, it)
	if err != nil {
		return err
	}
	if !moved {
		if err := r.syncPath(ctx, it.from, false); err != nil {
			return err
		}
	}
	return r.syncPath(ctx, it.path, false)
}

func (r *runner) move(ctx context.Context, it *item) (bool, error) {
	local := filepath.Join(r.j.source, filepath.FromSlash(it.path))
	fi, err := os.Lstat(local)
	if err != nil || !r.j.sourceMissing(it.from) {
		return false, nil
	}
	old, err := r.target.Stat(ctx, it.from)
	switch {
	case errors.Is(err, backends.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("stat target %s: %w", it.from, err)
	}
	want := it.expect
	switch {
	case want.IsRegular() && old.IsRegular() && fi.Mode().IsRegular():
		if old.Size != want.Size || !r.popts.sameTime(old.ModTime, want.ModTime) {
			return false, nil
		}
	case want.IsDir() && old.IsDir() && fi.IsDir():
	default:
		return false, nil
	}
	cur, err := r.target.Stat(ctx, it.path)
	switch {
	case errors.Is(err, backends.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("stat target %s: %w", it.path, err)
	case cur.IsDir():
		return false, nil // a directory in the way: let the plan sort it out
	}
	if err := r.ensureDir(ctx, parentOf(it.path)); err != nil {
		return false, err
	}
	r.begin(it.from, it.path)
	w := r.writer()
	err = w.Rename(ctx, it.from, it.path)
	r.recorded(w)
	if err != nil {
		if backends.IsUnsupported(err) {
			return false, nil
		}
		return false, fmt.Errorf("rename %s to %s: %w", it.from, it.path, err)
	}
	r.forget(it.from)
	r.mu.Lock()
	r.st.Renamed++
	r.mu.Unlock()
	r.log.Debug("moved on the target", "from", it.from, "to", it.path)
	return true, nil
}

// sameTime compares mtimes within the modify window; a time without a
// fraction of a second (targets that keep whole seconds) matches any time
// in that second.
func (o PlanOptions) sameTime(a, b time.Time) bool {
	d := a.Sub(b)
	if d < 0 {
		d = -d
	}
	if d <= o.ModifyWindow {
		return true
	}
	return (a.Nanosecond() == 0 || b.Nanosecond() == 0) && a.Unix() == b.Unix()
}

func parentOf(p string) string {
	d, _ := backends.Split(p)
	return d
}

// sourceMissing reports whether p is gone from the source.
func (j *Job) sourceMissing(p string) bool {
	_, err := os.Lstat(filepath.Join(j.source, filepath.FromSlash(p)))
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
