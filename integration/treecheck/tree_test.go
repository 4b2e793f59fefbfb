package treecheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

var small = Spec{Seed: 42, Dirs: 12, SmallFiles: 60, LargeFiles: 2, LargeMin: 100 << 10, LargeMax: 300 << 10, Symlinks: 4}

// clone copies src to a new directory with cp -a, which keeps mtimes,
// modes and symlinks: an independent reference copier.
func clone(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

func gen(t *testing.T, spec Spec) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "src")
	if err := Generate(root, spec); err != nil {
		t.Fatal(err)
	}
	return root
}

var all = Options{ModTime: true, DirModTime: true, Perm: true}

func TestGenerateIsSeeded(t *testing.T) {
	a, b := gen(t, small), gen(t, small)
	diff, err := Compare(a, b, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Fatalf("same seed, different trees:\n%s", strings.Join(diff, "\n"))
	}
	tr, err := Scan(a, false)
	if err != nil {
		t.Fatal(err)
	}
	var files, dirs, links, large int
	for _, e := range tr {
		switch e.Kind {
		case File:
			files++
			if e.Size >= small.LargeMin {
				large++
			}
			if e.ModTime.After(time.Now().Add(-24 * time.Hour)) {
				t.Errorf("%s: mtime %v not set into the past", e.Path, e.ModTime)
			}
		case Dir:
			dirs++
		case Symlink:
			links++
			if _, err := os.Stat(filepath.Join(a, e.Path)); err != nil {
				t.Errorf("symlink %s -> %s dangles: %v", e.Path, e.Link, err)
			}
		}
	}
	if files != small.SmallFiles+small.LargeFiles || dirs != small.Dirs || links != small.Symlinks || large < small.LargeFiles {
		t.Fatalf("got %d files (%d large), %d dirs, %d links", files, large, dirs, links)
	}

	other := small
	other.Seed++
	diff, err = Compare(a, gen(t, other), all)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) == 0 {
		t.Fatal("different seeds gave equal trees")
	}
}

func TestDiffFindsEachDifference(t *testing.T) {
	src := gen(t, small)
	tr, err := Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	var file, link, dir string
	for _, p := range tr.Paths() {
		switch e := tr[p]; {
		case e.Kind == File && e.Size > 10 && file == "":
			file = p
		case e.Kind == Symlink && link == "":
			link = p
		case e.Kind == Dir && dir == "":
			dir = p
		}
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, root string)
		opts   Options
		want   string // in the one reported line; "" means no difference
	}{
		{"identical copy", func(*testing.T, string) {}, all, ""},
		{"same size, one byte changed", func(t *testing.T, r string) {
			p := filepath.Join(r, file)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			fi, _ := os.Stat(p)
			must(t, os.WriteFile(p, b, 0o644))
			must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
		}, Options{}, file + ": content differs"},
		{"truncated", func(t *testing.T, r string) {
			must(t, os.Truncate(filepath.Join(r, file), 3))
		}, Options{}, file + ": size 3"},
		{"missing", func(t *testing.T, r string) {
			must(t, os.Remove(filepath.Join(r, file)))
		}, Options{}, file + ": missing"},
		{"extra", func(t *testing.T, r string) {
			must(t, os.WriteFile(filepath.Join(r, "extra"), nil, 0o644))
		}, Options{}, "extra: unexpected file"},
		{"partial ignored", func(t *testing.T, r string) {
			must(t, os.WriteFile(filepath.Join(r, backends.PartialName("x", 1, time.Now())), []byte("x"), 0o644))
		}, all, ""},
		{"mtime", func(t *testing.T, r string) {
			tm := time.Now()
			must(t, os.Chtimes(filepath.Join(r, file), tm, tm))
		}, Options{ModTime: true}, file + ": mtime"},
		{"mtime ignored", func(t *testing.T, r string) {
			tm := time.Now()
			must(t, os.Chtimes(filepath.Join(r, file), tm, tm))
		}, Options{}, ""},
		{"mtime within resolution", func(t *testing.T, r string) {
			p := filepath.Join(r, file)
			tm := tr[file].ModTime.Truncate(time.Second).Add(time.Nanosecond)
			if tm.Equal(tr[file].ModTime) {
				tm = tm.Add(time.Nanosecond)
			}
			must(t, os.Chtimes(p, tm, tm))
		}, Options{ModTime: true, ModTimeResolution: time.Second}, ""},
		{"dir mtime", func(t *testing.T, r string) {
			tm := time.Now()
			must(t, os.Chtimes(filepath.Join(r, dir), tm, tm))
		}, all, dir + ": mtime"},
		{"perm", func(t *testing.T, r string) {
			must(t, os.Chmod(filepath.Join(r, file), 0o640))
		}, Options{Perm: true}, file + ": mode"},
		{"symlink target", func(t *testing.T, r string) {
			p := filepath.Join(r, link)
			must(t, os.Remove(p))
			must(t, os.Symlink("elsewhere", p))
		}, Options{}, link + `: links to "elsewhere"`},
		{"file where a link was", func(t *testing.T, r string) {
			p := filepath.Join(r, link)
			must(t, os.Remove(p))
			must(t, os.WriteFile(p, nil, 0o644))
		}, Options{}, link + ": is a file, want a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := clone(t, src)
			tc.change(t, dst)
			diff, err := Compare(src, dst, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && len(diff) > 0:
				t.Fatalf("want no difference, got:\n%s", strings.Join(diff, "\n"))
			case tc.want != "" && (len(diff) != 1 || !strings.HasPrefix(diff[0], tc.want)):
				t.Fatalf("want one line starting %q, got:\n%s", tc.want, strings.Join(diff, "\n"))
			}
		})
	}
}

