package engine

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirent encodes one linux_dirent64 record, padded to 8 bytes as the
// kernel does.
func dirent(ino uint64, name string) []byte {
	n := (19 + len(name) + 1 + 7) &^ 7
	b := make([]byte, n)
	binary.NativeEndian.PutUint64(b[0:], ino)
	binary.NativeEndian.PutUint16(b[16:], uint16(n))
	copy(b[19:], name)
	return b
}

// TestAppendNames: records are read as far as their lengths fit, and a
// buffer whose records do not add up fails rather than dropping the names
// after the damage.
func TestAppendNames(t *testing.T) {
	good := append(append(append(dirent(1, "."), dirent(2, "..")...), dirent(3, "a")...), dirent(0, "gone")...)
	good = append(good, dirent(4, "long-name.txt")...)
	setLen := func(b []byte, at, n int) []byte {
		b = append([]byte(nil), b...)
		binary.NativeEndian.PutUint16(b[at+16:], uint16(n))
		return b
	}
	last := len(good) - len(dirent(4, "long-name.txt"))
	for _, tc := range []struct {
		name    string
		buf     []byte
		want    string
		wantErr bool
	}{
		{"whole records", good, "a,long-name.txt", false},
		{"empty", nil, "", false},
		{"last record cut", good[:len(good)-3], "a", true},
		{"tail shorter than a header", good[:last+10], "a", true},
		{"length past the end", setLen(good, last, 200), "a", true},
		{"length below a header", setLen(good, last, 8), "a", true},
		{"zero length", setLen(good, 0, 0), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			names, err := appendNames(nil, tc.buf)
			got := strings.ReplaceAll(strings.TrimSuffix(string(names), "\x00"), "\x00", ",")
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("names %q, err %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestScanDirSwappedForLink: a directory replaced by a link after its
// parent was read is not followed out of the root when its own contents
// are read: the read fails (a problem, so nothing is deleted) and nothing
// of the link's target is listed.
func TestScanDirSwappedForLink(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "src"), filepath.Join(base, "outside")
	mkTree(t, root, map[string]string{"a/b/inner": "x", "c": "y"})
	mkTree(t, outside, map[string]string{"b/secret": "z"})
	t.Cleanup(func() { readDirFault = nil })
	readDirFault = func(path string) error {
		if path == filepath.Join(root, "a", "b") {
			if err := os.Rename(filepath.Join(root, "a"), filepath.Join(base, "a.moved")); err != nil {
				return err
			}
			return os.Symlink(outside, filepath.Join(root, "a"))
		}
		return nil
	}
	es, problems, err := Scan(context.Background(), root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if strings.Contains(e.Path, "secret") {
			t.Errorf("scan followed the link out of the root: %v", paths(es))
		}
	}
	t.Logf("scanned %v", paths(es))
	if p := problemFor(problems, "a/b"); p == nil {
		t.Errorf("no problem for a/b (problems %v): a run would delete", problems)
	}
	if !Incomplete(problems) {
		t.Error("problems do not make the plan incomplete")
	}
}
