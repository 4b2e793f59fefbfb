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
			if o, ok := j.index[c.path]; ok && sameKey(&o, c.now) {
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
			if k.dir && !j.sameChildrenLocked(from, c.path) {
				continue
			}
			renames[c.path] = from
			expect[c.path] = j.index[from]
			j.moves[c.path] = recentMove{from: from, old: j.index[from], at: time.Now()}
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
// mtime.
type fileKey struct {
	size  int64
	mtime int64
	dir   bool
}

func keyOf(e *backends.FileInfo) (fileKey, bool) {
	switch {
	case e.IsRegular():
		return fileKey{e.Size, e.ModTime.UnixNano(), false}, true
	case e.IsDir():
		return fileKey{0, e.ModTime.UnixNano(), true}, true
	}
	return fileKey{}, false
}

func sameKey(a, b *backends.FileInfo) bool {
	ka, oka := keyOf(a)
	kb, okb := keyOf(b)
	return oka && okb && ka == kb
}

// keyRef counts the source entries with one fileKey and names one of them.
// Only a count of one with a known name makes a rename candidate; the name
// is forgotten when that entry goes while others stay, which costs a rename
// seen as a copy at worst, and keeps the index one small entry per key.
type keyRef struct {
	path string
	n    int
}

// uniqueLocked returns the one indexed path with key k; j.mu must be held.
func (j *Job) uniqueLocked(k fileKey) (string, bool) {
	r, ok := j.byKey[k]
	if !ok || r.n != 1 || r.path == "" {
		return "", false
	}
	if e, ok := j.index[r.path]; !ok || !sameKey(&e, &backends.FileInfo{Size: k.size, ModTime: time.Unix(0, k.mtime), Mode: e.Mode}) {
		return "", false
	}
	return r.path, true
}

// setIndexLocked records a source entry; j.mu must be held.
func (j *Job) setIndexLocked(e backends.FileInfo) {
	if o, ok := j.index[e.Path]; ok {
		j.unkeyLocked(&o)
	}
	j.index[e.Path] = e
	if k, ok := keyOf(&e); ok {
		r := j.byKey[k]
		if r.n == 0 {
			r.path = e.Path
		}
		r.n++
		j.byKey[k] = r
	}
}

func (j *Job) unkeyLocked(e *backends.FileInfo) {
	k, ok := keyOf(e)
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
	case r.path == e.Path:
		r.path = ""
	}
	j.byKey[k] = r
}

// dropIndexLocked forgets p and, for a directory, everything under it.
func (j *Job) dropIndexLocked(p string) {
	o, ok := j.index[p]
	if !ok {
		return
	}
	j.unkeyLocked(&o)
	delete(j.index, p)
	if o.IsDir() {
		prefix := p + "/"
		for q, e := range j.index {
			if strings.HasPrefix(q, prefix) {
				j.unkeyLocked(&e)
				delete(j.index, q)
			}
		}
	}
}

// moveIndexLocked moves what the index holds at and under from to to.
func (j *Job) moveIndexLocked(from, to string) {
	var moved []backends.FileInfo
	prefix := from + "/"
	for q, e := range j.index {
		if q == from || strings.HasPrefix(q, prefix) {
			moved = append(moved, e)
		}
	}
	j.dropIndexLocked(from)
	for _, e := range moved {
		e.Path = to + strings.TrimPrefix(e.Path, from)
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
	prefix := old + "/"
	n := 0
	for p := range j.index {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || strings.Contains(rest, "/") {
			continue
		}
		if !want[rest] {
			return false
		}
		n++
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
	if k.dir && !j.sameChildrenLocked(from, e.Path) {
		return "", backends.FileInfo{}, false
	}
	return from, j.index[from], true
}
