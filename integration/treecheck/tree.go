package treecheck

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Kind is what an entry is.
type Kind int

// The kinds of entry a tree holds.
const (
	File Kind = iota
	Dir
	Symlink
)

func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Entry describes one path of a tree.
type Entry struct {
	Path    string // slash-separated, relative to the root
	Kind    Kind
	Size    int64       // files only
	ModTime time.Time   // as lstat reports it
	Perm    fs.FileMode // permission bits
	Hash    [32]byte    // SHA-256 of the content; files only
	Link    string      // symlink target, as stored
}

// Tree maps relative paths to entries. The root itself is not in it.
type Tree map[string]Entry

// Paths returns the tree's paths in sorted order.
func (t Tree) Paths() []string {
	ps := make([]string, 0, len(t))
	for p := range t {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Scan reads the tree under root without following symlinks and hashes
// every regular file. Partial files are left out when skipPartials is set.
// It fails on any I/O error or on an entry that is not a file, directory or
// symlink.
func Scan(root string, skipPartials bool) (Tree, error) {
	t := Tree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if skipPartials && backends.IsPartialName(rel) {
			return nil
		}
		e, err := stat(p, rel, true)
		if err != nil {
			return err
		}
		t[rel] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func stat(p, rel string, hash bool) (Entry, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return Entry{}, fmt.Errorf("scan %s: %w", p, err)
	}
	e := Entry{Path: rel, ModTime: fi.ModTime(), Perm: fi.Mode().Perm()}
	switch {
	case fi.Mode().IsRegular():
		e.Kind, e.Size = File, fi.Size()
		if hash {
			if e.Hash, err = hashFile(p); err != nil {
				return Entry{}, err
			}
		}
	case fi.IsDir():
		e.Kind = Dir
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Kind = Symlink
		if e.Link, err = os.Readlink(p); err != nil {
			return Entry{}, fmt.Errorf("scan %s: %w", p, err)
		}
	default:
		return Entry{}, fmt.Errorf("scan %s: unexpected type %v", p, fi.Mode().Type())
	}
	return e, nil
}

func hashFile(p string) ([32]byte, error) {
	var sum [32]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, fmt.Errorf("hash %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("hash %s: %w", p, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// Options say what Diff compares beyond names, kinds, sizes, content and
// symlink targets, which it always compares.
type Options struct {
	// ModTime compares the mtimes of files, truncated to ModTimeResolution
	// (0: exact) since some targets keep whole seconds only.
	ModTime           bool
	ModTimeResolution time.Duration
	// DirModTime also compares the mtimes of directories.
	DirModTime bool
	// Perm compares the permission bits of files and directories.
	Perm bool
}

// Diff returns one line per difference between want and got, sorted by
// path; none when they are equal under opts.
func Diff(want, got Tree, opts Options) []string {
	var out []string
	for _, p := range want.Paths() {
		w := want[p]
		g, ok := got[p]
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing (want %s)", p, w.Kind))
			continue
		}
		if d := diffEntry(w, g, opts); d != "" {
			out = append(out, p+": "+d)
		}
	}
	for _, p := range got.Paths() {
		if _, ok := want[p]; !ok {
			out = append(out, fmt.Sprintf("%s: unexpected %s", p, got[p].Kind))
		}
	}
	sort.Strings(out)
	return out
}

func diffEntry(w, g Entry, opts Options) string {
	var d []string
	if w.Kind != g.Kind {
		return fmt.Sprintf("is a %s, want a %s", g.Kind, w.Kind)
	}
	switch w.Kind {
	case File:
		if w.Size != g.Size {
			d = append(d, fmt.Sprintf("size %d, want %d", g.Size, w.Size))
		} else if w.Hash != g.Hash {
			d = append(d, "content differs")
		}
	case Symlink:
		if w.Link != g.Link {
			d = append(d, fmt.Sprintf("links to %q, want %q", g.Link, w.Link))
		}
	}
	if opts.ModTime && (w.Kind == File || (w.Kind == Dir && opts.DirModTime)) {
		wt, gt := w.ModTime, g.ModTime
		if r := opts.ModTimeResolution; r > 0 {
			wt, gt = wt.Truncate(r), gt.Truncate(r)
		}
		if !wt.Equal(gt) {
			d = append(d, fmt.Sprintf("mtime %s, want %s", g.ModTime.Format(time.RFC3339Nano), w.ModTime.Format(time.RFC3339Nano)))
		}
	}
	if opts.Perm && w.Kind != Symlink && w.Perm != g.Perm {
		d = append(d, fmt.Sprintf("mode %v, want %v", g.Perm, w.Perm))
	}
	return strings.Join(d, "; ")
}

// Compare scans both roots and returns Diff(src, dst), partial files left
// out of dst. It fails only on I/O errors.
func Compare(src, dst string, opts Options) ([]string, error) {
	want, err := Scan(src, false)
	if err != nil {
		return nil, err
	}
	return CompareTo(want, dst, opts)
}

// CompareTo is Compare against a source scanned before.
func CompareTo(want Tree, dst string, opts Options) ([]string, error) {
	got, err := Scan(dst, true)
	if err != nil {
		return nil, err
	}
	return Diff(want, got, opts), nil
}

// Torn returns one line for each entry at a final name under dst that is not
// a faithful copy of its source in src: a regular file whose content differs
// from the source file at that path, a symlink with another target, or a
// file or link the source does not have. Missing entries are fine (not
// copied yet), and so are partial files. It fails only on I/O errors.
func Torn(src Tree, dst string) ([]string, error) {
	got, err := Scan(dst, true)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range got.Paths() {
		if msg := tornLine(src, got[p]); msg != "" {
			out = append(out, msg)
		}
	}
	return out, nil
}

// Partials returns the slash-separated paths of the partial files under
// root, sorted. It fails only on I/O errors.
func Partials(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		if p != root && backends.IsPartialName(d.Name()) {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
