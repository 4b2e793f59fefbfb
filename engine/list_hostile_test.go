package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

// hostileLister serves a target whose listings carry names a compromised
// server could send: names that cannot exist on a POSIX filesystem ("..",
// "a/b", NUL) and control characters. A backend should already refuse them;
// the engine must not trust that it did.
type hostileLister struct {
	*listFake
	dir   string
	extra []backends.FileInfo
}

func (h *hostileLister) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	es, err := h.listFake.List(ctx, dir)
	if dir == h.dir {
		es = append(es, h.extra...)
	}
	return es, err
}

func TestListTargetRefusesHostileNames(t *testing.T) {
	cases := []struct {
		name string
		dir  string // the directory whose listing carries the entry
		path string // the entry's path as the listing gives it
	}{
		{"dot-dot", "", ".."},
		{"dot", "", "."},
		{"dot-dot inside a directory", "ok", "ok/.."},
		{"escape through dot-dot", "ok", "ok/../../etc/passwd"},
		{"absolute path", "", "/etc/passwd"},
		{"slash in the name", "ok", "ok/a/b"},
		{"entry of another directory", "ok", "other/f"},
		{"empty name", "ok", "ok/"},
		{"NUL", "", "x\x00y"},
		{"newline", "", "evil\nlevel=ERROR msg=forged"},
		{"carriage return", "ok", "ok/a\rb"},
		{"SOH", "", "\x01"},
		{"escape sequence", "", "\x1b[2Jcleared"},
		{"DEL", "", "a\x7f"},
		{"C1 control", "", "a\u0085b"},
		{"invalid UTF-8", "", "a\xffb"},
		{"hostile directory", "", "d\x02ir"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := newListFake(file("keep", 1, 1), dir("ok", 1), file("ok/f", 2, 1))
			e := file(tc.path, 3, 1)
			if tc.name == "hostile directory" {
				e = dir(tc.path, 1)
			}
			h := &hostileLister{listFake: fake, dir: tc.dir, extra: []backends.FileInfo{e}}
			es, partials, problems, err := ListTarget(context.Background(), h, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range append(es, partials...) {
				if x.Path == tc.path {
					t.Fatalf("the hostile entry %q was accepted", tc.path)
				}
				if err := backends.CheckPath(x.Path); err != nil {
					t.Errorf("entry %q fails CheckPath: %v", x.Path, err)
				}
			}
			p := problemFor(problems, tc.path)
			if p == nil || !errors.Is(p.Err, backends.ErrUnsafePath) {
				t.Fatalf("no ErrUnsafePath problem for %q: %v", tc.path, problems)
			}
			// A problem makes the caller plan no deletes; the safe
			// entries are still all there.
			m := byPath(es)
			for _, want := range []string{"keep", "ok", "ok/f"} {
				if _, ok := m[want]; !ok {
					t.Errorf("safe entry %s missing: %v", want, paths(es))
				}
			}
		})
	}
}
