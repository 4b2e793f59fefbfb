package sftp

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/ferrysync/ferry/backends"
)

// craftedLister is a compromised server's directory listing: the listing of
// dir carries one extra entry named name, which may hold what no POSIX
// filesystem allows ("/", NUL). Everything else is the in-memory server's.
type craftedLister struct {
	sftp.FileLister
	dir, name string
}

func (c craftedLister) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	la, err := c.FileLister.Filelist(r)
	if err != nil || r.Method != "List" || r.Filepath != c.dir {
		return la, err
	}
	buf := make([]os.FileInfo, 128)
	n, err := la.ListAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return listerAt(append(buf[:n:n], craftedInfo(c.name))), nil
}

// The in-memory server's own lister answers Lstat and friends.
func (c craftedLister) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	if l, ok := c.FileLister.(sftp.LstatFileLister); ok {
		return l.Lstat(r)
	}
	return c.FileLister.Filelist(r)
}

type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

type craftedInfo string

func (c craftedInfo) Name() string       { return string(c) }
func (c craftedInfo) Size() int64        { return 5 }
func (c craftedInfo) Mode() os.FileMode  { return 0o644 }
func (c craftedInfo) ModTime() time.Time { return time.Unix(1e9, 0) }
func (c craftedInfo) IsDir() bool        { return false }
func (c craftedInfo) Sys() any           { return nil }

// TestListRefusesHostileNames serves listings with names a compromised
// server could send. The client library drops "." and ".." and keeps only
// the last element of a name with slashes (so "../../etc/passwd" comes back
// as a direct child named "passwd", which cannot leave the directory);
// every other unsafe name is left out and reported with ErrUnsafePath,
// while the safe entries of the same directory still come back.
func TestListRefusesHostileNames(t *testing.T) {
	cases := []struct {
		name, entry string
		// base: what the client library makes of the name before ferry
		// sees it ("" dropped); the entry then lists as that direct child.
		base  string
		safed bool
	}{
		{"dot-dot", "..", "", true},
		{"dot", ".", "", true},
		{"slash", "a/b", "b", true},
		{"escape", "../../etc/passwd", "passwd", true},
		{"absolute", "/etc/passwd", "passwd", true},
		{"NUL", "x\x00y", "", false},
		{"newline", "evil\nname", "", false},
		{"SOH", "\x01", "", false},
		{"escape sequence", "\x1b[2J", "", false},
		{"C1 control", "a\u0085b", "", false},
		{"invalid UTF-8", "a\xffb", "", false},
		{"empty", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{memFS: true})
			e.srv.memFS.FileList = craftedLister{FileLister: e.srv.memFS.FileList, dir: "/data", name: tc.entry}
			cfg := e.config()
			cfg.Root = "/data"
			b := dial(t, cfg)
			ctx := context.Background()
			mustUpload(t, b, "good", newSource(10, 1))
			es, err := b.List(ctx, "")
			for _, x := range es {
				if x.Path == tc.entry {
					t.Fatalf("List returned the hostile entry %q", tc.entry)
				}
				if err := backends.CheckPath(x.Path); err != nil {
					t.Errorf("List returned %q, which fails CheckPath: %v", x.Path, err)
				}
			}
			if tc.safed {
				want := []string{"good"}
				if tc.base != "" {
					want = append(want, tc.base)
				}
				var got []string
				for _, x := range es {
					got = append(got, x.Path)
				}
				slices.Sort(got)
				slices.Sort(want)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("List = %q, %v; want %q", got, err, want)
				}
				return
			}
			if !errors.Is(err, backends.ErrUnsafePath) {
				t.Fatalf("List with an entry named %q: %v, want ErrUnsafePath", tc.entry, err)
			}
			if len(es) != 1 || es[0].Path != "good" || es[0].Size != 10 {
				t.Errorf("List = %+v; want the safe entry \"good\" beside the error", es)
			}
			if !backends.IsPermanent(err) {
				t.Errorf("a hostile listing should not be retried: %v", err)
			}
		})
	}
}
