package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unsafe"

	"github.com/ferrysync/ferry/backends"
)

// pruner sets aside, while a source and a target are merged in path order,
// the entries a plan would not touch: a pair that agrees (same type, a file
// of equal size, mtime and mode, a link to the same target, a directory of
// equal mtime and mode) under a parent that is a placed, not excluded
// directory on both sides. What is left, with the directories leading to
// it, goes to the planner, which then decides exactly as it would over the
// whole trees (makePlan; the property is tested against MakePlan). A no-op
// run leaves nothing, so its memory is the directories in flight.
type pruner struct {
	pl planner
	// srcFiltered says the source entries were already filtered by
	// PlanOptions.Filter, as a scan does: only the versions folder needs a
	// check then.
	srcFiltered bool
	frames      []pruneFrame
	src, dst    []backends.FileInfo // kept, in path order
	pruned      bool                // a source entry was left out

	lastBoth, lastExcl bool // of the entry step decided on last
}

// pruneFrame is a directory on the way to the entries being merged.
type pruneFrame struct {
	path    string
	s, d    backends.FileInfo // what each side holds there, when pending
	pending bool              // left out so far; kept if a descendant is
	both    bool              // its children may be left out
}

func newPruner(opts PlanOptions, srcFiltered bool) *pruner {
	return &pruner{pl: planner{opts: opts}, srcFiltered: srcFiltered}
}

// step decides on the entries at path: s and d are what each side holds
// (nil for nothing); a directory must be whole, other entries need only
// their metadata. It reports whether the caller must keep them, by calling
// keep with whole entries.
func (p *pruner) step(path string, s, d *backends.FileInfo) bool {
	for len(p.frames) > 0 && !under(path, p.frames[len(p.frames)-1].path) {
		p.frames = p.frames[:len(p.frames)-1]
	}
	parent, _ := backends.Split(path)
	if len(p.frames) == 0 {
		p.lastBoth = parent == ""
	} else {
		top := &p.frames[len(p.frames)-1]
		p.lastBoth = top.both && top.path == parent
	}
	p.lastExcl = s != nil && p.excluded(path, s.IsDir())
	if p.lastBoth && !p.lastExcl && s != nil && d != nil && p.same(s, d) {
		p.pruned = true
		if s.IsDir() {
			p.frames = append(p.frames, pruneFrame{path: s.Path, s: *s, d: *d, pending: true, both: true})
		}
		return false
	}
	for k := range p.frames {
		if f := &p.frames[k]; f.pending {
			p.src = append(p.src, f.s)
			p.dst = append(p.dst, f.d)
			f.pending = false
		}
	}
	return true
}

// keep adds the whole entries step asked for.
func (p *pruner) keep(s, d *backends.FileInfo) {
	p.add(s, d)
	sDir, dDir := s != nil && s.IsDir(), d != nil && d.IsDir()
	if sDir || dDir {
		path := pathOf(s, d)
		p.frames = append(p.frames, pruneFrame{path: path, both: p.lastBoth && !p.lastExcl && sDir && dDir})
	}
}

func (p *pruner) add(s, d *backends.FileInfo) {
	if s != nil {
		p.src = append(p.src, *s)
	}
	if d != nil {
		p.dst = append(p.dst, *d)
	}
}

func (p *pruner) excluded(path string, isDir bool) bool {
	if !p.srcFiltered {
		return p.pl.excluded(path, isDir)
	}
	v := p.pl.opts.Versions
	return v != "" && (path == v || under(path, v))
}

// same reports whether the planner leaves a pair alone (see update).
func (p *pruner) same(s, d *backends.FileInfo) bool {
	k := kindOf(s)
	if k != kindOf(d) {
		return false
	}
	switch k {
	case kindFile:
		if p.pl.opts.Checksum {
			return false // equal sizes are hashed first
		}
		_, why := p.pl.compareFiles(s, d)
		return why == ""
	case kindDir:
		return p.pl.metaDiff(s, d) == ""
	case kindLink:
		return s.LinkTarget == d.LinkTarget
	}
	return false
}

// plan plans from what was kept.
func (p *pruner) plan(opts PlanOptions) Plan {
	return makePlan(p.src, p.dst, opts, p.pruned)
}

// targetStream hands out a target's entries one at a time in ComparePaths
// order: the state's records, or a listing.
type targetStream interface {
	// next moves to the next entry and reports whether there is one.
	next() (bool, error)
	// appendPath appends the current entry's path to b.
	appendPath(b []byte) []byte
	// meta returns the current entry without its path (and hash).
	meta() (backends.FileInfo, error)
	// info returns the whole current entry.
	info() (backends.FileInfo, error)
	// incomplete reports, once the stream has ended, that entries may be
	// missing from it (a directory could not be listed).
	incomplete() bool
}

