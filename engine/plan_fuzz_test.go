package engine

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// fuzzNames are the path elements fuzzed trees are built from: ones that
// sort between a directory and its contents ("a-b" against "a/"), ones the
// fuzzed filters match, and a partial file name.
var fuzzNames = []string{"a", "a-b", "d", "x.log", "tmp", backends.PartialPrefix + "0f-k"}

// fuzzPaths are all paths up to three elements deep over fuzzNames.
var fuzzPaths = func() []string {
	var out []string
	level := []string{""}
	for range 3 {
		var next []string
		for _, p := range level {
			for _, n := range fuzzNames {
				next = append(next, backends.Join(p, n))
			}
		}
		out = append(out, next...)
		level = next
	}
	return out
}()

var fuzzFilters = [][]string{
	nil,
	{"*.log"},
	{"tmp/"},
	{"/d"},
	{"*.log", "!a/x.log"},
	{"**/tmp/**"},
	{"a/d/"},
	{"d/*"},
}

// fuzzTree is a tree under construction; every entry's parents are dirs.
type fuzzTree map[string]backends.FileInfo

// put sets e, creating missing parent directories, unless a parent is a
// non-directory; an entry that stops being a directory loses its subtree.
func (t fuzzTree) put(e backends.FileInfo) {
	for i := 0; i < len(e.Path); i++ {
		if e.Path[i] != '/' {
			continue
		}
		a := e.Path[:i]
		if pe, ok := t[a]; !ok {
			t[a] = backends.FileInfo{Path: a, ModTime: at(0), Mode: fs.ModeDir | 0o755}
		} else if !pe.IsDir() {
			return
		}
	}
	if old, ok := t[e.Path]; ok && old.IsDir() && !e.IsDir() {
		for p := range t {
			if under(p, e.Path) {
				delete(t, p)
			}
		}
	}
	t[e.Path] = e
}

func (t fuzzTree) list(plainOrder bool) []backends.FileInfo {
	out := make([]backends.FileInfo, 0, len(t))
	for _, e := range t {
		out = append(out, e)
	}
	if plainOrder {
		slices.SortFunc(out, func(a, b backends.FileInfo) int { return strings.Compare(a.Path, b.Path) })
	} else {
		SortEntries(out)
	}
	return out
}

// fuzzEntry decodes one entry from a path index, a kind byte and an
// attribute byte.
func fuzzEntry(path string, kind, attr byte) backends.FileInfo {
	e := backends.FileInfo{Path: path, Mode: 0o644}
	e.ModTime = at(0).Add([]time.Duration{0, time.Second, 3 * time.Second, 3*time.Second + 1}[attr&3])
	if attr&8 != 0 {
		e.Mode = 0o600
	}
	switch kind % 8 {
	case 2, 3:
		e.Mode |= fs.ModeDir | 0o111
	case 4:
		e.Mode = fs.ModeSymlink | 0o777
		e.LinkTarget = []string{"x", "y", "../out", "/abs"}[attr>>6]
	case 5:
		e.Mode |= fs.ModeNamedPipe
	default:
		e.Size = 1 + int64(attr>>2&1)
		e.Hash = []string{"", "h1", "h2", "h1"}[attr>>4&3]
	}
	return e
}

