package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/watch"
)

func jobLeakCheck(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func TestJobFirstSyncThenChanges(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	jobWriteFile(t, filepath.Join(src, "old.txt"), jobContent("old", 10))
	jobWriteFile(t, filepath.Join(src, "d/e/f.txt"), jobContent("f", 10))
	dstA, a := jobLocalTarget(t)
	dstB, b := jobLocalTarget(t)
	jobWriteFile(t, filepath.Join(dstA, "stale.txt"), jobContent("stale", 1))
	j := runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Name: "a", Backend: a}, {Name: "b", Backend: b}}})
	for _, dst := range []string{dstA, dstB} {
		if err := jobSameTree(src, dst, nil); err != nil {
			t.Fatalf("after the first sync %s: %v", dst, err)
		}
	}

	// Many files in a new nested directory, made at once.
	for i := range 300 {
		jobWriteFile(t, filepath.Join(src, fmt.Sprintf("new/x/y%d/f%03d.txt", i%7, i)), jobContent(fmt.Sprint(i), 5))
	}
	for _, dst := range []string{dstA, dstB} {
		jobWaitFor(t, jobConverge, "nested burst on "+dst, func() error { return jobSameTree(src, dst, nil) })
	}
	st := j.Status()
	if st[0].Uploaded < 302 {
		t.Errorf("target a counted %d uploads, want at least 302", st[0].Uploaded)
	}
}

func TestJobDirectoryMovedIn(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	outside := t.TempDir()
	dst, b := jobLocalTarget(t)
	runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}})
	for i := range 50 {
		jobWriteFile(t, filepath.Join(outside, "pop", fmt.Sprintf("sub%d/f%d", i%5, i)), jobContent(fmt.Sprint(i), 3))
	}
	if err := os.Rename(filepath.Join(outside, "pop"), filepath.Join(src, "pop")); err != nil {
		t.Fatal(err)
	}
	jobWaitFor(t, jobConverge, "moved-in directory", func() error { return jobSameTree(src, dst, nil) })
}

func TestJobAppendedFileLandsWhenSettled(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	dst, b := jobLocalTarget(t)
	j := runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}, Settle: 300 * time.Millisecond})
	f, err := os.Create(filepath.Join(src, "log.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range 30 { // three seconds of appends, one every 100ms
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", 1000))
		want.WriteString(line)
		if _, err := f.WriteString(line); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Close()
	jobWaitFor(t, jobConverge, "appended file", func() error {
		got, err := os.ReadFile(filepath.Join(dst, "log.txt"))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want.Bytes()) {
			return fmt.Errorf("target holds %d bytes, want %d", len(got), want.Len())
		}
		return nil
	})
	// Uploaded once it settled, not once per write (a slow machine may see
	// a pause in the writes and get an early copy or two).
	if n := j.Status()[0].Uploaded; n > 4 {
		t.Errorf("file uploaded %d times during 30 appends, want a few at most", n)
	}
}

