package state

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

// TestReaderInOrder reads back, one record at a time, more records than a
// Reader reads between dropping its pages: every path in the engine's
// order, Meta without path and hash, Info whole.
func TestReaderInOrder(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
	defer s.Close()
	want := []backends.FileInfo{
		dir("a"),
		file("a/b", 3, 7),
		{Path: "a/link", Mode: fs.ModeSymlink | 0o777, LinkTarget: "../x", Size: 4, ModTime: time.Unix(9, 0)},
		{Path: "a-b", Size: 5, ModTime: time.Unix(10, 5), Mode: 0o600, Hash: strings.Repeat("ab", 32)},
	}
	for i := range dropEvery + 100 {
		want = append(want, file(fmt.Sprintf("z/%06d", i), int64(i), int64(i)))
	}
	want = append(want[:4], append([]backends.FileInfo{dir("z")}, want[4:]...)...)
	if err := s.Replace(want, time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := s.Reader()
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	n := 0
	for r.Next() {
		if n >= len(want) {
			t.Fatalf("more records than the %d written", len(want))
		}
		w := want[n]
		buf = r.AppendPath(buf[:0])
		if string(buf) != w.Path {
			t.Fatalf("record %d: path %q, want %q", n, buf, w.Path)
		}
		info, err := r.Info()
		if err != nil || !reflect.DeepEqual(info, w) {
			t.Fatalf("record %d: Info %+v, %v; want %+v", n, info, err, w)
		}
		meta, err := r.Meta()
		w.Path, w.Hash = "", ""
		if err != nil || !reflect.DeepEqual(meta, w) {
			t.Fatalf("record %d: Meta %+v, %v; want %+v", n, meta, err, w)
		}
		n++
	}
	if r.Next() {
		t.Error("Next after the end said there was more")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("read %d records, want %d", n, len(want))
	}
	// The store is writable again once the reader is closed.
	if err := s.Put(file("new", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestReaderCorruptRecord: a record that does not decode fails Meta and
// Info with ErrCorrupt, and the records around it still read.
func TestReaderCorruptRecord(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
	defer s.Close()
	if err := s.Replace([]backends.FileInfo{file("a", 1, 1), file("b", 2, 2), file("c", 3, 3)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte("b"), []byte{0xff}) })
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Reader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for r.Next() {
		_, merr := r.Meta()
		_, ierr := r.Info()
		got = append(got, fmt.Sprintf("%s:%v:%v", r.AppendPath(nil), errors.Is(merr, ErrCorrupt), errors.Is(ierr, ErrCorrupt)))
	}
	if want := "[a:false:false b:true:true c:false:false]"; fmt.Sprint(got) != want {
		t.Errorf("read %v, want %s", got, want)
	}
}

// TestDecodeMetaAgreesWithDecodeValue checks the two decoders on damaged
// records: one fails exactly when the other does.
func TestDecodeMetaAgreesWithDecodeValue(t *testing.T) {
	fi := backends.FileInfo{Path: "p", Size: 300, ModTime: time.Unix(1e9, 999), Mode: fs.ModeSymlink | 0o777, LinkTarget: "target", Hash: strings.Repeat("0f", 32)}
	v := encodeValue(&fi)
	for cut := range len(v) + 2 {
		rec := v[:min(cut, len(v))]
		if cut > len(v) {
			rec = append(append([]byte(nil), v...), 1)
		}
		_, merr := decodeMeta([]byte("p"), rec)
		_, verr := decodeValue("p", rec)
		if (merr == nil) != (verr == nil) {
			t.Errorf("record cut to %d bytes: decodeMeta %v, decodeValue %v", cut, merr, verr)
		}
	}
}

// TestReaderCorruptKey: a key that no path encodes to (a raw '/', which
// would sort the record away from its place in the engine's order, an
// empty or dot element, a control byte) fails Meta and Info with
// ErrCorrupt, as does the ForEach behind Entries, so that a damaged file
// never hands the planner a path out of order or outside the root.
func TestReaderCorruptKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
	}{
		{"raw slash", "a/b"},
		{"leading separator", "\x00a"},
		{"trailing separator", "a\x00"},
		{"empty element", "a\x00\x00b"},
		{"dot dot", "..\x00etc"},
		{"dot", "a\x00.\x00b"},
		{"control byte", "a\x01"},
		{"bad utf-8", "a\xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openT(t, filepath.Join(t.TempDir(), "s.db"), "t")
			defer s.Close()
			if err := s.Replace([]backends.FileInfo{file("a", 1, 1), file("b", 2, 2)}, time.Now()); err != nil {
				t.Fatal(err)
			}
			v := encodeValue(&backends.FileInfo{Size: 3, ModTime: time.Unix(3, 0)})
			err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(tc.key), v) })
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.Reader()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			bad := 0
			for r.Next() {
				_, merr := r.Meta()
				_, ierr := r.Info()
				if errors.Is(merr, ErrCorrupt) != errors.Is(ierr, ErrCorrupt) {
					t.Errorf("%q: Meta %v, Info %v", r.AppendPath(nil), merr, ierr)
				}
				if merr != nil {
					bad++
				}
			}
			if bad != 1 {
				t.Errorf("%d records failed, want 1 (the key %q)", bad, tc.key)
			}
			if _, err := s.Entries(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Entries: %v, want ErrCorrupt", err)
			}
		})
	}
}
