package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func fi(path string, mtime time.Time) backends.FileInfo {
	return backends.FileInfo{Path: path, Size: 1, ModTime: mtime, Mode: 0o644}
}

func TestPickAt(t *testing.T) {
	h := func(n int) time.Time { return time.Date(2026, 11, 25, n, 0, 0, 0, time.UTC) }
	// Runs at 10, 11, 12. x written at 9, replaced at 11 by a copy of 10:30;
	// gone written at 9, deleted by run 11; born written at 11:30.
	live := []backends.FileInfo{fi("x", h(10).Add(30*time.Minute)), fi("born", h(11).Add(30*time.Minute))}
	trees := []versionTree{
		{stamp: "11", until: h(11), entries: []backends.FileInfo{fi("x", h(9)), fi("gone", h(9))}},
	}
	cases := []struct {
		name string
		at   time.Time
		want map[string]time.Time // path -> mtime of the pick
	}{
		{"before anything", h(8), map[string]time.Time{}},
		{"after run 10: old x and gone", h(10), map[string]time.Time{"x": h(9), "gone": h(9)}},
		{"at the stamp counts as after the run", h(11), map[string]time.Time{"x": h(10).Add(30 * time.Minute)}},
		{"after run 12: born too", h(12), map[string]time.Time{"x": h(10).Add(30 * time.Minute), "born": h(11).Add(30 * time.Minute)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]time.Time{}
			for _, p := range pickAt(live, trees, c.at) {
				got[p.Rel] = p.From.ModTime
			}
			if !maps.EqualFunc(got, c.want, time.Time.Equal) {
				t.Errorf("at %v: got %v, want %v", c.at, got, c.want)
			}
		})
	}
}

// TestRestoreRoundTrip backs up three states with versions and restores
// each one, and the live one.
func TestRestoreRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	b := localTarget(t, dst)
	t1 := time.Date(2026, 11, 25, 16, 15, 0, 0, time.UTC)
	runs := []time.Time{t1, t1.Add(time.Hour), t1.Add(2 * time.Hour)}
	mt := func(i int) time.Time { return runs[i].Add(-10 * time.Minute) }
	var states []map[string]string
	for i, step := range []func(){
		func() {
			mkfile(t, src, "a.txt", "a1", mt(0))
			mkfile(t, src, "c.txt", "c1", mt(0))
			mkfile(t, src, "d/b.txt", "b1", mt(0))
			mkfile(t, src, "d/e/f.txt", "f1", mt(0))
		},
		func() {
			mkfile(t, src, "a.txt", "a2", mt(1))
			os.Remove(filepath.Join(src, "c.txt"))
			os.RemoveAll(filepath.Join(src, "d"))
			mkfile(t, src, "new.txt", "n2", mt(1))
		},
		func() {
			mkfile(t, src, "a.txt", "a3-longer", mt(2))
			mkfile(t, src, "c.txt", "c3", mt(2))
			mkfile(t, src, "d/b.txt", "b3", mt(2))
		},
	} {
		step()
		states = append(states, readTree(t, src))
		backupRun(t, src, dst, runs[i], Keep{})
	}
	for i, at := range append(runs, time.Time{}) {
		want := states[min(i, 2)]
		t.Run(at.Format(time.Kitchen), func(t *testing.T) {
			out := t.TempDir()
			rep, err := Restore(context.Background(), b, out, RestoreOptions{At: at, VersionsDir: ".v"})
			if err != nil || len(rep.Problems) > 0 {
				t.Fatalf("restore: %v, problems %v", err, rep.Problems)
			}
			if got := readTree(t, out); !maps.Equal(got, want) {
				t.Errorf("restored\n got %v\nwant %v", got, want)
			}
		})
	}
	t.Run("one folder at run 1", func(t *testing.T) {
		out := t.TempDir()
		rep, err := Restore(context.Background(), b, out, RestoreOptions{Path: "d", At: runs[0], VersionsDir: ".v"})
		if err != nil || len(rep.Problems) > 0 {
			t.Fatalf("restore: %v, problems %v", err, rep.Problems)
		}
		want := map[string]string{"d/b.txt": "b1", "d/e/f.txt": "f1"}
		if got := readTree(t, out); !maps.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("versions of a.txt", func(t *testing.T) {
		vs, err := ListVersions(context.Background(), b, ".v", "a.txt")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.Stamp)
		}
		want := "|2026-11-25T181500Z|2026-11-25T171500Z"
		if strings.Join(got, "|") != want {
			t.Errorf("versions %q, want %q", strings.Join(got, "|"), want)
		}
	})
}