// decodeFuzz builds source and target trees and options from data: two
// option bytes, then triples (path, kind and side, attributes).
func decodeFuzz(data []byte) (src, dst []backends.FileInfo, opts PlanOptions) {
	opts = PlanOptions{Mode: Mirror, MaxDelete: -1}
	var b0, b1 byte
	if len(data) > 0 {
		b0 = data[0]
	}
	if len(data) > 1 {
		b1 = data[1]
	}
	if b0&1 != 0 {
		opts.Mode = Backup
	}
	opts.Checksum = b0&2 != 0
	opts.Symlinks = b0&4 == 0
	opts.Incomplete = b0&8 != 0 && b0&16 != 0
	opts.IgnoreModes = b0&32 != 0 && b0&16 == 0
	f, err := NewFilter(fuzzFilters[b0>>5&7])
	if err != nil {
		panic(err)
	}
	opts.Filter = f
	if b1&8 != 0 {
		opts.MaxDelete = int(b1 & 3)
	}
	if b1&16 != 0 {
		opts.ModifyWindow = time.Second
	}
	plainOrder := b1&32 != 0
	opts.Versions = []string{"", "d", "a/d", "tmp"}[b1>>6&3]

	s, d := fuzzTree{}, fuzzTree{}
	for k := 2; k+2 < len(data); k += 3 {
		path := fuzzPaths[int(data[k])*len(fuzzPaths)/256]
		e := fuzzEntry(path, data[k+1], data[k+2])
		switch data[k+1] >> 6 {
		case 0:
			s.put(e)
		case 1:
			d.put(e)
		default:
			s.put(e)
			d.put(e)
		}
	}
	return s.list(plainOrder), d.list(plainOrder), opts
}

// FuzzPlan checks the planner's invariants on random trees: applying the
// plan to a model of the target yields the source (mirror, outside excluded
// and skipped paths) or a superset of it (backup, refused deletes); excluded
// paths are never touched; parents exist before children are created;
// deletes run deepest first and not at all when Incomplete; and planning
// again on the result is a no-op.
func FuzzPlan(f *testing.F) {
	seeds := [][]byte{
		{},
		{0, 0},
		// A new tree three deep.
		{0, 0, 200, 2, 0, 250, 0, 1},
		// Equal trees but for one file's size.
		{0, 0, 10, 0xC0, 0, 60, 0xC2, 0, 60, 0x40, 4},
		// Type change file -> directory with contents, in mirror and backup.
		{0, 0, 1, 0x40, 0, 1, 2, 0, 40, 0, 0},
		{1, 0, 1, 0x40, 0, 1, 2, 0, 40, 0, 0},
		// Excluded *.log inside an extraneous directory.
		{0x20, 0, 120, 0x42, 0, 130, 0x40, 0, 131, 0x40, 0},
		// Symlinks where the target cannot hold them, and a fifo.
		{4, 0, 50, 4, 0x40, 51, 5, 0, 52, 0x44, 0},
		// Incomplete with a type change.
		{24, 0, 1, 0x42, 0, 1, 0, 0, 140, 0x40, 0},
		// Delete cap and a modify window.
		{0, 0x18, 5, 0x40, 0, 6, 0x40, 0, 7, 0x40, 0, 8, 0xC0, 1, 8, 0, 2},
		// Checksum with equal hashes and different mtimes.
		{2, 0, 9, 0xC0, 0x10, 9, 0, 0x12, 9, 0x40, 0x11},
		// Plain string order input, partial names, anchored filters.
		{0x60, 0x20, 255, 0xC2, 0, 254, 0x40, 0, 90, 0x82, 0, 91, 0x80, 3},
		{0xE0, 0x20, 100, 0xC3, 0, 101, 0x80, 0, 180, 0x40, 0, 60, 0x41, 0},
		// Backup with versions: extraneous files and directories archived,
		// the versions folder left alone, a delete cap.
		{1, 0x40, 10, 0x40, 0, 60, 0x42, 0, 120, 0x40, 0, 8, 0xC0, 1},
		{1, 0x80, 200, 0x42, 0, 201, 0x40, 0, 40, 0xC0, 0},
		{1, 0xD9, 5, 0x40, 0, 6, 0x40, 0, 7, 0x40, 0, 130, 0x42, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src, dst, opts := decodeFuzz(data)
		plan := MakePlan(src, dst, opts)
		for _, err := range checkPlan(src, dst, opts, plan) {
			t.Errorf("%v\nsrc: %v\ndst: %v\nopts: %+v\nplan: %v\nskipped: %v\nrefused: %v",
				err, paths(src), paths(dst), opts, plan.Ops, plan.Skipped, plan.DeletesRefused)
		}
	})
}

func paths(es []backends.FileInfo) []string {
	out := make([]string, len(es))
	for k, e := range es {
		out[k] = e.Path + ":" + kindOf(&e).String()
	}
	return out
}