// errTargetOrder says a target stream repeated a path or went back.
var errTargetOrder = errors.New("not in path order")

// targetError marks a failure of the target stream, as against the scan.
type targetError struct{ err error }

func (e *targetError) Error() string { return e.err.Error() }
func (e *targetError) Unwrap() error { return e.err }

// streamed is what planFromSource found.
type streamed struct {
	plan     Plan
	problems []Problem // of the scan, special files included
	files    int       // regular files in the source, and their bytes
	bytes    int64
	entries  int // source entries
	kept     int // entries of both sides that reached the planner
}

// planFromSource walks the local source root and merges it, entry by
// entry, with the target stream tgt, keeping only what differs, then plans
// (opts.Incomplete is set as well when the scan had problems). The plan is
// the one MakePlan makes from Scan's entries and the whole target. Errors
// are those of Scan (an unusable root, cancellation) and of the stream
// (a *targetError).
func planFromSource(ctx context.Context, root string, f *Filter, log *slog.Logger, tgt targetStream, opts PlanOptions) (streamed, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var out streamed
	p := newPruner(opts, f == opts.Filter)
	var sPath, dPath, prev []byte
	var sDir string
	var sE *scanEntry
	// next moves the target on and reads its path. The merge is only
	// right over a target in strict path order: a path repeated or out
	// of place would be taken for one the source lacks, and deleted.
	next := func() (bool, error) {
		ok, err := tgt.next()
		if err != nil || !ok {
			if err != nil {
				err = &targetError{err}
			}
			return false, err
		}
		prev, dPath = dPath, tgt.appendPath(prev[:0])
		if len(prev) > 0 && ComparePaths(bytesString(prev), bytesString(dPath)) >= 0 {
			return false, &targetError{fmt.Errorf("target entry %q after %q: %w", dPath, prev, errTargetOrder)}
		}
		return true, nil
	}
	dOK, err := next()
	if err != nil {
		return out, err
	}
	// emitTarget handles target entries that sort before the source's next
	// entry (all that are left when sLimit is nil).
	emitTarget := func(sLimit []byte) error {
		for dOK && (sLimit == nil || ComparePaths(bytesString(dPath), bytesString(sLimit)) < 0) {
			path := bytesString(dPath)
			d, err := targetEntry(tgt, path)
			if err != nil {
				return err
			}
			if p.step(path, nil, &d) {
				if d, err = tgt.info(); err != nil {
					return err
				}
				p.keep(nil, &d)
			}
			if dOK, err = next(); err != nil {
				return err
			}
		}
		return nil
	}
	out.problems, err = walkSource(ctx, root, f, log, opts.source, func(dir string, e *scanEntry) (err error) {
		out.entries++
		if e.mode.IsRegular() {
			out.files++
			out.bytes += e.size
		}
		sDir = dir
		sE = e
		sPath = append(sPath[:0], dir...)
		if dir != "" {
			sPath = append(sPath, '/')
		}
		sPath = append(sPath, e.name...)
		if err = emitTarget(sPath); err != nil {
			return err
		}
		path := bytesString(sPath)
		s := sE.info("")
		if s.IsDir() {
			s.Path = strings.Clone(path)
		}
		var d *backends.FileInfo
		if dOK && string(dPath) == path {
			var dm backends.FileInfo
			if dm, err = targetEntry(tgt, path); err != nil {
				return err
			}
			d = &dm
		}
		if p.step(path, &s, d) {
			if s.Path == "" {
				s.Path = backends.Join(sDir, sE.name)
			}
			if d != nil {
				var full backends.FileInfo
				if full, err = tgt.info(); err != nil {
					return err
				}
				d = &full
			}
			p.keep(&s, d)
		}
		if d != nil {
			dOK, err = next()
		}
		return err
	})
	if err == nil {
		err = emitTarget(nil)
	}
	if err != nil {
		return streamed{}, err
	}
	opts.Incomplete = opts.Incomplete || Incomplete(out.problems) || tgt.incomplete()
	out.plan = p.plan(opts)
	out.kept = len(p.src) + len(p.dst)
	log.Debug("planned while scanning", "source", out.entries, "kept-source", len(p.src), "kept-target", len(p.dst))
	return out, nil
}

// targetEntry returns the stream's current entry for a pruner step: its
// metadata, and the path too for a directory.
func targetEntry(tgt targetStream, path string) (backends.FileInfo, error) {
	d, err := tgt.meta()
	if err == nil && d.IsDir() {
		d.Path = strings.Clone(path)
	}
	return d, err
}

// bytesString views b as a string without copying; the string must not be
// kept past the next change of b.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
