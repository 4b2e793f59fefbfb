package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

type planCase struct {
	name    string
	src     []backends.FileInfo
	dst     []backends.FileInfo
	opts    []func(*PlanOptions) // applied to mirror mode, no delete cap, symlinks on
	want    []string             // Op.String() of every op, in order
	skipped map[string]error     // path -> class the problem wraps (nil: any)
	refused error                // class DeletesRefused wraps, nil: none
	noModel bool                 // input the model cannot represent (a path twice)
}

func backup(o *PlanOptions)      { o.Mode = Backup }
func checksum(o *PlanOptions)    { o.Checksum = true }
func noSymlinks(o *PlanOptions)  { o.Symlinks = false }
func incomplete(o *PlanOptions)  { o.Incomplete = true }
func ignoreModes(o *PlanOptions) { o.IgnoreModes = true }

func window(d time.Duration) func(*PlanOptions) {
	return func(o *PlanOptions) { o.ModifyWindow = d }
}

func versions(dir string) func(*PlanOptions) {
	return func(o *PlanOptions) { o.Mode = Backup; o.Versions = dir }
}

func maxDelete(n int) func(*PlanOptions) { return func(o *PlanOptions) { o.MaxDelete = n } }

func exclude(patterns ...string) func(*PlanOptions) {
	f, err := NewFilter(patterns)
	if err != nil {
		panic(err)
	}
	return func(o *PlanOptions) { o.Filter = f }
}

func fs_(es ...backends.FileInfo) []backends.FileInfo { return es }