func TestRestoreExistingFiles(t *testing.T) {
	dst := t.TempDir()
	mt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mkfile(t, dst, "f.txt", "target", mt)
	b := localTarget(t, dst)
	cases := []struct {
		name      string
		overwrite bool
		wantFile  string
		wantAside bool
		wantProbs int
	}{
		{"kept without overwrite", false, "mine", false, 1},
		{"moved aside with overwrite", true, "target", true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			mkfile(t, out, "f.txt", "mine", mt.Add(time.Hour))
			rep, err := Restore(context.Background(), b, out, RestoreOptions{Overwrite: c.overwrite})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) != c.wantProbs {
				t.Errorf("problems %v, want %d", rep.Problems, c.wantProbs)
			}
			got := readTree(t, out)
			if got["f.txt"] != c.wantFile {
				t.Errorf("f.txt = %q, want %q", got["f.txt"], c.wantFile)
			}
			aside := 0
			for p, content := range got {
				if strings.HasPrefix(p, "f.txt.ferry-old-") && content == "mine" {
					aside++
				}
			}
			if (aside == 1) != c.wantAside || len(rep.KeptAside) != aside {
				t.Errorf("kept aside %d (report %v), want %v", aside, rep.KeptAside, c.wantAside)
			}
		})
	}
}

func TestRestoreSymlinksStayInside(t *testing.T) {
	dst := t.TempDir()
	outside := t.TempDir()
	mt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mkfile(t, dst, "d/f.txt", "f", mt)
	for name, target := range map[string]string{
		"d/in":   "f.txt",
		"d/up":   "../d/f.txt",
		"out":    filepath.Join(outside, "x"),
		"d/out2": "../../x",
		"esc":    "d/../../x",
	} {
		if err := os.Symlink(target, filepath.Join(dst, name)); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "r")
	rep, err := Restore(context.Background(), localTarget(t, dst), out, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{}
	for _, p := range rep.Problems {
		if !errors.Is(p, backends.ErrUnsafePath) {
			t.Errorf("problem %v is not an unsafe path", p)
		}
		refused[p.Path] = true
	}
	for _, name := range []string{"out", "d/out2", "esc"} {
		if !refused[name] {
			t.Errorf("%s not refused", name)
		}
		if _, err := os.Lstat(filepath.Join(out, name)); err == nil {
			t.Errorf("%s was created", name)
		}
	}
	for _, name := range []string{"d/in", "d/up"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("link %s inside dest not restored: %v", name, err)
		}
	}
	if rep.Links != 2 || rep.Files != 1 {
		t.Errorf("links %d files %d, want 2 and 1", rep.Links, rep.Files)
	}
}

// cutOpen is a target whose reads fail (retryably) once a stream has
// handed out cutAt bytes, cuts times in all; it counts the bytes it hands
// out.
type cutOpen struct {
	backends.Backend
	cutAt int64
	cuts  int
	mu    sync.Mutex
	read  int64
}

func (c *cutOpen) Open(ctx context.Context, path string, off int64) (io.ReadCloser, error) {
	rc, err := c.Backend.Open(ctx, path, off)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := int64(-1)
	if c.cuts > 0 {
		limit = c.cutAt
	}
	return &cutReader{rc: rc, left: limit, c: c}, nil
}

type cutReader struct {
	rc   io.ReadCloser
	left int64
	c    *cutOpen
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		r.c.mu.Lock()
		r.c.cuts--
		r.c.mu.Unlock()
		r.left = -1
		return 0, fmt.Errorf("connection lost: %w", backends.ErrUnreachable)
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	if r.left > 0 {
		r.left -= int64(n)
	}
	r.c.mu.Lock()
	r.c.read += int64(n)
	r.c.mu.Unlock()
	return n, err
}

func (r *cutReader) Close() error { return r.rc.Close() }

