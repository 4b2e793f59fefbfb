package backends

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestPartialName(t *testing.T) {
	mt := time.Date(2022, 1, 2, 3, 4, 5, 6, time.UTC)
	base := PartialName("dir/file.txt", 100, mt)
	tests := []struct {
		name  string
		other string
		same  bool
	}{
		{"Deterministic", PartialName("dir/file.txt", 100, mt), true},
		{"SameInstantOtherZone", PartialName("dir/file.txt", 100, mt.In(time.FixedZone("X", 3600))), true},
		{"OtherSize", PartialName("dir/file.txt", 101, mt), false},
		{"OtherMtime", PartialName("dir/file.txt", 100, mt.Add(time.Nanosecond)), false},
		{"OtherName", PartialName("dir/file.txu", 100, mt), false},
		{"OtherDir", PartialName("dir2/file.txt", 100, mt), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.other == base) != tt.same {
				t.Errorf("PartialName gave %q and %q, want same=%v", base, tt.other, tt.same)
			}
		})
	}
	dir, name := Split(base)
	if dir != "dir" || !strings.HasPrefix(name, PartialPrefix) || !strings.HasSuffix(name, "file.txt") {
		t.Errorf("PartialName = %q, want dir/%s...file.txt", base, PartialPrefix)
	}
	if !IsPartialName(base) || IsPartialName("dir/file.txt") || IsPartialName(PartialPrefix[1:]+"x") {
		t.Error("IsPartialName misjudges")
	}
	if err := CheckPath(base); err != nil {
		t.Errorf("partial name fails CheckPath: %v", err)
	}
}

func TestPartialNameLongNames(t *testing.T) {
	for _, name := range []string{
		strings.Repeat("a", MaxNameLen),
		strings.Repeat("é", 127) + "x",
		strings.Repeat("日", 85),
		"x" + strings.Repeat("🚢", 63),
	} {
		p := PartialName("d/"+name, 1, time.Unix(1, 0))
		_, pn := Split(p)
		if len(pn) > MaxNameLen || !utf8.ValidString(pn) {
			t.Errorf("partial name of a %d-byte name is %d bytes, valid UTF-8 %v", len(name), len(pn), utf8.ValidString(pn))
		}
		if err := CheckName(pn); err != nil {
			t.Errorf("partial name fails CheckName: %v", err)
		}
	}
}

// errReaderAt fails every read.
type errReaderAt struct{ err error }

func (e errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, e.err }

// shortReaderAt reports only its first n bytes, as a partial shorter than
// its stat size would.
type shortReaderAt struct {
	data []byte
	n    int
}

func (s shortReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(s.data[:s.n]).ReadAt(p, off)
}

func TestPartialKey(t *testing.T) {
	mt := time.Unix(1700000000, 0)
	p := PartialName("a/b/f.txt", 10, mt)
	key, ok := PartialKey(p)
	if !ok {
		t.Fatalf("PartialKey(%q) found no key", p)
	}
	cases := []struct {
		name, path string
		want       string // "" for no key
	}{
		{"the partial itself", p, key},
		{"a copy of it", key + ".deadbeef-f.txt", key},
		{"at the root", PartialName("f", 1, mt), func() string { k, _ := PartialKey(PartialName("f", 1, mt)); return k }()},
		{"another size", PartialName("a/b/f.txt", 11, mt), func() string { k, _ := PartialKey(PartialName("a/b/f.txt", 11, mt)); return k }()},
		{"not a partial", "a/b/f.txt", ""},
		{"a symlink's temporary name", "a/" + PartialPrefix + "link-00161ec9a35cfe7c", ""},
		{"an aside name", "a/" + PartialPrefix + "aside-1732553123456789-f", ""},
		{"a tag and nothing after", "a/" + PartialPrefix + "0123456789abcdef", ""},
		{"upper-case tag", "a/" + PartialPrefix + "0123456789ABCDEF-f", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PartialKey(tc.path)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("PartialKey(%q) = %q, %v; want %q", tc.path, got, ok, tc.want)
			}
		})
	}
	if other, _ := PartialKey(PartialName("a/b/f.txt", 11, mt)); other == key {
		t.Errorf("partials of two sizes share the key %q", key)
	}
	if dir, _ := Split(key); dir != "a/b" {
		t.Errorf("key %q is not in the partial's directory", key)
	}
}