var planCases = []planCase{
	// Basics.
	{name: "empty source and target: nothing to do"},
	{name: "identical trees: nothing to do",
		src: fs_(dir("a", 1), file("a/x", 3, 5), link("l", "a")),
		dst: fs_(dir("a", 1), file("a/x", 3, 5), link("l", "a"))},
	{name: "new file at the root is uploaded",
		src:  fs_(file("x", 1, 1)),
		want: []string{"upload x (new)"}},
	{name: "new directory: mkdir, upload into it, then fix its mtime",
		src:  fs_(dir("d", 2), file("d/x", 1, 1)),
		want: []string{"mkdir d (new)", "upload d/x (new)", "touch d (new)"}},
	{name: "new empty directory is created and gets its mtime",
		src:  fs_(dir("e", 3)),
		want: []string{"mkdir e (new)", "touch e (new)"}},
	{name: "new nested directories: parents first, their mtimes deepest first",
		src: fs_(dir("a", 1), dir("a/b", 1), dir("a/b/c", 1), file("a/b/c/f", 1, 1)),
		want: []string{"mkdir a (new)", "mkdir a/b (new)", "mkdir a/b/c (new)", "upload a/b/c/f (new)",
			"touch a/b/c (new)", "touch a/b (new)", "touch a (new)"}},

	// File comparison.
	{name: "size differs: upload (size)",
		src: fs_(file("x", 2, 1)), dst: fs_(file("x", 1, 1)),
		want: []string{"upload x (size)"}},
	{name: "mtime differs: upload (mtime)",
		src: fs_(file("x", 1, 2)), dst: fs_(file("x", 1, 1)),
		want: []string{"upload x (mtime)"}},
	{name: "mtime and mode differ: one upload (mtime), which sets both",
		src: fs_(perm(file("x", 1, 2), 0o600)), dst: fs_(file("x", 1, 1)),
		want: []string{"upload x (mtime)"}},
	{name: "only the mode differs: touch (mode), no upload",
		src: fs_(perm(file("x", 1, 1), 0o600)), dst: fs_(file("x", 1, 1)),
		want: []string{"touch x (mode)"}},
	{name: "IgnoreModes: a mode difference is not a change",
		src: fs_(perm(file("x", 1, 1), 0o600)), dst: fs_(file("x", 1, 1)),
		opts: []func(*PlanOptions){ignoreModes}},
	{name: "without checksum a different hash with equal size and mtime is no change",
		src: fs_(hashed(file("x", 1, 1), "aa")), dst: fs_(hashed(file("x", 1, 1), "bb"))},

	// Checksum.
	{name: "checksum: hash differs: upload (checksum)",
		src: fs_(hashed(file("x", 1, 1), "aa")), dst: fs_(hashed(file("x", 1, 1), "bb")),
		opts: []func(*PlanOptions){checksum},
		want: []string{"upload x (checksum)"}},
	{name: "checksum: equal hash but mtime differs: only touch (mtime)",
		src: fs_(hashed(file("x", 1, 5), "aa")), dst: fs_(hashed(file("x", 1, 1), "aa")),
		opts: []func(*PlanOptions){checksum},
		want: []string{"touch x (mtime)"}},
	{name: "checksum: size differs wins over an equal hash",
		src: fs_(hashed(file("x", 2, 1), "aa")), dst: fs_(hashed(file("x", 1, 1), "aa")),
		opts: []func(*PlanOptions){checksum},
		want: []string{"upload x (size)"}},
	{name: "checksum: unknown target hash falls back to mtime",
		src: fs_(hashed(file("x", 1, 2), "aa")), dst: fs_(file("x", 1, 1)),
		opts: []func(*PlanOptions){checksum},
		want: []string{"upload x (mtime)"}},
	{name: "checksum: equal content and mtime, mode differs: touch (mode)",
		src: fs_(perm(hashed(file("x", 1, 1), "aa"), 0o600)), dst: fs_(hashed(file("x", 1, 1), "aa")),
		opts: []func(*PlanOptions){checksum},
		want: []string{"touch x (mode)"}},

	// Modify window.
	{name: "window: mtimes 1s apart within a 2s window are equal",
		src: fs_(file("x", 1, 1)), dst: fs_(file("x", 1, 0)),
		opts: []func(*PlanOptions){window(2 * time.Second)}},
	{name: "window: mtimes exactly the window apart are still equal",
		src: fs_(file("x", 1, 2)), dst: fs_(file("x", 1, 0)),
		opts: []func(*PlanOptions){window(2 * time.Second)}},
	{name: "window: a newer target mtime within the window is equal too",
		src: fs_(file("x", 1, 0)), dst: fs_(file("x", 1, 2)),
		opts: []func(*PlanOptions){window(2 * time.Second)}},
	{name: "window: mtimes 3s apart beyond a 2s window: upload (mtime)",
		src: fs_(file("x", 1, 3)), dst: fs_(file("x", 1, 0)),
		opts: []func(*PlanOptions){window(2 * time.Second)},
		want: []string{"upload x (mtime)"}},
	{name: "no window: one nanosecond apart is a change",
		src: fs_(file("x", 1, 0)), dst: fs_(mtimeAt(file("x", 1, 0), at(0).Add(time.Nanosecond))),
		want: []string{"upload x (mtime)"}},
	{name: "window applies to directories too",
		src: fs_(dir("d", 1)), dst: fs_(dir("d", 0)),
		opts: []func(*PlanOptions){window(time.Second)}},

	// Directories.
	{name: "directory mtime differs: touch (mtime)",
		src: fs_(dir("d", 5)), dst: fs_(dir("d", 1)),
		want: []string{"touch d (mtime)"}},
	{name: "directory mode differs: touch (mode)",
		src: fs_(perm(dir("d", 1), 0o700)), dst: fs_(dir("d", 1)),
		want: []string{"touch d (mode)"}},
	{name: "file added in an existing directory: its mtime is fixed after the upload",
		src:  fs_(dir("d", 1), file("d/new", 1, 1)),
		dst:  fs_(dir("d", 1)),
		want: []string{"upload d/new (new)", "touch d (mtime)"}},
	{name: "file only touched: its directory is left alone",
		src:  fs_(dir("d", 1), perm(file("d/x", 1, 1), 0o600)),
		dst:  fs_(dir("d", 1), file("d/x", 1, 1)),
		want: []string{"touch d/x (mode)"}},
	{name: "directory mtimes fixed after deletes inside them, deepest first",
		src:  fs_(dir("a", 1), dir("a/b", 1)),
		dst:  fs_(dir("a", 1), dir("a/b", 1), file("a/b/x", 1, 1)),
		want: []string{"delete a/b/x (extraneous)", "touch a/b (mtime)"}},

	// Mirror and backup.
	{name: "mirror: extraneous file deleted, its directory's mtime fixed after",
		src:  fs_(dir("d", 1)),
		dst:  fs_(dir("d", 1), file("d/old", 1, 1)),
		want: []string{"delete d/old (extraneous)", "touch d (mtime)"}},
	{name: "mirror: extraneous empty directory deleted",
		src:  fs_(file("k", 1, 1)),
		dst:  fs_(dir("e", 1), file("k", 1, 1)),
		want: []string{"delete e (extraneous)"}},
	{name: "mirror: extraneous directory deleted after all it holds",
		src: fs_(file("k", 1, 1)),
		dst: fs_(file("k", 1, 1), dir("old", 1), dir("old/sub", 1), file("old/sub/x", 1, 1), file("old/y", 1, 1)),
		want: []string{"delete old/sub/x (extraneous)", "delete old/sub (extraneous)",
			"delete old/y (extraneous)", "delete old (extraneous)"}},
	{name: "mirror: deletes run deepest first across branches",
		src: fs_(file("k", 1, 1)),
		dst: fs_(dir("a", 1), file("a/x", 1, 1), dir("b", 1), dir("b/c", 1), file("b/c/y", 1, 1), file("k", 1, 1), file("z", 1, 1)),
		want: []string{"delete b/c/y (extraneous)", "delete a/x (extraneous)", "delete b/c (extraneous)",
			"delete a (extraneous)", "delete b (extraneous)", "delete z (extraneous)"}},
	{name: "mirror: extraneous directory holding excluded entries is kept, the rest deleted",
		src:  fs_(file("k", 1, 1)),
		dst:  fs_(file("k", 1, 1), dir("old", 1), file("old/keep.log", 1, 1), file("old/x", 1, 1)),
		opts: []func(*PlanOptions){exclude("*.log")},
		want: []string{"delete old/x (extraneous)"}},
	{name: "backup: extraneous file kept",
		src: fs_(file("k", 1, 1)), dst: fs_(file("k", 1, 1), file("old", 1, 1)),
		opts: []func(*PlanOptions){backup}},
	{name: "backup: extraneous directory tree kept",
		src: fs_(file("k", 1, 1)), dst: fs_(file("k", 1, 1), dir("old", 1), file("old/x", 1, 1)),
		opts: []func(*PlanOptions){backup}},
	{name: "backup: new and changed files are still copied",
		src: fs_(file("a", 2, 1), file("b", 1, 1)), dst: fs_(file("a", 1, 1)),
		opts: []func(*PlanOptions){backup},
		want: []string{"upload a (size)", "upload b (new)"}},
	{name: "backup: directory mtime fixed when a file is added to it",
		src:  fs_(dir("d", 1), file("d/n", 1, 1)),
		dst:  fs_(dir("d", 1), file("d/old", 1, 1)),
		opts: []func(*PlanOptions){backup},
		want: []string{"upload d/n (new)", "touch d (mtime)"}},

	// Excludes.
	{name: "exclude: excluded source file is not uploaded",
		src:  fs_(file("a.log", 1, 1), file("b", 1, 1)),
		opts: []func(*PlanOptions){exclude("*.log")},
		want: []string{"upload b (new)"}},
	{name: "exclude: excluded target file is not deleted",
		src: fs_(file("b", 1, 1)), dst: fs_(file("a.log", 1, 1), file("b", 1, 1)),
		opts: []func(*PlanOptions){exclude("*.log")}},
	{name: "exclude: excluded directory untouched on both sides though contents differ",
		src:  fs_(file("k", 1, 1), dir("node_modules", 5), file("node_modules/x", 9, 9)),
		dst:  fs_(file("k", 1, 1), dir("node_modules", 1), file("node_modules/y", 1, 1)),
		opts: []func(*PlanOptions){exclude("node_modules/")}},
	{name: "exclude: nothing under an excluded target directory is deleted",
		src:  fs_(file("k", 1, 1)),
		dst:  fs_(dir("cache", 1), file("cache/x", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){exclude("cache/")}},
	{name: "exclude: a directory-only pattern does not exclude a file of that name",
		src:  fs_(file("build", 1, 1)),
		opts: []func(*PlanOptions){exclude("build/")},
		want: []string{"upload build (new)"}},
	{name: "exclude: a leading slash anchors at the root only",
		src:  fs_(dir("a", 1), dir("a/build", 1), file("a/build/y", 1, 1), dir("build", 1), file("build/x", 1, 1)),
		opts: []func(*PlanOptions){exclude("/build")},
		want: []string{"mkdir a (new)", "mkdir a/build (new)", "upload a/build/y (new)", "touch a/build (new)", "touch a (new)"}},
	{name: "exclude: a pattern with a slash matches from the root only",
		src:  fs_(dir("docs", 1), file("docs/a.md", 1, 1), file("docs/b.txt", 1, 1), dir("x", 1), dir("x/docs", 1), file("x/docs/c.md", 1, 1)),
		dst:  fs_(dir("docs", 1), dir("x", 1), dir("x/docs", 1)),
		opts: []func(*PlanOptions){exclude("docs/*.md")},
		want: []string{"upload docs/b.txt (new)", "upload x/docs/c.md (new)", "touch x/docs (mtime)", "touch docs (mtime)"}},
	{name: "exclude: '!' re-includes a file an earlier pattern excluded",
		src:  fs_(file("a.log", 1, 1), file("keep.log", 1, 1)),
		opts: []func(*PlanOptions){exclude("*.log", "!keep.log")},
		want: []string{"upload keep.log (new)"}},
	{name: "exclude: '**/tmp/**' excludes tmp at any depth",
		src:  fs_(dir("a", 1), dir("a/tmp", 1), file("a/tmp/x", 1, 1), file("a/y", 1, 1)),
		dst:  fs_(dir("a", 1)),
		opts: []func(*PlanOptions){exclude("**/tmp/**")},
		want: []string{"upload a/y (new)", "touch a (mtime)"}},
	{name: "exclude: excluded target directory where the source has a file is a conflict",
		src:     fs_(file("build", 1, 1)),
		dst:     fs_(dir("build", 1), file("build/x", 1, 1)),
		opts:    []func(*PlanOptions){exclude("build/")},
		skipped: map[string]error{"build": ErrTypeConflict}},
	{name: "exclude: excluded source directory over a target file: the file is extraneous",
		src:  fs_(dir("build", 1), file("build/x", 1, 1), file("k", 1, 1)),
		dst:  fs_(file("build", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){exclude("build/")},
		want: []string{"delete build (extraneous)"}},
	{name: "exclude: partial files on the target are never touched and keep their directory",
		src: fs_(file("k", 1, 1)),
		dst: fs_(dir("d", 1), file("d/"+backends.PartialPrefix+"00ff-x", 1, 1), file("k", 1, 1))},
	{name: "exclude: partial files in the source are ignored",
		src: fs_(file(backends.PartialPrefix+"00ff-x", 1, 1))},

	// Symlinks.
	{name: "symlink: new link created when the target holds links",
		src:  fs_(link("l", "x")),
		want: []string{"symlink l (new)"}},
	{name: "symlink: skipped with a problem when the target cannot hold links",
		src:     fs_(link("l", "x")),
		opts:    []func(*PlanOptions){noSymlinks},
		skipped: map[string]error{"l": ErrSymlinkUnsupported}},
	{name: "symlink: changed link target is relinked in place (link)",
		src: fs_(link("l", "y")), dst: fs_(link("l", "x")),
		want: []string{"symlink l (link)"}},
	{name: "symlink: only the mtime differs: nothing to do",
		src: fs_(link("l", "x")), dst: fs_(mtimeAt(link("l", "x"), at(9)))},
	{name: "symlink: one pointing outside the tree is copied as a link, never followed",
		src:  fs_(link("l", "../../etc/passwd")),
		want: []string{"symlink l (new)"}},
	{name: "symlink: extraneous link deleted in mirror even when links are unsupported",
		src: fs_(file("k", 1, 1)), dst: fs_(file("k", 1, 1), link("l", "k")),
		opts: []func(*PlanOptions){noSymlinks},
		want: []string{"delete l (extraneous)"}},
	{name: "symlink: a target link where the source has a directory is replaced, not entered",
		src:  fs_(dir("a", 1), file("a/x", 1, 1)),
		dst:  fs_(link("a", "/etc")),
		want: []string{"delete a (type)", "mkdir a (type)", "upload a/x (new)", "touch a (type)"}},

	// Type changes.
	{name: "type: file becomes a directory in mirror: delete first, then mkdir",
		src:  fs_(dir("p", 1), file("p/x", 1, 1)),
		dst:  fs_(file("p", 1, 1)),
		want: []string{"delete p (type)", "mkdir p (type)", "upload p/x (new)", "touch p (type)"}},
	{name: "type: directory becomes a file in mirror: subtree deleted deepest first before the upload",
		src: fs_(file("p", 1, 1)),
		dst: fs_(dir("p", 1), dir("p/q", 1), file("p/q/r", 1, 1), file("p/s", 1, 1)),
		want: []string{"delete p/q/r (type)", "delete p/q (type)", "delete p/s (type)", "delete p (type)",
			"upload p (type)"}},
	{name: "type: file becomes a symlink in mirror",
		src: fs_(link("p", "x")), dst: fs_(file("p", 1, 1)),
		want: []string{"delete p (type)", "symlink p (type)"}},
	{name: "type: symlink becomes a file in mirror",
		src: fs_(file("p", 1, 1)), dst: fs_(link("p", "x")),
		want: []string{"delete p (type)", "upload p (type)"}},
	{name: "type: directory with excluded entries cannot become a file; the rest is deleted",
		src:     fs_(file("p", 1, 1)),
		dst:     fs_(dir("p", 1), file("p/a.log", 1, 1), file("p/b", 1, 1)),
		opts:    []func(*PlanOptions){exclude("*.log")},
		want:    []string{"delete p/b (extraneous)"},
		skipped: map[string]error{"p": ErrTypeConflict}},
	{name: "type: backup leaves a target file where the source has a directory",
		src:     fs_(dir("p", 1), file("p/x", 1, 1)),
		dst:     fs_(file("p", 1, 1)),
		opts:    []func(*PlanOptions){backup},
		skipped: map[string]error{"p": ErrTypeConflict}},
	{name: "type: backup leaves a target directory and its contents where the source has a file",
		src:     fs_(file("p", 1, 1)),
		dst:     fs_(dir("p", 1), file("p/x", 1, 1)),
		opts:    []func(*PlanOptions){backup},
		skipped: map[string]error{"p": ErrTypeConflict}},
	{name: "type: a source symlink over a target file without link support keeps the file",
		src:     fs_(link("p", "x")),
		dst:     fs_(file("p", 1, 1)),
		opts:    []func(*PlanOptions){noSymlinks},
		skipped: map[string]error{"p": ErrSymlinkUnsupported}},

	// Special files.
	{name: "special: a fifo in the source is skipped with a problem",
		src:     fs_(special("f"), file("k", 1, 1)),
		want:    []string{"upload k (new)"},
		skipped: map[string]error{"f": ErrSpecialFile}},
	{name: "special: a fifo in the source where the target has a file leaves the file",
		src:     fs_(special("f"), file("k", 1, 1)),
		dst:     fs_(file("f", 1, 1)),
		want:    []string{"upload k (new)"},
		skipped: map[string]error{"f": ErrSpecialFile}},

	// Safety.
	{name: "safety: incomplete listing plans no deletes and says why",
		src: fs_(file("a", 2, 1)), dst: fs_(file("a", 1, 1), file("old", 1, 1)),
		opts:    []func(*PlanOptions){incomplete},
		want:    []string{"upload a (size)"},
		refused: ErrIncompleteListing},
	{name: "safety: incomplete listing with nothing to delete refuses nothing",
		src:  fs_(file("a", 1, 1)),
		opts: []func(*PlanOptions){incomplete},
		want: []string{"upload a (new)"}},
	{name: "safety: incomplete listing drops a type change and the creates that need it",
		src:     fs_(dir("p", 1), file("p/x", 1, 1), file("q", 1, 1)),
		dst:     fs_(file("p", 1, 1)),
		opts:    []func(*PlanOptions){incomplete},
		want:    []string{"upload q (new)"},
		skipped: map[string]error{"p": ErrIncompleteListing},
		refused: ErrIncompleteListing},
	{name: "safety: more deletes than MaxDelete: none done, copies still run",
		src: fs_(file("n", 1, 1)), dst: fs_(file("a", 1, 1), file("b", 1, 1)),
		opts:    []func(*PlanOptions){maxDelete(1)},
		want:    []string{"upload n (new)"},
		refused: ErrTooManyDeletes},
	{name: "safety: exactly MaxDelete deletes are allowed",
		src: fs_(file("n", 1, 1)), dst: fs_(file("a", 1, 1), file("b", 1, 1)),
		opts: []func(*PlanOptions){maxDelete(2)},
		want: []string{"upload n (new)", "delete a (extraneous)", "delete b (extraneous)"}},
	{name: "safety: MaxDelete 0 forbids any delete",
		src: fs_(file("n", 1, 1)), dst: fs_(file("a", 1, 1)),
		opts:    []func(*PlanOptions){maxDelete(0)},
		want:    []string{"upload n (new)"},
		refused: ErrTooManyDeletes},
	{name: "safety: type-change deletes count against MaxDelete",
		src:     fs_(file("p", 1, 1)),
		dst:     fs_(dir("p", 1), file("p/x", 1, 1)),
		opts:    []func(*PlanOptions){maxDelete(1)},
		skipped: map[string]error{"p": ErrTooManyDeletes},
		refused: ErrTooManyDeletes},
	{name: "safety: empty source with a non-empty target deletes nothing",
		dst:     fs_(file("a", 1, 1)),
		refused: ErrSourceEmpty},
	{name: "safety: a source holding only excluded entries counts as empty",
		src: fs_(file("a.log", 1, 1)), dst: fs_(file("b", 1, 1)),
		opts:    []func(*PlanOptions){exclude("*.log")},
		refused: ErrSourceEmpty},
	{name: "safety: empty source, target holding only excluded entries: nothing refused",
		dst:  fs_(file("a.log", 1, 1)),
		opts: []func(*PlanOptions){exclude("*.log")}},
	{name: "safety: empty source in backup mode refuses nothing",
		dst:  fs_(file("a", 1, 1)),
		opts: []func(*PlanOptions){backup}},

	// Order and input.
	{name: "order: 'a/x' comes before 'a-b' and 'a.c', inside a's subtree",
		src:  fs_(dir("a", 1), file("a/x", 1, 1), file("a-b", 1, 1), file("a.c", 1, 1)),
		want: []string{"mkdir a (new)", "upload a/x (new)", "upload a-b (new)", "upload a.c (new)", "touch a (new)"}},
	{name: "input: lists in plain string order are accepted",
		src:  fs_(dir("a", 1), file("a-b", 1, 1), file("a.c", 1, 1), file("a/x", 1, 1)),
		dst:  fs_(file("a-b", 1, 1), dir("a", 1)),
		want: []string{"upload a/x (new)", "upload a.c (new)", "touch a (mtime)"}},
	{name: "input: a path listed twice is reported and used once",
		src:     fs_(file("x", 1, 1), file("x", 2, 2)),
		want:    []string{"upload x (new)"},
		skipped: map[string]error{"x": nil},
		noModel: true},
	{name: "input: a source entry without its parent directory is skipped",
		src:     fs_(file("a/x", 1, 1), file("k", 1, 1)),
		want:    []string{"upload k (new)"},
		skipped: map[string]error{"a/x": nil}},
	{name: "input: a target entry without its parent directory is never deleted",
		src:     fs_(file("k", 1, 1)),
		dst:     fs_(file("a/x", 1, 1), file("k", 1, 1)),
		noModel: true},
	{name: "input: the root entry in a list is ignored",
		src:  fs_(dir("", 1), file("x", 1, 1)),
		dst:  fs_(dir("", 5)),
		want: []string{"upload x (new)"}},
	{name: "groups: type deletes, mkdirs, uploads, symlinks, file touches, deletes, directory touches",
		src: fs_(dir("d", 1), file("d/changed", 2, 1), link("d/l", "x"), perm(file("d/mode", 1, 1), 0o600),
			dir("n", 1), file("n/f", 1, 1), file("t", 1, 1)),
		dst: fs_(dir("d", 1), file("d/changed", 1, 1), file("d/mode", 1, 1), file("d/old", 1, 1),
			dir("t", 1), file("t/x", 1, 1), file("z", 1, 1)),
		want: []string{"delete t/x (type)", "delete t (type)", "mkdir n (new)",
			"upload d/changed (size)", "upload n/f (new)", "upload t (type)", "symlink d/l (new)",
			"touch d/mode (mode)", "delete d/old (extraneous)", "delete z (extraneous)",
			"touch d (mtime)", "touch n (new)"}},

	// Backup with versions.
	{name: "versions: a file the source lacks is archived, not deleted",
		src: fs_(file("keep", 1, 1)), dst: fs_(file("gone", 1, 1), file("keep", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")},
		want: []string{"archive gone (extraneous)"}},
	{name: "versions: a changed file is uploaded (the executor keeps the old one)",
		src: fs_(file("x", 2, 2)), dst: fs_(file("x", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")},
		want: []string{"upload x (size)"}},
	{name: "versions: a directory the source lacks moves in one archive, with its mtime parent fixed",
		src: fs_(dir("p", 1)), dst: fs_(dir("p", 1), dir("p/old", 1), file("p/old/a", 1, 1), dir("p/old/b", 1), file("p/old/b/c", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")},
		want: []string{"archive p/old (extraneous)", "touch p (mtime)"}},
	{name: "versions: a directory holding an excluded file stays; its other entries are archived",
		src: fs_(), dst: fs_(dir("d", 1), file("d/a", 1, 1), file("d/x.log", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v"), exclude("*.log")},
		want: nil, refused: ErrSourceEmpty},
	{name: "versions: excluded entries stay, others in the directory are archived, the directory keeps its mtime",
		src: fs_(file("k", 1, 1)), dst: fs_(dir("d", 1), file("d/a", 1, 1), file("d/x.log", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v"), exclude("*.log")},
		want: []string{"archive d/a (extraneous)"}},
	{name: "versions: the versions folder on the target is never touched",
		src: fs_(file("k", 1, 1)), dst: fs_(dir(".v", 1), dir(".v/2026-01-01T000000Z", 1), file(".v/2026-01-01T000000Z/k", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")}},
	{name: "versions: a source entry at the versions folder's path is not copied",
		src: fs_(dir(".v", 1), file(".v/x", 1, 1), file("k", 1, 1)), dst: fs_(file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")}},
	{name: "versions: a nested versions folder keeps its parent when the source lacks it",
		src: fs_(file("k", 1, 1)), dst: fs_(dir("a", 1), dir("a/v", 1), file("a/v/old", 1, 1), file("a/z", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions("a/v")},
		want: []string{"archive a/z (extraneous)"}},
	{name: "versions: an empty source archives nothing (refused as in mirror mode)",
		src: fs_(), dst: fs_(file("a", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")}, refused: ErrSourceEmpty},
	{name: "versions: an incomplete listing archives nothing",
		src: fs_(file("k", 1, 1)), dst: fs_(file("a", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v"), incomplete}, refused: ErrIncompleteListing},
	{name: "versions: archives count against the delete cap",
		src: fs_(file("k", 1, 1)), dst: fs_(file("a", 1, 1), file("b", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v"), maxDelete(1)}, refused: ErrTooManyDeletes},
	{name: "versions: a symlink the source lacks is archived",
		src: fs_(file("k", 1, 1)), dst: fs_(link("l", "k"), file("k", 1, 1)),
		opts: []func(*PlanOptions){versions(".v")},
		want: []string{"archive l (extraneous)"}},
	{name: "versions: a type change stays a conflict in backup mode",
		src: fs_(dir("x", 1), file("k", 1, 1)), dst: fs_(file("x", 1, 1), file("k", 1, 1)),
		opts:    []func(*PlanOptions){versions(".v")},
		skipped: map[string]error{"x": ErrTypeConflict}},
	{name: "backup without versions still leaves extraneous files",
		src: fs_(file("k", 1, 1)), dst: fs_(file("a", 1, 1), file("k", 1, 1)),
		opts: []func(*PlanOptions){backup}},
}

func TestMakePlan(t *testing.T) {
	if len(planCases) < 50 {
		t.Fatalf("only %d planner cases", len(planCases))
	}
	seen := map[string]bool{}
	for _, tc := range planCases {
		if seen[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			opts := PlanOptions{Mode: Mirror, MaxDelete: -1, Symlinks: true}
			for _, o := range tc.opts {
				o(&opts)
			}
			src, dst := slices.Clone(tc.src), slices.Clone(tc.dst)
			plan := MakePlan(src, dst, opts)
			if !slices.Equal(src, tc.src) || !slices.Equal(dst, tc.dst) {
				t.Errorf("MakePlan changed its input lists")
			}
			got := make([]string, len(plan.Ops))
			for k, op := range plan.Ops {
				got[k] = op.String()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ops differ\n got: %s\nwant: %s", fmtOps(got), fmtOps(tc.want))
			}
			checkSkipped(t, plan.Skipped, tc.skipped)
			switch {
			case tc.refused == nil && plan.DeletesRefused != nil:
				t.Errorf("deletes refused unexpectedly: %v", plan.DeletesRefused)
			case tc.refused != nil && !errors.Is(plan.DeletesRefused, tc.refused):
				t.Errorf("DeletesRefused = %v, want an error wrapping %q", plan.DeletesRefused, tc.refused)
			}
			if !tc.noModel {
				for _, err := range checkPlan(tc.src, tc.dst, opts, plan) {
					t.Errorf("invariant: %v", err)
				}
			}
		})
	}
}

func fmtOps(ops []string) string {
	if len(ops) == 0 {
		return "(none)"
	}
	return "[" + strings.Join(ops, "; ") + "]"
}

func checkSkipped(t *testing.T, got []Problem, want map[string]error) {
	t.Helper()
	gotPaths := map[string]Problem{}
	for _, p := range got {
		gotPaths[p.Path] = p
		if _, ok := want[p.Path]; !ok {
			t.Errorf("unexpected skipped %v", p)
		}
	}
	for path, class := range want {
		p, ok := gotPaths[path]
		switch {
		case !ok:
			t.Errorf("%q not skipped, want a problem (class %v)", path, class)
		case class != nil && !errors.Is(p.Err, class):
			t.Errorf("skipped %q with %v, want an error wrapping %q", path, p.Err, class)
		}
	}
}

func TestComparePaths(t *testing.T) {
	ordered := []string{"", "a", "a/b", "a/b/c", "a/b-c", "a/bc", "a b", "a-b", "a-b/c", "a.b", "aa", "b", "ß"}
	for i := range ordered {
		for j := range ordered {
			got := ComparePaths(ordered[i], ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got != want {
				t.Errorf("ComparePaths(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	es := make([]backends.FileInfo, 0, len(ordered))
	for k := len(ordered) - 1; k >= 0; k-- {
		es = append(es, backends.FileInfo{Path: ordered[k]})
	}
	SortEntries(es)
	for k, e := range es {
		if e.Path != ordered[k] {
			t.Errorf("SortEntries: position %d holds %q, want %q", k, e.Path, ordered[k])
		}
	}
}

func TestPlanRefusalMessagesSayWhy(t *testing.T) {
	src := fs_(file("n", 1, 1))
	dst := fs_(file("a", 1, 1), file("b", 1, 1), file("c", 1, 1))
	plan := MakePlan(src, dst, PlanOptions{MaxDelete: 2})
	msg := fmt.Sprint(plan.DeletesRefused)
	for _, want := range []string{"3", "2"} {
		if !strings.Contains(msg, want) {
			t.Errorf("DeletesRefused %q does not mention %s", msg, want)
		}
	}
}
