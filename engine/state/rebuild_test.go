package state

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

// TestRebuild rebuilds a store from listings, with read and write windows
// of one, two and many records so every window boundary is crossed, and
// checks the records, the differences told and the header.
func TestRebuild(t *testing.T) {
	hashed := file("b", 2, 2)
	hashed.Hash = strings.Repeat("cd", 32)
	tests := []struct {
		name      string
		old, list []backends.FileInfo
		// want is what Diff is told, one "listed|old" pair per path.
		want []string
	}{
		{name: "empty store", list: []backends.FileInfo{dir("a"), file("a/x", 1, 1), file("b", 2, 2)},
			want: []string{"a|-", "a/x|-", "b|-"}},
		{name: "same", old: []backends.FileInfo{dir("a"), file("a/x", 1, 1), hashed}, list: []backends.FileInfo{dir("a"), file("a/x", 1, 1), hashed},
			want: []string{"a|a", "a/x|a/x", "b|b"}},
		{name: "all gone", old: []backends.FileInfo{dir("a"), file("a/x", 1, 1), file("b", 2, 2)},
			want: []string{"-|a", "-|a/x", "-|b"}},
		{name: "mixed", old: []backends.FileInfo{file("a", 1, 1), dir("d"), file("d/x", 1, 1), file("d/y", 1, 1), file("d-e", 3, 3), file("z", 9, 9)},
			list: []backends.FileInfo{file("a", 5, 1), file("b", 2, 2), dir("d"), file("d/y", 1, 1), file("d/yy", 1, 1), file("d-e", 3, 3)},
			want: []string{"a|a", "b|-", "d|d", "-|d/x", "d/y|d/y", "d/yy|-", "d-e|d-e", "-|z"}},
	}
	for _, chunk := range []int{1, 2, 1000} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%s/chunk%d", tc.name, chunk), func(t *testing.T) {
				defer func(c int) { rebuildChunk = c }(rebuildChunk)
				rebuildChunk = chunk
				s := openT(t, filepath.Join(t.TempDir(), "x.db"), "t")
				defer s.Close()
				if err := s.Replace(tc.old, time.Unix(100, 0)); err != nil {
					t.Fatal(err)
				}
				rb, err := s.Rebuild()
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				rb.Diff = func(listed, old *backends.FileInfo, oldErr error) {
					if oldErr != nil {
						t.Errorf("old record unreadable: %v", oldErr)
					}
					name := func(fi *backends.FileInfo) string {
						if fi == nil {
							return "-"
						}
						return fi.Path
					}
					got = append(got, name(listed)+"|"+name(old))
				}
				for _, e := range tc.list {
					if err := rb.Add(e); err != nil {
						t.Fatal(err)
					}
				}
				if h, _ := s.Header(); !h.ListedAt.IsZero() {
					t.Fatalf("store says listed at %v during the rebuild: a crash now would trust it", h.ListedAt)
				}
				at := time.Unix(200, 0)
				if err := rb.Finish(at); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("diff told %q, want %q", got, tc.want)
				}
				ents, err := s.Entries()
				if err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(ents, tc.list, func(a, b backends.FileInfo) bool {
					return a.Path == b.Path && a.Size == b.Size && a.Mode == b.Mode && a.ModTime.Equal(b.ModTime) && a.Hash == b.Hash
				}) {
					t.Errorf("records %q, want %q", paths(ents), paths(tc.list))
				}
				if h, _ := s.Header(); !h.ListedAt.Equal(at) {
					t.Errorf("listed at %v, want %v", h.ListedAt, at)
				}
			})
		}
	}
}

// TestRebuildUntrusted checks that a rebuild abandoned or finished from an
// incomplete listing leaves a store that is never trusted, and that the
// in-flight set is cleared only by Finish.
func TestRebuildUntrusted(t *testing.T) {
	tests := []struct {
		name   string
		finish bool
	}{
		{name: "abandoned"},
		{name: "incomplete listing", finish: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			s := openT(t, path, "t")
			if err := s.Replace([]backends.FileInfo{file("a", 1, 1), file("b", 1, 1)}, time.Unix(100, 0)); err != nil {
				t.Fatal(err)
			}
			if err := s.Begin([]string{"b"}); err != nil {
				t.Fatal(err)
			}
			rb, err := s.Rebuild()
			if err != nil {
				t.Fatal(err)
			}
			if err := rb.Add(file("a", 2, 2)); err != nil {
				t.Fatal(err)
			}
			if tc.finish {
				if err := rb.Finish(time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openT(t, path, "t")
			defer s.Close()
			h, err := s.Header()
			if err != nil {
				t.Fatal(err)
			}
			if !h.ListedAt.IsZero() {
				t.Errorf("listed at %v: want never listed", h.ListedAt)
			}
			fl, err := s.InFlight()
			if err != nil {
				t.Fatal(err)
			}
			if want := !tc.finish; (len(fl) > 0) != want {
				t.Errorf("in flight %q, want some: %v", fl, want)
			}
		})
	}
}

// TestRebuildCorrupt checks that an undecodable record is told as such
// and replaced by the listing's entry.
func TestRebuildCorrupt(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "x.db"), "t")
	defer s.Close()
	if err := s.Replace([]backends.FileInfo{file("a", 1, 1)}, time.Unix(100, 0)); err != nil {
		t.Fatal(err)
	}
	corruptRecord(t, s, "a")
	rb, err := s.Rebuild()
	if err != nil {
		t.Fatal(err)
	}
	var bad int
	rb.Diff = func(_, _ *backends.FileInfo, err error) {
		if errors.Is(err, ErrCorrupt) {
			bad++
		}
	}
	if err := rb.Add(file("a", 3, 3)); err != nil {
		t.Fatal(err)
	}
	if err := rb.Finish(time.Unix(200, 0)); err != nil {
		t.Fatal(err)
	}
	ents, err := s.Entries()
	if err != nil || len(ents) != 1 || ents[0].Size != 3 || bad != 1 {
		t.Fatalf("records %+v, %v, %d corrupt told: want a of size 3, one corrupt", ents, err, bad)
	}
}

// corruptRecord writes an undecodable value at path's record.
func corruptRecord(t *testing.T, s *Store, path string) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put(encodeKey(path), []byte{0xff}) })
	if err != nil {
		t.Fatal(err)
	}
}
