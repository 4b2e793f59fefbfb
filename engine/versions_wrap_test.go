package engine

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// upload publishes content at path through b, from a file in a temp dir.
func uploadString(t *testing.T, b backends.Backend, path, content string, mt time.Time) {
	t.Helper()
	dir := t.TempDir()
	mkfile(t, dir, "f", content, mt)
	fi, err := os.Lstat(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	entry := backends.FileInfo{Path: path, Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}
	src, err := openSource(context.Background(), filepath.Join(dir, "f"), entry, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := b.Upload(context.Background(), path, src); err != nil {
		t.Fatal(err)
	}
}

func TestKeepVersionsWrapper(t *testing.T) {
	dst := t.TempDir()
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	b := KeepVersions(localTarget(t, dst), &Versions{Dir: ".v", Keep: Keep{Count: 3}, Now: clock}, time.Hour, nil)
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := b.Mkdir(context.Background(), "d"); err != nil {
		t.Fatal(err)
	}
	uploadString(t, b, "d/f", "v1", mt)                              // new: nothing to keep
	uploadString(t, b, "d/f", "v2", mt.Add(1))                       // v1 to the 10:00 folder
	uploadString(t, b, "d/f", "v3", mt.Add(2))                       // the folder has d/f: v2 to the next
	uploadString(t, b, "g", "g1", mt)                                // new
	now = now.Add(30 * time.Minute)                                  // same hour
	uploadString(t, b, "g", "g2", mt.Add(1))                         // g1 beside v2
	uploadString(t, b, "h", "h1", mt)                                // new
	if err := b.Rename(context.Background(), "h", "g"); err != nil { // g2 to a new folder (10:30), h over g
		t.Fatal(err)
	}
	want := map[string]string{
		"d/f": "v3", "g": "h1",
		".v/2026-11-25T100000Z/d/f": "v1",
		".v/2026-11-25T100001Z/d/f": "v2",
		".v/2026-11-25T100001Z/g":   "g1",
		".v/2026-11-25T103000Z/g":   "g2",
	}
	if got := readTree(t, dst); !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}

	// Two hours on: a new folder, and keep: 3 leaves it and the two newest.
	now = now.Add(2 * time.Hour)
	uploadString(t, b, "g", "h2", mt.Add(5))
	entries, _ := os.ReadDir(filepath.Join(dst, ".v"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[2026-11-25T100001Z 2026-11-25T103000Z 2026-11-25T123000Z]" {
		t.Errorf("folders after rotation %v", names)
	}
}

func TestKeepVersionsWrapperFailedMoveKeepsTheFile(t *testing.T) {
	dst := t.TempDir()
	b := KeepVersions(failRename{localTarget(t, dst)}, &Versions{Dir: ".v"}, 0, nil)
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	uploadString(t, b, "f", "old", mt)
	dir := t.TempDir()
	mkfile(t, dir, "f", "new", mt.Add(time.Hour))
	fi, _ := os.Lstat(filepath.Join(dir, "f"))
	src, err := openSource(context.Background(), filepath.Join(dir, "f"), backends.FileInfo{Path: "f", Size: fi.Size(), ModTime: fi.ModTime(), Mode: fi.Mode()}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := b.Upload(context.Background(), "f", src); err == nil || !backends.IsPermanent(err) {
		t.Errorf("upload over a file that cannot be moved: %v, want a permanent error", err)
	}
	if got := readTree(t, dst); !maps.Equal(got, map[string]string{"f": "old"}) {
		t.Errorf("target %v", got)
	}
}
