package local

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

// snapshot records every path under dir with its size and mode, to show
// that nothing outside a target changed.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, p+" "+fi.Mode().String()+" "+fi.ModTime().String()+" "+strconv.FormatInt(fi.Size(), 10))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSymlinkInsideTargetCannotLeadOut plants links inside the target that
// point outside it, absolute and relative, and tries every operation
// through them.
func TestSymlinkInsideTargetCannotLeadOut(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	root := filepath.Join(base, "target")
	for _, d := range []string{outside, root} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(root, "rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside/secret", filepath.Join(root, "file-link")); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, outside)
	b, err := New(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	backendtest.Upload(t, b, "mine", []byte("mine"), backendtest.BaseTime)

	for _, link := range []string{"abs", "rel"} {
		calls := map[string]func() error{
			"Upload": func() error {
				_, err := b.Upload(ctx, link+"/new", backendtest.NewBytes([]byte("x"), time.Now()))
				return err
			},
			"Mkdir":      func() error { return b.Mkdir(ctx, link+"/newdir/sub") },
			"RenameInto": func() error { return b.Rename(ctx, "mine", link+"/mine") },
			"RenameOut":  func() error { return b.Rename(ctx, link+"/secret", "stolen") },
			"Remove":     func() error { return b.Remove(ctx, link+"/secret") },
			"SetModTime": func() error { return b.SetModTime(ctx, link+"/secret", time.Unix(0, 0)) },
			"Chmod":      func() error { return b.Chmod(ctx, link+"/secret", 0o777) },
			"Symlink":    func() error { return b.Symlink(ctx, "x", link+"/l") },
			"Stat":       func() error { _, err := b.Stat(ctx, link+"/secret"); return err },
			"List":       func() error { _, err := b.List(ctx, link); return err },
			"Open": func() error {
				r, err := b.Open(ctx, link+"/secret", 0)
				if err == nil {
					r.Close()
				}
				return err
			},
			"FreeSpace": func() error { _, err := b.FreeSpace(ctx, link); return err },
		}
		for name, call := range calls {
			t.Run(link+"/"+name, func(t *testing.T) {
				err := call()
				if !errors.Is(err, backends.ErrUnsafePath) {
					t.Errorf("got %v, want an error wrapping ErrUnsafePath", err)
				}
			})
		}
	}
	t.Run("OpenFileLink", func(t *testing.T) {
		r, err := b.Open(ctx, "file-link", 0)
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, backends.ErrUnsafePath) {
			t.Errorf("Open through a link to an outside file: %v, want ErrUnsafePath", err)
		}
	})
	t.Run("UploadReplacesLinkNotTarget", func(t *testing.T) {
		backendtest.Upload(t, b, "file-link", []byte("replaced"), backendtest.BaseTime)
		fi, err := os.Lstat(filepath.Join(root, "file-link"))
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("file-link after upload: %v %v, want a regular file", fi, err)
		}
	})
	if after := snapshot(t, outside); !slices.Equal(before, after) {
		t.Errorf("outside changed:\nbefore %q\nafter  %q", before, after)
	}
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); string(got) != "secret" {
		t.Errorf("outside secret now holds %q", got)
	}
	backendtest.WantContent(t, b, "mine", []byte("mine"))
}
