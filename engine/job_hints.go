package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/watch"
)

// handle turns one batch of watcher hints into queued changes for every
// target. Each hinted path is looked at (a hint is not a verdict); a path
// that vanished while another with the same content appeared in the same
// batch becomes a rename; a rescan hint becomes a full compare.
func (j *Job) handle(ctx context.Context, batch []watch.Hint) {
	var paths []string
	for _, h := range batch {
		if !h.Rescan {
			paths = append(paths, h.Path)
			continue
		}
		j.log.Info("rescanning", "path", h.Path)
		if h.Path == "" {
			j.bump()
			scan, err := j.scanAll(ctx)
			if err != nil {
				if ctx.Err() == nil {
					j.log.Error("rescan of the source failed", "err", err)
				}
				return
			}
			j.push(item{kind: itemFull, scan: scan})
			return
		}
		j.push(item{kind: itemFull, path: h.Path})
	}
	if len(paths) == 0 {
		return
	}
	j.bump()
	slices.SortFunc(paths, ComparePaths)
	changes := make([]seen, 0, len(paths))
	for _, p := range paths {
		c := seen{path: p}
		fi, err := os.Lstat(filepath.Join(j.source, filepath.FromSlash(p)))
		switch {
		case err == nil:
			e := entryOf(p, fi)
			c.now = &e
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		default:
			// Unreadable: the target's worker will report it.
			c.now = &backends.FileInfo{Path: p}
		}
		changes = append(changes, c)
	}

	// A path that appeared with the size and mtime of a known path that is
	// gone now is that path moved. The old path's own hint may come in this
	// batch or a later one, so the source is asked whether it is gone.
	renames := map[string]string{} // new path -> old path
	expect := map[string]backends.FileInfo{}
	j.mu.Lock()
	for p, m := range j.moves {
		if time.Since(m.at) > time.Minute {
			delete(j.moves, p)
		}
	}
	if j.opts.Mode == Mirror {
		for _, c := range changes {
			if c.now == nil {
				continue
			}
			if o, ok := j.entryLocked(c.path); ok && o.sameKeyAs(c.now) {
				continue // unchanged, or changed in place
			}
			k, ok := keyOf(c.now)
			if !ok {
				continue
			}
			// None, or ambiguous: two files of one size and mtime could
			// be swapped, and a move cannot be checked by content.
			from, ok := j.uniqueLocked(k)
			if !ok {
				continue
			}
			if from == c.path || covers(from, c.path) || covers(c.path, from) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(j.source, filepath.FromSlash(from))); !errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if k.isDir() && !j.sameChildrenLocked(from, c.path) {
				continue
			}
			renames[c.path] = from
			old := j.infoLocked(from)
			expect[c.path] = old
			j.moves[c.path] = recentMove{from: from, old: old, at: time.Now()}
			j.moveIndexLocked(from, c.path)
		}
	}
	for _, c := range changes {
		if c.now == nil {
			j.dropIndexLocked(c.path)
		} else if c.now.Mode != 0 || c.now.ModTime != (time.Time{}) {
			j.setIndexLocked(*c.now)
		}
	}
	j.mu.Unlock()

	for n, o := range renames {
		j.log.Debug("rename seen", "from", o, "to", n)
		j.push(item{kind: itemRename, path: n, from: o, expect: expect[n]})
	}
	for _, c := range changes {
		if _, ok := renames[c.path]; ok {
			continue
		}
		j.push(item{kind: itemPath, path: c.path})
	}
}

// recentMove is a move seen in the source, kept for a minute so that a
// comparison of the new path's parent can do the move before the move's own
// item gets its turn.
type recentMove struct {
	from string
	old  backends.FileInfo
	at   time.Time
}

// fileKey is what a move keeps: a file's size and mtime, a directory's
// mtime with size -1 (no file has it), which keeps the key two words.
type fileKey struct {
	size  int64
	mtime int64
}

func (k fileKey) isDir() bool { return k.size < 0 }

func keyOf(e *backends.FileInfo) (fileKey, bool) {
	switch {
	case e.IsRegular():
		return fileKey{e.Size, e.ModTime.UnixNano()}, true
	case e.IsDir():
		return fileKey{-1, e.ModTime.UnixNano()}, true
	}
	return fileKey{}, false
}

