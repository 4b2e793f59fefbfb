package backends

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCheckPathHostile holds CheckPath to the whole of its contract on any
// input, the parts FuzzCheckPath leaves out included: an accepted path is
// valid UTF-8 and holds no control character (C0, DEL, C1) and no element
// longer than MaxNameLen; and a path built from elements that CheckName
// accepts is accepted whole, so that the listing check and the path check
// never disagree.
func FuzzCheckPathHostile(f *testing.F) {
	for _, s := range []string{"a/b", "a\nb", "a\x7f/b", "a\u0085b/c", "x/\xffy", "a/" + strings.Repeat("n", MaxNameLen+1), "\x1b[31m/red", "ok/\u00a0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) == nil && p != "" {
			if !utf8.ValidString(p) {
				t.Fatalf("CheckPath accepted invalid UTF-8 %q", p)
			}
			for _, r := range p {
				if unicode.IsControl(r) {
					t.Fatalf("CheckPath accepted %q with control character %U", p, r)
				}
			}
			for elem := range strings.SplitSeq(p, "/") {
				if len(elem) > MaxNameLen {
					t.Fatalf("CheckPath accepted an element of %d bytes", len(elem))
				}
			}
		}
		var elems []string
		for elem := range strings.SplitSeq(p, "/") {
			if CheckName(elem) != nil {
				return
			}
			elems = append(elems, elem)
		}
		if err := CheckPath(strings.Join(elems, "/")); err != nil {
			t.Fatalf("every element of %q passes CheckName, yet CheckPath refuses it: %v", p, err)
		}
	})
}
