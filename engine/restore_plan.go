package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// How the state of a target at a time T is derived from backup versions.
//
// A backup run stamped S moves every file it is about to overwrite or
// delete into versionsDir/S/<path> before it does so. A file in folder S is
// therefore what the target held at <path> until S, and the live file is
// what it holds since the last run. For one path, the candidates in time
// order are its copies in the folders S1 < S2 < ... < Sn, then the live
// file. The state at T is:
//
//   - the copy in the oldest folder stamped after T (S > T), if any: no
//     run between T and that S touched the path, so that copy is what was
//     there at T;
//   - else the live file: no run since T touched the path;
//   - except that a candidate whose mtime is after T was written after T,
//     and then the path held nothing at T (a run since T created it, or a
//     deletion before T moved the older copy into a folder stamped before
//     T, which is not a candidate).
//
// A time equal to a stamp counts as after that run. Limits: a file created
// after T with an mtime before T (copied with its old mtime) is restored
// as if it had been there; folders of long-running watch jobs span up to
// an hour, so there the answer is exact to the folder, not the second.
// Directories in the result are the parents of what is restored.

// Version is one copy of a path kept on a target: the live one (Stamp "")
// or one in a versions folder.
type Version struct {
	// Stamp names the versions folder; "" is the live copy.
	Stamp string
	// Until is when the copy was replaced or deleted (the folder's time);
	// zero for the live copy.
	Until time.Time
	// Info describes the copy; its Path is where it lies on the target.
	Info backends.FileInfo
}

// Pick is one entry of a restore: Rel is where it goes below the restore
// root, From where it is read on the target.
type Pick struct {
	Rel   string
	From  backends.FileInfo
	Stamp string
}

// versionTree is the listing of one versions folder below the restore
// path, with paths relative to that path.
type versionTree struct {
	stamp   string
	until   time.Time
	entries []backends.FileInfo
}

// PickAt decides what a restore writes: live holds the live tree, trees
// the versions folders (any order), all with Path relative to the restore
// root. A zero at picks the live tree as it is, directories included.
// Otherwise see the rules above; only files and symlinks are picked, and
// From.Path is left as the caller set it. Pure; the result is sorted by Rel
// in ComparePaths order.
func pickAt(live []backends.FileInfo, trees []versionTree, at time.Time) []Pick {
	var out []Pick
	if at.IsZero() {
		for _, e := range live {
			out = append(out, Pick{Rel: e.Path, From: e})
		}
		return out
	}
	trees = slices.Clone(trees)
	slices.SortFunc(trees, func(a, b versionTree) int { return a.until.Compare(b.until) })
	chosen := map[string]Pick{}
	decided := map[string]bool{}
	consider := func(e backends.FileInfo, stamp string) {
		if e.IsDir() || decided[e.Path] {
			return
		}
		decided[e.Path] = true
		if e.ModTime.After(at) {
			return // written after at: nothing was there at at
		}
		chosen[e.Path] = Pick{Rel: e.Path, From: e, Stamp: stamp}
	}
	for _, t := range trees {
		if !t.until.After(at) {
			continue
		}
		for _, e := range t.entries {
			consider(e, t.stamp)
		}
	}
	for _, e := range live {
		consider(e, "")
	}
	for _, p := range chosen {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Pick) int { return ComparePaths(a.Rel, b.Rel) })
	return out
}

// subTarget shows the directory prefix of a target as a target of its own,
// so that ListTarget can walk a subtree. Only Stat and List are used.
type subTarget struct {
	backends.Backend
	prefix string

	mu      sync.Mutex
	refused []Problem
}

// List keeps what a backend returns beside a refusal of unsafe names (the
// safe entries of that directory) and records the refusal as a problem.
func (s *subTarget) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	full := joinRel(s.prefix, dir)
	list, err := s.Backend.List(ctx, full)
	if err != nil && list != nil && errors.Is(err, backends.ErrUnsafePath) {
		s.mu.Lock()
		where := full
		if where == "" {
			where = "(target root)"
		}
		s.refused = append(s.refused, Problem{Path: where, Err: err})
		s.mu.Unlock()
		err = nil
	}
	for i := range list {
		list[i].Path = trimPrefix(list[i].Path, s.prefix)
	}
	return list, err
}