func sameKey(a, b *backends.FileInfo) bool {
	ka, oka := keyOf(a)
	kb, okb := keyOf(b)
	return oka && okb && ka == kb
}

// keyRef counts the source entries with one fileKey and names one of them
// (its name shares the index's string). Only a count of one
// with a known name makes a rename candidate; the name is forgotten when
// that entry goes while others stay, which costs a rename seen as a copy at
// worst, and keeps byKey one small entry per key.
type keyRef struct {
	d    *dirEntries
	name string
	n    int32
}

// dirEntries holds one source directory's entries by name. The index keeps
// the source per directory so that a million files cost a name and a few
// numbers each, not a full path and a FileInfo: the directory's path is
// kept once, here and as the key of Job.dirs.
type dirEntries struct {
	path string
	ents map[string]idxEntry
}

// idxEntry is what rename detection and the "unchanged" check need of a
// source entry.
type idxEntry struct {
	size  int64
	mtime int64 // UnixNano
	mode  fs.FileMode
}

func (e idxEntry) key() (fileKey, bool) {
	switch {
	case e.mode.IsRegular():
		return fileKey{e.size, e.mtime}, true
	case e.mode.IsDir():
		return fileKey{-1, e.mtime}, true
	}
	return fileKey{}, false
}

func (e idxEntry) info(p string) backends.FileInfo {
	return backends.FileInfo{Path: p, Size: e.size, ModTime: time.Unix(0, e.mtime), Mode: e.mode}
}

// sameKeyAs reports whether e and f would be taken for the same content.
func (e idxEntry) sameKeyAs(f *backends.FileInfo) bool {
	ka, oka := e.key()
	kb, okb := keyOf(f)
	return oka && okb && ka == kb
}

