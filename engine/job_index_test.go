package engine

import (
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func syntheticTree(n int) []backends.FileInfo {
	base := time.Unix(1_700_000_000, 0)
	var out []backends.FileInfo
	for d := 0; len(out) < n; d++ {
		dir := fmt.Sprintf("projects/team-%03d/module-%04d/src", d/100, d)
		out = append(out, backends.FileInfo{Path: dir, Mode: fs.ModeDir | 0o755, ModTime: base.Add(time.Duration(d) * time.Second)})
		for f := 0; f < 50 && len(out) < n; f++ {
			out = append(out, backends.FileInfo{Path: fmt.Sprintf("%s/file-%05d.go", dir, f), Size: int64(1000 + len(out)), Mode: 0o644, ModTime: base.Add(time.Duration(len(out)) * time.Millisecond)})
		}
	}
	return out
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestIndexMemory(t *testing.T) {
	src := syntheticTree(200_000)
	before := heapNow()
	j := &Job{}
	j.resetIndexLocked(len(src))
	for _, e := range src {
		// A path of its own, as a scan gives: an index that keeps it
		// pays for it here.
		e.Path = string([]byte(e.Path))
		j.setIndexLocked(e)
	}

	after := heapNow()
	per := float64(int64(after)-int64(before)) / float64(len(src))
	t.Logf("index of %d entries: %d bytes retained (%.1f B/entry)", len(src), int64(after)-int64(before), per)
	// A full path and a FileInfo per entry took 268 B/entry here; the
	// per-directory index takes about 156. The bound leaves room for noise.
	if per > 200 {
		t.Errorf("index takes %.1f B/entry, want at most 200", per)
	}
	runtime.KeepAlive(j)
	runtime.KeepAlive(src)
}

// TestIndexOps checks what the per-directory index holds, and which path
// it names as the one holder of a size and mtime, after each change.
func TestIndexOps(t *testing.T) {
	mt := time.Unix(1_700_000_000, 500)
	dir := func(p string, s int) backends.FileInfo {
		return backends.FileInfo{Path: p, Mode: fs.ModeDir | 0o755, ModTime: mt.Add(time.Duration(s) * time.Second)}
	}
	file := func(p string, size int64) backends.FileInfo {
		return backends.FileInfo{Path: p, Size: size, Mode: 0o644, ModTime: mt}
	}
	base := []backends.FileInfo{dir("a", 1), file("a/x", 1), dir("a/b", 2), file("a/b/y", 2), file("a/b/z", 3), file("top", 4), file("a/dup1", 9), file("a/dup2", 9)}
	tests := []struct {
		name string
		do   func(j *Job)
		want []string
		// unique: a size whose file must be found as the one holder, "" none
		unique map[int64]string
	}{
		{name: "scan", do: func(*Job) {}, want: []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup1", "a/dup2", "a/x", "top"},
			unique: map[int64]string{1: "a/x", 3: "a/b/z", 4: "top", 9: ""}},
		{name: "empty file and directory of one mtime", do: func(j *Job) { j.setIndexLocked(file("e", 0)); j.setIndexLocked(dir("d0", 0)) },
			want:   []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup1", "a/dup2", "a/x", "d0", "e", "top"},
			unique: map[int64]string{0: "e", -1: "d0"}},
		{name: "drop dir", do: func(j *Job) { j.dropIndexLocked("a/b") }, want: []string{"a", "a/dup1", "a/dup2", "a/x", "top"},
			unique: map[int64]string{1: "a/x", 3: "", 9: ""}},
		{name: "drop file", do: func(j *Job) { j.dropIndexLocked("a/dup1") }, want: []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup2", "a/x", "top"},
			unique: map[int64]string{9: ""}}, // the name is forgotten, not guessed
		{name: "drop missing", do: func(j *Job) { j.dropIndexLocked("a/nope") }, want: []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup1", "a/dup2", "a/x", "top"}},
		{name: "move dir", do: func(j *Job) { j.moveIndexLocked("a/b", "c/d") }, want: []string{"a", "a/dup1", "a/dup2", "a/x", "c/d", "c/d/y", "c/d/z", "top"},
			unique: map[int64]string{3: "c/d/z", 2: "c/d/y"}},
		{name: "move file to root", do: func(j *Job) { j.moveIndexLocked("a/x", "x2") }, want: []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup1", "a/dup2", "top", "x2"},
			unique: map[int64]string{1: "x2"}},
		{name: "replace", do: func(j *Job) { j.setIndexLocked(file("a/x", 5)) }, want: []string{"a", "a/b", "a/b/y", "a/b/z", "a/dup1", "a/dup2", "a/x", "top"},
			unique: map[int64]string{1: "", 5: "a/x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := &Job{}
			j.resetIndexLocked(0)
			for _, e := range base {
				j.setIndexLocked(e)
			}
			tc.do(j)
			var got []string
			for d, sub := range j.dirs {
				if len(sub.ents) == 0 {
					t.Errorf("empty directory %q kept", d)
				}
				for n := range sub.ents {
					got = append(got, joinIndexPath(d, n))
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("index holds %q, want %q", got, tc.want)
			}
			for size, want := range tc.unique {
				p, ok := j.uniqueLocked(fileKey{size: size, mtime: mt.UnixNano()})
				if ok != (want != "") || p != want {
					t.Errorf("unique size %d = %q %v, want %q", size, p, ok, want)
				}
				if ok {
					if fi := j.infoLocked(p); fi.Size != max(size, 0) || !fi.ModTime.Equal(mt) || fi.Path != p {
						t.Errorf("info %s = %+v", p, fi)
					}
				}
			}
		})
	}
}
