package state

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func file(p string, size int64, sec int64) backends.FileInfo {
	return backends.FileInfo{Path: p, Size: size, ModTime: time.Unix(sec, 123456789), Mode: 0o644}
}

func dir(p string) backends.FileInfo {
	return backends.FileInfo{Path: p, ModTime: time.Unix(1000, 0), Mode: fs.ModeDir | 0o755}
}

func paths(es []backends.FileInfo) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func openT(t *testing.T, path, target string) *Store {
	t.Helper()
	s, err := Open(path, Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st", "x.db")
	s := openT(t, path, "sftp://h/root")
	h, _ := s.Header()
	if !h.ListedAt.IsZero() || h.Clean {
		t.Fatalf("new store header %+v: want never listed, not clean", h)
	}
	link := backends.FileInfo{Path: "a/l", Mode: fs.ModeSymlink | 0o777, LinkTarget: "../x y", ModTime: time.Unix(5, 0)}
	hashed := file("a-b", 7, 99)
	hashed.Hash = strings.Repeat("ab", 32)
	in := []backends.FileInfo{hashed, dir("a"), file("a/f", 1<<40, -5), link, file("a/b/c", 0, 1)}
	at := time.Unix(1700000000, 0)
	if err := s.Replace(in, at); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, %v: want 0600", st.Mode().Perm(), err)
	}
	if d, _ := os.Stat(filepath.Dir(path)); d.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v: want 0700", d.Mode().Perm())
	}
	s = openT(t, path, "sftp://h/root")
	defer s.Close()
	got, err := s.Entries()
	if err != nil {
		t.Fatal(err)
	}
	// The engine's order: "a" and its subtree before "a-b".
	if want := []string{"a", "a/b/c", "a/f", "a/l", "a-b"}; !slices.Equal(paths(got), want) {
		t.Fatalf("order %v, want %v", paths(got), want)
	}
	byPath := map[string]backends.FileInfo{}
	for _, e := range in {
		byPath[e.Path] = e
	}
	for _, g := range got {
		w := byPath[g.Path]
		if g.Size != w.Size || !g.ModTime.Equal(w.ModTime) || g.Mode != w.Mode || g.LinkTarget != w.LinkTarget || g.Hash != w.Hash {
			t.Errorf("%s: got %+v, want %+v", g.Path, g, w)
		}
	}
	if h, _ := s.Header(); !h.ListedAt.Equal(at) {
		t.Errorf("listed at %v, want %v", h.ListedAt, at)
	}
}

func TestMutations(t *testing.T) {
	cases := []struct {
		name string
		do   func(s *Store)
		want []string
	}{
		{"put", func(s *Store) { s.Put(file("d/new", 1, 1)) }, []string{"d", "d/x", "d/y", "d/y/z", "d-e", "d/new"}},
		{"delete subtree", func(s *Store) { s.Delete("d/y") }, []string{"d", "d/x", "d-e"}},
		{"rename dir", func(s *Store) { s.Rename("d", "m") }, []string{"d-e", "m", "m/x", "m/y", "m/y/z"}},
		{"rename file over file", func(s *Store) { s.Rename("d/x", "d-e") }, []string{"d", "d/y", "d/y/z", "d-e"}},
		{"delete missing", func(s *Store) { s.Delete("nope") }, []string{"d", "d/x", "d/y", "d/y/z", "d-e"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
			defer s.Close()
			if err := s.Replace([]backends.FileInfo{dir("d"), file("d/x", 1, 1), dir("d/y"), file("d/y/z", 2, 2), file("d-e", 3, 3)}, time.Now()); err != nil {
				t.Fatal(err)
			}
			c.do(s)
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := s.Entries()
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(c.want)
			slices.SortFunc(want, func(a, b string) int { return strings.Compare(string(encodeKey(a)), string(encodeKey(b))) })
			if !slices.Equal(paths(got), want) {
				t.Fatalf("got %v, want %v", paths(got), want)
			}
		})
	}
}

func TestModTimeAndModeUpdates(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
	defer s.Close()
	s.Put(file("f", 1, 1))
	s.SetModTime("f", time.Unix(42, 7))
	s.SetMode("f", 0o600)
	s.SetModTime("ghost", time.Unix(1, 0))
	s.Flush()
	got, _ := s.Entries()
	if len(got) != 1 || !got[0].ModTime.Equal(time.Unix(42, 7)) || got[0].Mode != 0o600 {
		t.Fatalf("got %+v", got)
	}
}