// splitIndexPath splits p at its last slash; the root's entries have dir "".
func splitIndexPath(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

func joinIndexPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// resetIndexLocked empties the index, sized for about n entries; j.mu must
// be held.
func (j *Job) resetIndexLocked(n int) {
	j.dirs = make(map[string]*dirEntries)
	j.byKey = make(map[fileKey]keyRef, n)
}

// entryLocked returns the indexed entry at p; j.mu must be held.
func (j *Job) entryLocked(p string) (idxEntry, bool) {
	dir, name := splitIndexPath(p)
	d := j.dirs[dir]
	if d == nil {
		return idxEntry{}, false
	}
	e, ok := d.ents[name]
	return e, ok
}

// infoLocked returns the indexed entry at p as a FileInfo, zero when p is
// not indexed; j.mu must be held.
func (j *Job) infoLocked(p string) backends.FileInfo {
	if e, ok := j.entryLocked(p); ok {
		return e.info(p)
	}
	return backends.FileInfo{}
}

// uniqueLocked returns the one indexed path with key k; j.mu must be held.
func (j *Job) uniqueLocked(k fileKey) (string, bool) {
	r, ok := j.byKey[k]
	if !ok || r.n != 1 || r.d == nil {
		return "", false
	}
	// r.d may be a directory dropped since: the lookup goes by path.
	p := joinIndexPath(r.d.path, r.name)
	if e, ok := j.entryLocked(p); !ok {
		return "", false
	} else if ek, ok := e.key(); !ok || ek != k {
		return "", false
	}
	return p, true
}

// setIndexLocked records a source entry; j.mu must be held.
func (j *Job) setIndexLocked(e backends.FileInfo) {
	dir, name := splitIndexPath(e.Path)
	d := j.dirs[dir]
	if d == nil {
		// Copies, so that the index keeps no scan's paths alive.
		d = &dirEntries{path: strings.Clone(dir), ents: make(map[string]idxEntry)}
		j.dirs[d.path] = d
	}
	if o, ok := d.ents[name]; ok {
		j.unkeyLocked(d.path, name, o)
	}
	// A map update stores the key given, so the name is copied even when
	// it is there already.
	name = strings.Clone(name)
	ne := idxEntry{size: e.Size, mtime: e.ModTime.UnixNano(), mode: e.Mode}
	d.ents[name] = ne
	if k, ok := ne.key(); ok {
		r := j.byKey[k]
		if r.n == 0 {
			r.d, r.name = d, name
		}
		r.n++
		j.byKey[k] = r
	}
}

func (j *Job) unkeyLocked(dir, name string, e idxEntry) {
	k, ok := e.key()
	if !ok {
		return
	}
	r, ok := j.byKey[k]
	if !ok {
		return
	}
	r.n--
	switch {
	case r.n <= 0:
		delete(j.byKey, k)
		return
	case r.d != nil && r.d.path == dir && r.name == name:
		r.d, r.name = nil, ""
	}
	j.byKey[k] = r
}

// dropIndexLocked forgets p and, for a directory, everything under it.
func (j *Job) dropIndexLocked(p string) {
	dir, name := splitIndexPath(p)
	d := j.dirs[dir]
	if d == nil {
		return
	}
	o, ok := d.ents[name]
	if !ok {
		return
	}
	j.unkeyLocked(dir, name, o)
	delete(d.ents, name)
	if len(d.ents) == 0 {
		delete(j.dirs, dir)
	}
	if !o.mode.IsDir() {
		return
	}
	prefix := p + "/"
	for q, sub := range j.dirs {
		if q == p || strings.HasPrefix(q, prefix) {
			for n, e := range sub.ents {
				j.unkeyLocked(q, n, e)
			}
			delete(j.dirs, q)
		}
	}
}

// moveIndexLocked moves what the index holds at and under from to to.
func (j *Job) moveIndexLocked(from, to string) {
	var moved []backends.FileInfo
	if e, ok := j.entryLocked(from); ok {
		moved = append(moved, e.info(to))
	}
	prefix := from + "/"
	for q, sub := range j.dirs {
		if q == from || strings.HasPrefix(q, prefix) {
			nq := to + q[len(from):]
			for n, e := range sub.ents {
				moved = append(moved, e.info(nq+"/"+n))
			}
		}
	}
	j.dropIndexLocked(from)
	for _, e := range moved {
		j.setIndexLocked(e)
	}
}

func (j *Job) bump() {
	j.mu.Lock()
	j.gen++
	j.mu.Unlock()
}

// seen is what one hinted path holds now.
type seen struct {
	path string
	now  *backends.FileInfo // nil: gone from the source
}

// sameChildrenLocked reports whether the directory the index held at old
// and the source directory now at new hold the same names; j.mu is held.
func (j *Job) sameChildrenLocked(old, new string) bool {
	ents, err := os.ReadDir(filepath.Join(j.source, filepath.FromSlash(new)))
	if err != nil {
		return false
	}
	want := map[string]bool{}
	for _, e := range ents {
		if !j.filter.Excluded(new+"/"+e.Name(), e.IsDir()) {
			want[e.Name()] = true
		}
	}
	n := 0
	if d := j.dirs[old]; d != nil {
		for name := range d.ents {
			if !want[name] {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// entryOf describes a local file as Scan does.
func entryOf(p string, fi fs.FileInfo) backends.FileInfo {
	e := backends.FileInfo{Path: p, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
	if fi.IsDir() {
		e.Size = 0
	}
	return e
}

// movedFrom returns the path a source entry was moved from, when the index
// holds exactly one entry with its size and mtime (a directory: its mtime
// and its names) and that path is gone from the source. The index is left
// as it is: every target asks the same question.
func (j *Job) movedFrom(e *backends.FileInfo) (string, backends.FileInfo, bool) {
	if j.opts.Mode != Mirror {
		return "", backends.FileInfo{}, false
	}
	k, ok := keyOf(e)
	if !ok {
		return "", backends.FileInfo{}, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if m, ok := j.moves[e.Path]; ok && sameKey(&m.old, e) {
		// Seen as a move already; its own item may still be waiting.
		if _, err := os.Lstat(filepath.Join(j.source, filepath.FromSlash(m.from))); errors.Is(err, fs.ErrNotExist) {
			return m.from, m.old, true
		}
	}
	from, ok := j.uniqueLocked(k)
	if !ok {
		return "", backends.FileInfo{}, false
	}
	if from == e.Path || covers(from, e.Path) || covers(e.Path, from) {
		return "", backends.FileInfo{}, false
	}
	if _, err := os.Lstat(filepath.Join(j.source, filepath.FromSlash(from))); !errors.Is(err, fs.ErrNotExist) {
		return "", backends.FileInfo{}, false
	}
	if k.isDir() && !j.sameChildrenLocked(from, e.Path) {
		return "", backends.FileInfo{}, false
	}
	return from, j.infoLocked(from), true
}
