package bench

import (
	"bytes"
	"compress/flate"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestGenTree(t *testing.T) {
	spec := TreeSpec{Dirs: 3, FilesPerDir: 4, FileSize: 1000, Seed: 7}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	for _, root := range []string{a, b} {
		n, err := GenTree(root, spec)
		if err != nil {
			t.Fatal(err)
		}
		if n != 12 {
			t.Fatalf("GenTree wrote %d files, want 12", n)
		}
	}
	other := spec
	other.Seed = 8
	if _, err := GenTree(c, other); err != nil {
		t.Fatal(err)
	}
	ta, tb, tc := readTree(t, a), readTree(t, b), readTree(t, c)
	if len(ta) != 12 {
		t.Fatalf("tree holds %d files, want 12", len(ta))
	}
	dirs := map[string]bool{}
	for p, data := range ta {
		dirs[filepath.Dir(p)] = true
		if len(data) != 1000 {
			t.Errorf("%s: %d bytes, want 1000", p, len(data))
		}
		if !bytes.Equal(data, tb[p]) {
			t.Errorf("%s differs between two trees of one seed", p)
		}
		if bytes.Equal(data, tc[p]) {
			t.Errorf("%s equal across seeds 7 and 8", p)
		}
		fi, err := os.Stat(filepath.Join(a, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(treeTime) {
			t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), treeTime)
		}
	}
	if len(dirs) != 3 {
		t.Errorf("files spread over %d folders, want 3", len(dirs))
	}
	first := map[string]bool{}
	for _, data := range ta {
		first[string(data[:16])] = true
	}
	if len(first) != 12 {
		t.Errorf("only %d distinct file contents among 12", len(first))
	}
}

func TestGenFile(t *testing.T) {
	tests := []struct {
		name string
		size int64
	}{
		{"empty", 0},
		{"odd size", 12345},
		{"several buffers", 9<<20 + 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "big")
			if err := GenFile(p, tc.size, 1); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) != tc.size {
				t.Fatalf("size %d, want %d", len(data), tc.size)
			}
			if tc.size < 1<<20 {
				return
			}
			var z bytes.Buffer
			w, _ := flate.NewWriter(&z, flate.BestSpeed)
			w.Write(data)
			w.Close()
			if ratio := float64(z.Len()) / float64(len(data)); ratio < 0.99 {
				t.Errorf("data compresses to %.2f of its size; want incompressible", ratio)
			}
		})
	}
}

func readTree(t *testing.T, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