func TestJobRenameStorm(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	for i := range 60 {
		jobWriteFile(t, filepath.Join(src, fmt.Sprintf("r/f%02d", i)), jobContent(fmt.Sprint("file", i), 20+i))
	}
	dst, b := jobLocalTarget(t)
	runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}})
	for round := range 5 {
		for i := range 60 {
			from := filepath.Join(src, fmt.Sprintf("r/f%02d", i))
			if round > 0 {
				from = filepath.Join(src, fmt.Sprintf("r/g%d-%02d", round-1, i))
			}
			if err := os.Rename(from, filepath.Join(src, fmt.Sprintf("r/g%d-%02d", round, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Swap two files through a temporary name as well.
	a, c := filepath.Join(src, "r/g4-00"), filepath.Join(src, "r/g4-01")
	for _, mv := range [][2]string{{a, a + ".tmp"}, {c, a}, {a + ".tmp", c}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
	jobWaitFor(t, jobConverge, "rename storm", func() error { return jobSameTree(src, dst, nil) })
}

func TestJobRenameIsAMove(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	big := make([]byte, 16<<20)
	rand.Read(big)
	jobWriteFile(t, filepath.Join(src, "big.bin"), big)
	jobWriteFile(t, filepath.Join(src, "dir/a.txt"), jobContent("a", 100))
	jobWriteFile(t, filepath.Join(src, "dir/sub/b.txt"), jobContent("b", 100))
	dst, b := jobLocalTarget(t)
	j := runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}})
	before := j.Status()[0]

	if err := os.MkdirAll(filepath.Join(src, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(src, "big.bin"), filepath.Join(src, "moved/big.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(src, "dir"), filepath.Join(src, "dir2")); err != nil {
		t.Fatal(err)
	}
	jobWaitFor(t, jobConverge, "renames", func() error { return jobSameTree(src, dst, nil) })
	after := j.Status()[0]
	if n := after.Uploaded - before.Uploaded; n != 0 {
		t.Errorf("%d uploads after the renames, want 0 (moves on the target)", n)
	}
	if n := after.Renamed - before.Renamed; n < 2 {
		t.Errorf("%d moves on the target, want at least 2 (a file and a directory or its files)", n)
	}
}

func TestJobDeletes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     Mode
		wantGone bool
	}{
		{"mirror deletes", Mirror, true},
		{"backup keeps", Backup, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobLeakCheck(t)
			src := t.TempDir()
			jobWriteFile(t, filepath.Join(src, "keep.txt"), jobContent("k", 1))
			jobWriteFile(t, filepath.Join(src, "file.txt"), jobContent("f", 1))
			jobWriteFile(t, filepath.Join(src, "dir/x/y.txt"), jobContent("y", 1))
			dst, b := jobLocalTarget(t)
			runJob(t, JobOptions{Source: src, Mode: tc.mode, Targets: []JobTarget{{Backend: b}}})
			os.Remove(filepath.Join(src, "file.txt"))
			os.RemoveAll(filepath.Join(src, "dir"))
			jobWriteFile(t, filepath.Join(src, "marker.txt"), jobContent("m", 1))
			jobWaitFor(t, jobConverge, "marker", func() error {
				_, err := os.Stat(filepath.Join(dst, "marker.txt"))
				return err
			})
			check := func() error {
				for _, p := range []string{"file.txt", "dir/x/y.txt", "dir"} {
					_, err := os.Lstat(filepath.Join(dst, p))
					if gone := os.IsNotExist(err); gone != tc.wantGone {
						return fmt.Errorf("%s: gone=%v, want %v", p, gone, tc.wantGone)
					}
				}
				return nil
			}
			if tc.wantGone {
				jobWaitFor(t, jobConverge, "deletes", check)
			} else if err := check(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dst, "keep.txt")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestJobRescan(t *testing.T) {
	for _, tc := range []struct {
		name     string
		periodic bool
	}{
		{"periodic", true},
		{"overflow hint", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobLeakCheck(t)
			src := t.TempDir()
			jobWriteFile(t, filepath.Join(src, "a.txt"), jobContent("a", 3))
			dst, b := jobLocalTarget(t)
			opts := JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}, RescanEvery: -1}
			hints := make(chan []watch.Hint)
			if tc.periodic {
				opts.RescanEvery = 500 * time.Millisecond
			} else {
				opts.testHints = hints
			}
			runJob(t, opts)
			// Drift the watcher cannot see: the target loses a file and
			// gains one, and a source mtime changes with no content event.
			os.Remove(filepath.Join(dst, "a.txt"))
			jobWriteFile(t, filepath.Join(dst, "junk.txt"), jobContent("j", 1))
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(filepath.Join(src, "a.txt"), old, old); err != nil {
				t.Fatal(err)
			}
			if !tc.periodic {
				hints <- []watch.Hint{{Path: "", Rescan: true}}
			}
			jobWaitFor(t, jobConverge, "rescan", func() error {
				if err := jobSameTree(src, dst, nil); err != nil {
					return err
				}
				fi, err := os.Stat(filepath.Join(dst, "a.txt"))
				if err != nil {
					return err
				}
				if !fi.ModTime().Equal(old) {
					return fmt.Errorf("mtime %v, want %v", fi.ModTime(), old)
				}
				return nil
			})
		})
	}
}

func TestJobTargetDownAndBack(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	jobWriteFile(t, filepath.Join(src, "first.txt"), jobContent("1", 1))
	dstA, a := jobLocalTarget(t)
	dstB, b := jobLocalTarget(t)
	flaky := &jobFlaky{Backend: a}
	j := runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Name: "flaky", Backend: flaky}, {Name: "ok", Backend: b}}})

	flaky.down.Store(true)
	// The same file changes many times while the target is away: the queue
	// holds one entry for it.
	for i := range 20 {
		jobWriteFile(t, filepath.Join(src, "hot.txt"), jobContent(fmt.Sprint("v", i), 10))
		time.Sleep(60 * time.Millisecond)
	}
	for i := range 30 {
		jobWriteFile(t, filepath.Join(src, fmt.Sprintf("during/f%d", i)), jobContent(fmt.Sprint(i), 2))
	}
	// The other target is not held up.
	jobWaitFor(t, jobConverge, "healthy target during the outage", func() error { return jobSameTree(src, dstB, nil) })
	jobWaitFor(t, jobConverge, "flaky target marked down", func() error {
		if s := j.Status()[0]; !s.Down {
			return fmt.Errorf("not down: %+v", s)
		}
		return nil
	})
	jobWaitFor(t, jobConverge, "queue settled", func() error {
		s := j.Status()[0]
		if s.Queued+s.InFlight < 2 {
			return fmt.Errorf("queued %d", s.Queued)
		}
		if s.Queued > 33 {
			return fmt.Errorf("%d changes queued for 32 paths", s.Queued)
		}
		return nil
	})
	if err := jobSameTree(src, dstA, nil); err == nil {
		t.Fatal("the down target converged while every call failed")
	}
	flaky.down.Store(false)
	jobWaitFor(t, jobConverge, "flaky target catching up", func() error { return jobSameTree(src, dstA, nil) })
	jobWaitFor(t, jobConverge, "flaky target up", func() error {
		if s := j.Status()[0]; s.Down || s.Queued != 0 {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

func TestJobEditorSaves(t *testing.T) {
	for _, tc := range []struct {
		name string
		save func(t *testing.T, path string, data []byte)
	}{
		{"write temp, rename over", func(t *testing.T, path string, data []byte) {
			tmp := filepath.Join(filepath.Dir(path), ".doc.txt.swp123")
			jobWriteFile(t, tmp, data)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename away, write, delete backup", func(t *testing.T, path string, data []byte) {
			bak := path + "~"
			if err := os.Rename(path, bak); err != nil {
				t.Fatal(err)
			}
			jobWriteFile(t, path, data)
			if err := os.Remove(bak); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncate and write in place", func(t *testing.T, path string, data []byte) {
			jobWriteFile(t, path, data)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobLeakCheck(t)
			src := t.TempDir()
			path := filepath.Join(src, "doc.txt")
			jobWriteFile(t, path, jobContent("version 0", 50))
			dst, b := jobLocalTarget(t)
			runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}})

			// Watch the target the whole time: doc.txt must never be missing.
			var missing atomic.Int64
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := os.Stat(filepath.Join(dst, "doc.txt")); err != nil {
						missing.Add(1)
					}
					time.Sleep(time.Millisecond)
				}
			}()
			for v := 1; v <= 5; v++ {
				tc.save(t, path, jobContent(fmt.Sprint("version ", v), 50+v))
				time.Sleep(150 * time.Millisecond)
			}
			jobWaitFor(t, jobConverge, "saves", func() error { return jobSameTree(src, dst, nil) })
			close(stop)
			<-watched
			if n := missing.Load(); n > 0 {
				t.Errorf("doc.txt was missing on the target %d times during the saves", n)
			}
		})
	}
}