func TestInFlight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openT(t, path, "t")
	if err := s.Begin([]string{"a", "b/c", "d"}); err != nil {
		t.Fatal(err)
	}
	s.Put(file("a", 1, 1))
	s.Rename("d", "e")
	// A crash now: nothing flushed yet but Begin.
	s.db.Close()
	s = openT(t, path, "t")
	fl, _ := s.InFlight()
	if !slices.Equal(fl, []string{"a", "b/c", "d"}) {
		t.Fatalf("in flight after crash %v", fl)
	}
	s.Put(file("a", 1, 1))
	s.Settled("d")
	s.Flush()
	fl, _ = s.InFlight()
	if !slices.Equal(fl, []string{"b/c"}) {
		t.Fatalf("in flight %v, want [b/c]", fl)
	}
	if h, _ := s.Header(); h.Clean {
		t.Fatal("clean while a run is in progress")
	}
	s.End(true)
	fl, _ = s.InFlight()
	if h, _ := s.Header(); !h.Clean || len(fl) != 0 {
		t.Fatalf("after End(true): clean %v, in flight %v", h.Clean, fl)
	}
	s.Close()
}

func TestUntrustedFilesRebuilt(t *testing.T) {
	cases := []struct {
		name   string
		make   func(t *testing.T, path string)
		reason string
	}{
		{"garbage", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		}, "cannot open"},
		{"truncated", func(t *testing.T, path string) {
			s := openT(t, path, "t")
			s.Replace([]backends.FileInfo{file("x", 1, 1)}, time.Now())
			s.Close()
			b, _ := os.ReadFile(path)
			os.WriteFile(path, b[:100], 0o600)
		}, "cannot open"},
		{"other target", func(t *testing.T, path string) {
			s := openT(t, path, "sftp://other/root")
			s.Replace([]backends.FileInfo{file("x", 1, 1)}, time.Now())
			s.Close()
		}, "made for target"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			c.make(t, path)
			s := openT(t, path, "t")
			defer s.Close()
			if !strings.Contains(s.Rebuilt(), c.reason) {
				t.Fatalf("Rebuilt() = %q, want it to say %q", s.Rebuilt(), c.reason)
			}
			got, _ := s.Entries()
			h, _ := s.Header()
			if len(got) != 0 || !h.ListedAt.IsZero() {
				t.Fatalf("rebuilt store holds %v, listed %v: want empty, never listed", paths(got), h.ListedAt)
			}
			aside, _ := filepath.Glob(path + ".bad-*")
			if len(aside) != 1 {
				t.Fatalf("moved aside: %v", aside)
			}
		})
	}
}

func TestScopeChangeEmpties(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, _ := Open(path, Options{Target: "t", Scope: "a"})
	s.Replace([]backends.FileInfo{file("x", 1, 1)}, time.Now())
	s.Close()
	s, _ = Open(path, Options{Target: "t", Scope: "b"})
	defer s.Close()
	got, _ := s.Entries()
	h, _ := s.Header()
	if len(got) != 0 || !h.ListedAt.IsZero() || s.Rebuilt() != "" {
		t.Fatalf("scope change: entries %v listed %v rebuilt %q", paths(got), h.ListedAt, s.Rebuilt())
	}
}

func TestCorruptRecord(t *testing.T) {
	if _, err := decodeValue("x", []byte{0xff}); err == nil {
		t.Fatal("truncated record decoded")
	}
	fi := file("x", 5, 5)
	v := encodeValue(&fi)
	if _, err := decodeValue("x", append(v, 1)); err == nil {
		t.Fatal("record with trailing bytes decoded")
	}
}

func TestInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s := openT(t, path, "t")
	defer s.Close()
	if _, err := Open(path, Options{Target: "t"}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want in use", err)
	}
	if aside, _ := filepath.Glob(path + ".bad-*"); len(aside) != 0 {
		t.Fatal("a file in use was moved aside")
	}
}

func TestPutNewKeepsARecord(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
	defer s.Close()
	old := dir("d")
	old.ModTime = time.Unix(77, 0)
	s.Put(old)
	s.PutNew(backends.FileInfo{Path: "d", Mode: fs.ModeDir | 0o700})
	s.PutNew(backends.FileInfo{Path: "e", Mode: fs.ModeDir | 0o700})
	s.Flush()
	got, _ := s.Entries()
	if len(got) != 2 || !got[0].ModTime.Equal(old.ModTime) || got[0].Mode != old.Mode || got[1].Mode != fs.ModeDir|0o700 {
		t.Fatalf("got %+v", got)
	}
}