func TestTornAndPartials(t *testing.T) {
	src := gen(t, small)
	tr, err := Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, p := range tr.Paths() {
		if tr[p].Kind == File && tr[p].Size > 10 {
			files = append(files, p)
		}
	}
	dst := clone(t, src)
	// Missing files, partials and stale mtimes are not torn.
	must(t, os.Remove(filepath.Join(dst, files[0])))
	part := filepath.Join(filepath.Dir(filepath.Join(dst, files[1])), backends.PartialName(filepath.Base(files[1]), 5, time.Now()))
	must(t, os.WriteFile(part, []byte("half"), 0o600))
	tm := time.Now()
	must(t, os.Chtimes(filepath.Join(dst, files[2]), tm, tm))
	torn, err := Torn(tr, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(torn) > 0 {
		t.Fatalf("reported torn:\n%s", strings.Join(torn, "\n"))
	}
	parts, err := Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := filepath.Rel(dst, part); len(parts) != 1 || parts[0] != filepath.ToSlash(rel) {
		t.Fatalf("partials %q, want [%s]", parts, rel)
	}

	// A half-written file at a final name and a stranger are.
	must(t, os.Truncate(filepath.Join(dst, files[3]), tr[files[3]].Size/2))
	must(t, os.WriteFile(filepath.Join(dst, "stranger"), nil, 0o644))
	torn, err = Torn(tr, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(torn) != 2 || !strings.HasPrefix(torn[0], files[3]+": torn") && !strings.HasPrefix(torn[1], files[3]+": torn") {
		t.Fatalf("want %s torn and a stranger, got:\n%s", files[3], strings.Join(torn, "\n"))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTornCheckerSeesEveryChange(t *testing.T) {
	src := gen(t, small)
	tr, err := Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	var file string
	for _, p := range tr.Paths() {
		if tr[p].Kind == File && tr[p].Size > 10 {
			file = p
			break
		}
	}
	dst := clone(t, src)
	c := NewTornChecker(tr)
	check := func(wantTorn bool) {
		t.Helper()
		got, err := c.Check(dst)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Torn(tr, dst)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("checker says:\n%s\nTorn says:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if (len(got) > 0) != wantTorn {
			t.Fatalf("torn %v, want %v: %q", len(got) > 0, wantTorn, got)
		}
	}
	check(false)
	check(false) // from the cache

	// Same size, same mtime, other bytes: only the ctime tells.
	p := filepath.Join(dst, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	must(t, os.WriteFile(p, b, 0o644))
	must(t, os.Chtimes(p, tr[file].ModTime, tr[file].ModTime))
	check(true)
	check(true)

	// Put right by a rename over it, as ferry publishes.
	tmp := filepath.Join(filepath.Dir(p), "x.tmp")
	b[0] ^= 0xff
	must(t, os.WriteFile(tmp, b, 0o644))
	must(t, os.Rename(tmp, p))
	check(false)

	// Gone, then back torn.
	must(t, os.Remove(p))
	check(false)
	must(t, os.WriteFile(p, b[:1], 0o644))
	check(true)
}
