package engine

import (
	"strings"
	"testing"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ferrysync/ferry/backends"
)

func TestFilterExcluded(t *testing.T) {
	type probe struct {
		path  string
		isDir bool
		want  bool
	}
	cases := []struct {
		name     string
		patterns []string
		probes   []probe
	}{
		{"a pattern without a slash matches the name at any depth", []string{"*.log"}, []probe{
			{"a.log", false, true},
			{"x/y/a.log", false, true},
			{"a.log.txt", false, false},
			{"log", false, false},
			{"dir.log", true, true},
		}},
		{"a leading slash anchors at the root", []string{"/build"}, []probe{
			{"build", true, true},
			{"build", false, true},
			{"build/x", false, true},
			{"a/build", true, false},
			{"a/build/x", false, false},
			{"builds", true, false},
		}},
		{"a trailing slash matches directories only", []string{"node_modules/"}, []probe{
			{"node_modules", true, true},
			{"node_modules", false, false},
			{"a/node_modules", true, true},
			{"a/node_modules/pkg/index.js", false, true},
		}},
		{"'**/tmp/**' excludes what is under any tmp", []string{"**/tmp/**"}, []probe{
			{"tmp/x", false, true},
			{"a/b/tmp/x", false, true},
			{"a/tmp/d/x", false, true},
			{"a/tmpx/y", false, false},
			{"a/x", false, false},
		}},
		{"a slash inside anchors: 'docs/*.md'", []string{"docs/*.md"}, []probe{
			{"docs/a.md", false, true},
			{"docs/a.txt", false, false},
			{"docs/sub/a.md", false, false},
			{"x/docs/a.md", false, false},
		}},
		{"'**/' at the start matches at any depth, '**' spans directories", []string{"**/cache", "a/**/z"}, []probe{
			{"cache", true, true},
			{"q/cache", false, true},
			{"q/cache/f", false, true},
			{"a/z", false, true},
			{"a/b/c/z", false, true},
			{"b/a/z", false, false},
		}},
		{"'!' re-includes what an earlier pattern excluded", []string{"*.log", "!keep.log"}, []probe{
			{"a.log", false, true},
			{"keep.log", false, false},
			{"d/keep.log", false, false},
		}},
		{"the last matching pattern wins", []string{"!keep.log", "*.log"}, []probe{
			{"keep.log", false, true},
		}},
		{"'!' cannot re-include under an excluded directory", []string{"/build", "!build/keep"}, []probe{
			{"build/keep", false, true},
			{"build", true, true},
		}},
		{"an anchored negation re-includes one path only", []string{"*.log", "!a/x.log"}, []probe{
			{"a/x.log", false, false},
			{"b/x.log", false, true},
			{"x.log", false, true},
		}},
		{"character classes and alternatives", []string{"file[0-9].txt", "*.{jpg,png}"}, []probe{
			{"file1.txt", false, true},
			{"filea.txt", false, false},
			{"p/i.png", false, true},
			{"p/i.gif", false, false},
		}},
		{"a '*' does not cross a slash", []string{"a/*"}, []probe{
			{"a/b", false, true},
			{"a/b/c", false, true}, // through the excluded directory a/b
			{"ab", false, false},
		}},
		{"a backslash escapes a wildcard", []string{`\*.txt`}, []probe{
			{"*.txt", false, true},
			{"a.txt", false, false},
		}},
		{"partial files are always excluded", []string{"*.log"}, []probe{
			{backends.PartialPrefix + "00-x", false, true},
			{"d/" + backends.PartialPrefix + "00-x", false, true},
			{"d/x", false, false},
		}},
		{"no patterns exclude only partial files", nil, []probe{
			{"a", false, false},
			{"a/b", true, false},
			{backends.PartialPrefix + "ab-c", false, true},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(tc.patterns)
			if err != nil {
				t.Fatalf("NewFilter(%q): %v", tc.patterns, err)
			}
			for _, p := range tc.probes {
				if got := f.Excluded(p.path, p.isDir); got != p.want {
					t.Errorf("patterns %q: Excluded(%q, dir=%v) = %v, want %v", tc.patterns, p.path, p.isDir, got, p.want)
				}
			}
		})
	}
}

func TestFilterNilExcludesOnlyPartials(t *testing.T) {
	var f *Filter
	if f.Excluded("a/b.log", false) {
		t.Error("nil filter excludes an ordinary path")
	}
	if !f.Excluded("a/"+backends.PartialPrefix+"1-b", false) {
		t.Error("nil filter does not exclude a partial file")
	}
	if !f.Empty() || f.String() != "[]" {
		t.Errorf("nil filter: Empty %v, String %q", f.Empty(), f.String())
	}
}

func TestNewFilterRejectsBadPatterns(t *testing.T) {
	for _, p := range []string{"", "!", "/", "a[b", "{a,b", `x\`, "a//b"} {
		_, err := NewFilter([]string{"ok", p})
		if err == nil {
			t.Errorf("NewFilter accepted %q", p)
			continue
		}
		if !strings.Contains(err.Error(), `"`+p+`"`) && !strings.Contains(err.Error(), strings.ReplaceAll(`"`+p+`"`, `\`, `\\`)) {
			t.Errorf("error for %q does not name the pattern: %v", p, err)
		}
	}
}

func TestFilterString(t *testing.T) {
	f, err := NewFilter([]string{"*.log", "!keep.log"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != "[*.log !keep.log]" {
		t.Errorf("String() = %q", got)
	}
}

func BenchmarkFilterExcluded(b *testing.B) {
	f, err := NewFilter([]string{"*.log", "node_modules/", "/build", "**/tmp/**", "docs/*.md", "!keep.log"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		f.Excluded("src/module/sub/deeper/file.go", false)
	}
}

// The string fast paths for names, "*.ext" and "prefix*" must agree with the
// glob matcher they stand in for.
func TestFilterFastPathsAgreeWithGlob(t *testing.T) {
	patterns := []string{"*.log", "tmp*", "a", "*", ".*", "*.tar.gz", "x*y", "*~"}
	names := []string{"a", "a.log", ".log", "log", "tmp", "tmpfile", "atmp", ".hidden", "f.tar.gz", "f.gz", "xy", "xzy", "b~", "~", ""}
	for _, p := range patterns {
		f, err := NewFilter([]string{p})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if n == "" {
				continue
			}
			want, _ := doublestar.Match(p, n)
			if got := f.Excluded("d/"+n, false); got != want {
				t.Errorf("pattern %q, name %q: Excluded %v, glob says %v", p, n, got, want)
			}
		}
	}
}