func TestJobTargetInsideSourceIsExcluded(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	jobWriteFile(t, filepath.Join(src, "a.txt"), jobContent("a", 1))
	out := filepath.Join(src, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := jobNewLocal(out)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b, LocalPath: out}}})
	jobWriteFile(t, filepath.Join(src, "b.txt"), jobContent("b", 1))
	jobWaitFor(t, jobConverge, "b.txt", func() error {
		_, err := os.Stat(filepath.Join(out, "b.txt"))
		return err
	})
	if _, err := os.Stat(filepath.Join(out, "out")); err == nil {
		t.Fatal("the target was copied into itself")
	}
	if err := jobSameTree(src, out, func(p string) bool { return p == "out" || strings.HasPrefix(p, "out/") }); err != nil {
		t.Fatal(err)
	}
}

func TestJobPermanentFailureWaitsForNextChange(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	dst, b := jobLocalTarget(t)
	j := runJob(t, JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}})
	// A name the target refuses is a permanent failure: reported, not
	// retried in a loop.
	jobWriteFile(t, filepath.Join(src, "bad\x01name"), jobContent("x", 1))
	jobWriteFile(t, filepath.Join(src, "good.txt"), jobContent("g", 1))
	jobWaitFor(t, jobConverge, "good file", func() error {
		_, err := os.Stat(filepath.Join(dst, "good.txt"))
		return err
	})
	jobWaitFor(t, jobConverge, "failure reported", func() error {
		s := j.Status()[0]
		if s.Failed == 0 || s.LastError == "" {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
	s1 := j.Status()[0]
	time.Sleep(300 * time.Millisecond) // several retry periods of this test
	if s2 := j.Status()[0]; s2.Failed != s1.Failed || s2.Retrying != s1.Retrying {
		t.Errorf("a permanent failure was retried without a change: %+v then %+v", s1, s2)
	}
	_ = backends.ErrUnsafePath
}

func TestJobStopCutsUploadsAndKeepsPartials(t *testing.T) {
	jobLeakCheck(t)
	src := t.TempDir()
	big := make([]byte, 64<<20)
	rand.Read(big)
	jobWriteFile(t, filepath.Join(src, "big.bin"), big)
	dst, b := jobLocalTarget(t)
	j, err := NewJob(JobOptions{Source: src, Targets: []JobTarget{{Backend: b}}, Workers: 1,
		Exec: ExecOptions{BWLimit: 4 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	partial := func() (string, int64) {
		ents, _ := os.ReadDir(dst)
		for _, e := range ents {
			if backends.IsPartialName(e.Name()) {
				fi, err := e.Info()
				if err == nil {
					return e.Name(), fi.Size()
				}
			}
		}
		return "", 0
	}
	jobWaitFor(t, jobConverge, "upload under way", func() error {
		if name, size := partial(); name == "" || size == 0 {
			return errors.New("no partial with data yet")
		}
		return nil
	})
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	if took := time.Since(stopped); took > 3*time.Second {
		t.Errorf("stopping took %v; the upload in flight should be cut", took)
	}
	if _, err := os.Stat(filepath.Join(dst, "big.bin")); err == nil {
		t.Fatal("big.bin was published although its upload was cut")
	}
	if name, size := partial(); name == "" || size == 0 || size >= int64(len(big)) {
		t.Fatalf("partial %q of %d bytes after the stop, want one kept for resume", name, size)
	}
}