func trimPrefix(p, prefix string) string {
	switch {
	case prefix == "":
		return p
	case p == prefix:
		return ""
	case under(p, prefix):
		return p[len(prefix)+1:]
	}
	// Not below prefix: keep a marker ListTarget refuses as not a child.
	return "/" + p
}

// ListTree lists what lies at path on b, as ListTarget does (partial
// files left out, symlinks not entered, unsafe names as problems): for a
// directory all it holds, with Path relative to path; for a file the file,
// with Path its name. skip, if set, is left out with all it holds (a path
// relative to path). A missing path returns an error wrapping ErrNotExist;
// cancel returns ctx.Err(). Safe for concurrent use.
func ListTree(ctx context.Context, b backends.Backend, path, skip string) ([]backends.FileInfo, []Problem, error) {
	es, problems, _, err := listTree(ctx, b, path, skip)
	return es, problems, err
}

// listTree is ListTree that also tells whether path is a directory.
func listTree(ctx context.Context, b backends.Backend, path, skip string) ([]backends.FileInfo, []Problem, bool, error) {
	fi, err := b.Stat(ctx, path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.IsDir() {
		_, name := backends.Split(path)
		fi.Path = name
		return []backends.FileInfo{fi}, nil, false, nil
	}
	sub := &subTarget{Backend: b, prefix: path}
	entries, _, problems, err := ListTarget(ctx, sub, nil, nil)
	if err != nil {
		return nil, nil, true, err
	}
	if skip != "" {
		entries = slices.DeleteFunc(entries, func(e backends.FileInfo) bool { return e.Path == skip || under(e.Path, skip) })
	}
	for i := range problems {
		problems[i].Path = joinRel(path, problems[i].Path)
	}
	return entries, append(problems, sub.refused...), true, nil
}

// ListVersions returns the copies of path that b holds, newest first: the
// live one (if there is one) on top, then those in the folders under
// versionsDir. path may name a file or a directory. A path with no copy
// at all returns an error wrapping backends.ErrNotExist. Safe for
// concurrent use; cancel returns ctx.Err().
func ListVersions(ctx context.Context, b backends.Backend, versionsDir, path string) ([]Version, error) {
	if err := backends.CheckPath(path); err != nil || path == "" {
		return nil, fmt.Errorf("versions of %q: %w", path, errors.Join(err, backends.ErrUnsafePath))
	}
	var out []Version
	fi, err := b.Stat(ctx, path)
	switch {
	case err == nil:
		out = append(out, Version{Info: fi})
	case !errors.Is(err, backends.ErrNotExist):
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	names, times, err := listStamps(ctx, b, versionsDir)
	if err != nil {
		return nil, err
	}
	for i := len(names) - 1; i >= 0; i-- {
		p := joinRel(backends.Join(versionsDir, names[i]), path)
		fi, err := b.Stat(ctx, p)
		switch {
		case err == nil:
			out = append(out, Version{Stamp: names[i], Until: times[i], Info: fi})
		case !errors.Is(err, backends.ErrNotExist):
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("versions of %s: %w", path, backends.ErrNotExist)
	}
	return out, nil
}

// remoteReaderAt reads a target file at any offset through Open, keeping
// one stream open while reads follow each other, as ResumeOffset's do.
type remoteReaderAt struct {
	ctx  context.Context
	b    backends.Backend
	path string
	rc   io.ReadCloser
	off  int64
}

func (r *remoteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if r.rc == nil || r.off != off {
		r.Close()
		rc, err := r.b.Open(r.ctx, r.path, off)
		if err != nil {
			return 0, err
		}
		r.rc, r.off = rc, off
	}
	n, err := io.ReadFull(r.rc, p)
	r.off += int64(n)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func (r *remoteReaderAt) Close() {
	if r.rc != nil {
		r.rc.Close()
		r.rc = nil
	}
}

// joinRel joins two relative paths, either of which may be "" (the root).
func joinRel(a, b string) string {
	if b == "" {
		return a
	}
	return backends.Join(a, b)
}
