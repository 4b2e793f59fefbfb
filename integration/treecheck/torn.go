package treecheck

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/ferrysync/ferry/backends"
)

// TornChecker runs Torn over the same target again and again, as a test
// does after every kill, hashing only files that changed since it last
// found them intact. A file is taken as unchanged while its identity (device
// and inode), size, mtime and ctime are: any write or rename over it changes
// one of them. Not safe for concurrent use.
type TornChecker struct {
	src  Tree
	good map[string]fileStamp
}

// NewTornChecker returns a checker against the source tree src.
func NewTornChecker(src Tree) *TornChecker {
	return &TornChecker{src: src, good: map[string]fileStamp{}}
}

// Check returns what Torn(src, dst) would. It fails only on I/O errors.
func (c *TornChecker) Check(dst string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		if p == dst || d.IsDir() || backends.IsPartialName(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(dst, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("scan %s: %w", p, err)
		}
		st, ok := stampOf(fi)
		seen[rel] = true
		if prev, was := c.good[rel]; ok && was && prev == st {
			return nil
		}
		delete(c.good, rel)
		g, err := stat(p, rel, fi.Mode().IsRegular())
		if err != nil {
			return err
		}
		if msg := tornLine(c.src, g); msg != "" {
			out = append(out, msg)
		} else if ok {
			c.good[rel] = st
		}
		return nil
	})
	for rel := range c.good {
		if !seen[rel] {
			delete(c.good, rel)
		}
	}
	sort.Strings(out)
	return out, err
}

// tornLine says what is wrong with g, an entry at a final name, or "".
func tornLine(src Tree, g Entry) string {
	w, ok := src[g.Path]
	switch {
	case g.Kind == Dir:
		return ""
	case !ok:
		return fmt.Sprintf("%s: %s the source does not have", g.Path, g.Kind)
	case w.Kind != g.Kind:
		return fmt.Sprintf("%s: is a %s, source has a %s", g.Path, g.Kind, w.Kind)
	case g.Kind == File && (g.Size != w.Size || g.Hash != w.Hash):
		return fmt.Sprintf("%s: torn: %d bytes, content differs from the source's %d bytes", g.Path, g.Size, w.Size)
	case g.Kind == Symlink && g.Link != w.Link:
		return fmt.Sprintf("%s: links to %q, source to %q", g.Path, g.Link, w.Link)
	}
	return ""
}
