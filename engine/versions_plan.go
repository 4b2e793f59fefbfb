package engine

import "github.com/ferrysync/ferry/backends"

// The planner's side of backup versions (PlanOptions.Versions).

// archiving reports whether entries the source lacks go to Versions.
func (pl *planner) archiving() bool {
	return pl.opts.Mode == Backup && pl.opts.Versions != ""
}

// excluded reports whether the path is never to be touched: filtered out,
// or the versions folder and what it holds.
func (pl *planner) excluded(path string, isDir bool) bool {
	v := pl.opts.Versions
	if v != "" && (path == v || under(path, v)) {
		return true
	}
	return pl.opts.Filter.excludedSelf(path, isDir)
}

// archive plans moving a target entry the source lacks into the versions
// folder. A directory moves in one rename when all it holds can go; one
// that holds excluded entries stays, and what it holds is archived entry
// by entry. It reports whether the entry itself goes.
func (pl *planner) archive(d *backends.FileInfo) bool {
	if d.IsDir() {
		i, j := pl.i, pl.j
		pl.dry++
		gone, _ := pl.children(d.Path, false, true, gDelete)
		pl.dry--
		pl.i, pl.j = i, j
		if !gone {
			pl.children(d.Path, false, true, gDelete)
			return false
		}
		pl.skipDst(d.Path)
	}
	pl.emit(gDelete, Op{Kind: OpArchive, Path: d.Path, Dst: d, Reason: "extraneous"})
	return true
}
