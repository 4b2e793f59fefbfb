package backends

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"Plain", "file.txt", true},
		{"Space", "with space", true},
		{"Unicode", "ünïcödé 日本", true},
		{"LeadingDash", "-rf", true},
		{"Dots", "..x", true},
		{"Hidden", ".hidden", true},
		{"MaxLen", strings.Repeat("a", MaxNameLen), true},
		{"MaxLenMultibyte", strings.Repeat("é", 127) + "x", true},
		{"Empty", "", false},
		{"Dot", ".", false},
		{"DotDot", "..", false},
		{"TooLong", strings.Repeat("a", MaxNameLen+1), false},
		{"Slash", "a/b", false},
		{"NUL", "a\x00b", false},
		{"Newline", "a\nb", false},
		{"CarriageReturn", "a\rb", false},
		{"Tab", "a\tb", false},
		{"DEL", "a\x7fb", false},
		{"C1NextLine", "a\u0085b", false},
		{"C1CSI", "a\u009bb", false},
		{"NonBreakingSpaceIsFine", "a\u00a0b", true},
		{"InvalidUTF8", "a\xffb", false},
		{"TruncatedRune", "\xc3", false},
		{"Backslash", `a\b`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsafePath) {
				t.Errorf("CheckName(%q) = %v, not wrapping ErrUnsafePath", tt.in, err)
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"Root", "", true},
		{"One", "a", true},
		{"Nested", "a/b/c", true},
		{"UnicodeNested", "dír/ñ/файл", true},
		{"Absolute", "/etc/passwd", false},
		{"ParentFirst", "../x", false},
		{"ParentMiddle", "a/../../x", false},
		{"ParentInside", "a/../b", false},
		{"DotElement", "a/./b", false},
		{"DoubleSlash", "a//b", false},
		{"TrailingSlash", "a/", false},
		{"LeadingDot", "./a", false},
		{"NUL", "a\x00b", false},
		{"NewlineInDir", "a\nb/c", false},
		{"LongElement", "a/" + strings.Repeat("x", 256), false},
		{"LongPathShortElements", strings.Repeat("abc/", 2000) + "d", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPath(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckPath(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrUnsafePath) {
				t.Errorf("CheckPath(%q) = %v, not wrapping ErrUnsafePath", tt.in, err)
			}
		})
	}
}

func TestJoinSplit(t *testing.T) {
	tests := []struct {
		name, dir, elem, path string
	}{
		{"AtRoot", "", "a", "a"},
		{"Nested", "a/b", "c", "a/b/c"},
		{"OneDir", "a", "b", "a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Join(tt.dir, tt.elem); got != tt.path {
				t.Errorf("Join(%q, %q) = %q, want %q", tt.dir, tt.elem, got, tt.path)
			}
			dir, elem := Split(tt.path)
			if dir != tt.dir || elem != tt.elem {
				t.Errorf("Split(%q) = %q, %q, want %q, %q", tt.path, dir, elem, tt.dir, tt.elem)
			}
		})
	}
}

func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"", "a/b", "../x", "a//b", "a/./b", "ü/ñ", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil {
			return
		}
		// Whatever passes must be a clean relative path that cannot leave
		// the root, and must split and join back to itself.
		if strings.HasPrefix(p, "/") || strings.Contains(p, "//") || strings.HasSuffix(p, "/") && p != "" {
			t.Fatalf("CheckPath accepted %q", p)
		}
		for elem := range strings.SplitSeq(p, "/") {
			if p != "" && (elem == "" || elem == "." || elem == ".." || strings.ContainsRune(elem, 0)) {
				t.Fatalf("CheckPath accepted %q with element %q", p, elem)
			}
		}
		if p != "" {
			if d, n := Split(p); Join(d, n) != p {
				t.Fatalf("Join(Split(%q)) = %q", p, Join(d, n))
			}
		}
	})
}