func TestRestoreResumes(t *testing.T) {
	const size = 12 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	mt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		cuts     int
		planted  int64 // bytes of a partial left by an earlier restore
		garbage  int64 // of which the last ones are garbage
		wantKept int64
		maxRead  int64
	}{
		{"cut twice mid-file", 2, 0, 0, 0, size + 2*RestoreVerifyWindow},
		{"partial with a good tail", 0, 8 << 20, 0, 8 << 20, size - 8<<20 + RestoreVerifyWindow},
		{"partial with garbage at the tail", 0, 8 << 20, 1000, 8<<20 - 1000, size - 8<<20 + RestoreVerifyWindow + 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := t.TempDir()
			mkfile(t, dst, "big.bin", string(data), mt)
			b := &cutOpen{Backend: localTarget(t, dst), cutAt: 5 << 20, cuts: c.cuts}
			out := t.TempDir()
			if c.planted > 0 {
				p := append([]byte{}, data[:c.planted]...)
				for i := c.planted - c.garbage; i < c.planted; i++ {
					p[i] ^= 0xff
				}
				name := filepath.Join(out, backends.PartialName("big.bin", size, mt))
				if err := os.WriteFile(name, p, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var slept int
			rep, err := Restore(context.Background(), b, out, RestoreOptions{Exec: ExecOptions{
				Sleep: func(context.Context, time.Duration) error { slept++; return nil },
			}})
			if err != nil || len(rep.Problems) > 0 {
				t.Fatalf("restore: %v %v", err, rep.Problems)
			}
			got, err := os.ReadFile(filepath.Join(out, "big.bin"))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("restored file differs (%d bytes, %v)", len(got), err)
			}
			if fi, _ := os.Stat(filepath.Join(out, "big.bin")); !fi.ModTime().Equal(mt) {
				t.Errorf("mtime %v, want %v", fi.ModTime(), mt)
			}
			if slept != c.cuts {
				t.Errorf("%d retries, want %d", slept, c.cuts)
			}
			if c.cuts == 0 && rep.Resumed != c.wantKept {
				t.Errorf("resumed from %d, want %d", rep.Resumed, c.wantKept)
			}
			if b.read > c.maxRead {
				t.Errorf("read %d bytes from the target, want at most %d", b.read, c.maxRead)
			}
			if es, _ := os.ReadDir(out); len(es) != 1 {
				t.Errorf("destination holds %d entries, want the file alone (no partial left)", len(es))
			}
		})
	}
}

func TestRestoreOneFileAtTime(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	t1 := time.Date(2026, 11, 25, 16, 15, 0, 0, time.UTC)
	mkfile(t, src, "d/f.txt", "v1", t1.Add(-time.Minute))
	backupRun(t, src, dst, t1, Keep{})
	mkfile(t, src, "d/f.txt", "v2-longer", t1.Add(time.Minute))
	backupRun(t, src, dst, t1.Add(time.Hour), Keep{})
	b := localTarget(t, dst)
	for _, c := range []struct {
		name string
		at   time.Time
		want string
	}{
		{"live", time.Time{}, "v2-longer"},
		{"before the second run", t1.Add(30 * time.Minute), "v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := t.TempDir()
			rep, err := Restore(context.Background(), b, out, RestoreOptions{Path: "d/f.txt", At: c.at, VersionsDir: ".v"})
			if err != nil || len(rep.Problems) > 0 {
				t.Fatalf("restore: %v %v", err, rep.Problems)
			}
			if got := readTree(t, out); !maps.Equal(got, map[string]string{"f.txt": c.want}) {
				t.Errorf("got %v", got)
			}
		})
	}
}

// cancelAtBytes is a Progress that cancels once n bytes came down.
type cancelAtBytes struct {
	nopProgress
	n      int64
	got    atomic.Int64
	cancel context.CancelFunc
}

func (c *cancelAtBytes) Bytes(_ string, n int64) {
	if c.got.Add(n) >= c.n {
		c.cancel()
	}
}

// TestRestoreInterruptedThenResumed stops a restore mid-file, as a killed
// process would, and runs it again: the second run keeps the partial's
// verified bytes and the file comes out whole.
func TestRestoreInterruptedThenResumed(t *testing.T) {
	const size = 16 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(data)
	dst, out := t.TempDir(), t.TempDir()
	mkfile(t, dst, "f.bin", string(data), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	b := localTarget(t, dst)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Restore(ctx, b, out, RestoreOptions{Exec: ExecOptions{Progress: &cancelAtBytes{n: 10 << 20, cancel: cancel}}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore returned %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(out, "f.bin")); err == nil {
		t.Fatal("an interrupted download was published")
	}
	// A partial of another version of the file goes once the file is in.
	stale := filepath.Join(out, backends.PartialName("f.bin", 5, time.Now()))
	if err := os.WriteFile(stale, []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Restore(context.Background(), b, out, RestoreOptions{})
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("second restore: %v %v", err, rep.Problems)
	}
	if es, _ := os.ReadDir(out); len(es) != 1 {
		t.Errorf("destination holds %d entries, want f.bin alone (partials removed)", len(es))
	}
	if rep.Resumed < 10<<20-RestoreVerifyWindow {
		t.Errorf("resumed from %d, want at least %d", rep.Resumed, 10<<20-RestoreVerifyWindow)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "f.bin")); !bytes.Equal(got, data) {
		t.Error("resumed file differs")
	}
}