func TestPartialFinal(t *testing.T) {
	mt := time.Unix(1700000000, 0)
	p := PartialName("a/b/f.txt", 10, mt)
	key, _ := PartialKey(p)
	cases := []struct {
		name, path, want string // want "" for none
	}{
		{"a partial", p, "a/b/f.txt"},
		{"a copy of it", key + ".deadbeef-f.txt", "a/b/f.txt"},
		{"at the root", PartialName("f-g", 1, mt), "f-g"},
		{"a copy with no name after its own part", key + ".deadbeef", ""},
		{"not a partial", "a/b/f.txt", ""},
		{"a symlink's temporary name", "a/" + PartialPrefix + "link-00161ec9a35cfe7c", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PartialFinal(tc.path)
			if ok != (tc.want != "") || got != tc.want {
				t.Errorf("PartialFinal(%q) = %q, %v; want %q", tc.path, got, ok, tc.want)
			}
		})
	}
}

func TestResumeOffset(t *testing.T) {
	src := make([]byte, 1<<20)
	for i := range src {
		src[i] = byte(i*7 + i>>9)
	}
	corrupt := func(at ...int) []byte {
		b := bytes.Clone(src)
		for _, i := range at {
			b[i] ^= 0xff
		}
		return b
	}
	const window = 64 << 10
	tests := []struct {
		name    string
		partial []byte
		n       int64
		srcSize int64
		want    int64
	}{
		{"Empty", nil, 0, int64(len(src)), 0},
		{"AllMatch", src[:500000], 500000, int64(len(src)), 500000},
		{"Complete", src, int64(len(src)), int64(len(src)), int64(len(src))},
		{"GarbageAtTail", corrupt(499999)[:500000], 500000, int64(len(src)), 499999},
		{"GarbageInWindow", corrupt(500000 - 1000)[:500000], 500000, int64(len(src)), 499000},
		{"EarliestDiffWins", corrupt(490000, 499000)[:500000], 500000, int64(len(src)), 490000},
		// Below the window nothing is compared: writes are issued in order,
		// so damage there cannot happen, and it is not looked for.
		{"BelowWindowNotChecked", corrupt(1000)[:500000], 500000, int64(len(src)), 500000},
		{"LongerThanSource", append(bytes.Clone(src[:1000]), 1, 2, 3), 1003, 1000, 1000},
		{"SmallerThanWindow", corrupt(10)[:100], 100, int64(len(src)), 10},
		{"DiffAtFirstByte", corrupt(0)[:100], 100, int64(len(src)), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResumeOffset(bytes.NewReader(tt.partial), tt.n, bytes.NewReader(src[:tt.srcSize]), tt.srcSize, window)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ResumeOffset = %d, want %d", got, tt.want)
			}
		})
	}

	t.Run("PartialShorterThanStat", func(t *testing.T) {
		got, err := ResumeOffset(shortReaderAt{src, 300000}, 400000, bytes.NewReader(src), int64(len(src)), 1<<20)
		if err != nil || got != 300000 {
			t.Errorf("ResumeOffset = %d, %v; want 300000", got, err)
		}
	})
	errRead := errors.New("read failed")
	t.Run("PartialReadError", func(t *testing.T) {
		if _, err := ResumeOffset(errReaderAt{errRead}, 100, bytes.NewReader(src), int64(len(src)), window); !errors.Is(err, errRead) {
			t.Errorf("err = %v, want the partial's read error", err)
		}
	})
	t.Run("SourceReadError", func(t *testing.T) {
		if _, err := ResumeOffset(bytes.NewReader(src), 100, errReaderAt{errRead}, int64(len(src)), window); !errors.Is(err, errRead) {
			t.Errorf("err = %v, want the source's read error", err)
		}
	})
}
