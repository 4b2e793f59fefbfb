package integration

import (
	"bytes"
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// These tests change the source under a running ferry: a file that grows,
// shrinks, changes or vanishes while it is uploaded, files ferry may not
// read, and a source root that disappears. A torn file must never appear at
// a final name, and a source that went away must never empty a target.

// pattern returns n bytes of content that differs with tag.
func pattern(n int, tag byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ tag
	}
	return b
}

// publishWatch polls path until stopped and records every distinct content
// seen there; any content that is not one of the allowed versions is torn.
type publishWatch struct {
	path    string
	allowed map[[32]byte]string // hash -> version name
	stop    chan struct{}
	done    chan struct{}

	mu   sync.Mutex
	seen map[string]bool
	torn []string
}

func watchPublished(path string, versions map[string][]byte) *publishWatch {
	w := &publishWatch{path: path, allowed: map[[32]byte]string{}, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	for name, data := range versions {
		w.allowed[sha256.Sum256(data)] = name
	}
	go w.run()
	return w
}

func (w *publishWatch) run() {
	defer close(w.done)
	var last syscall.Stat_t
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
		var st syscall.Stat_t
		if err := syscall.Stat(w.path, &st); err != nil {
			continue
		}
		if st.Ino == last.Ino && st.Size == last.Size && st.Mtim == last.Mtim && st.Ctim == last.Ctim {
			continue
		}
		f, err := os.Open(w.path)
		if err != nil {
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, f)
		f.Close()
		if err != nil {
			continue
		}
		last = st
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		w.mu.Lock()
		if name, ok := w.allowed[sum]; ok {
			w.seen[name] = true
		} else {
			w.torn = append(w.torn, "torn content of "+strconv.FormatInt(n, 10)+" bytes")
		}
		w.mu.Unlock()
	}
}

func (w *publishWatch) finish() (seen map[string]bool, torn []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen, w.torn
}

// TestSourceChangesDuringUpload changes a large file while ferry uploads it
// under a bandwidth limit, a moment after the upload started. The final
// name must only ever hold a complete version (the old or the new); at the
// end it holds the new one, or nothing when the file vanished, and no
// partial is left.
func TestSourceChangesDuringUpload(t *testing.T) {
	const rate = "6M" // about two seconds for the file
	old := pattern(12<<20, 1)
	changes := sourceChanges(old)
	cases := []struct {
		name   string
		sftp   bool
		change string // a key of changes
	}{
		{"grows", false, "grows"},
		{"shrinks", false, "shrinks"},
		{"changes in place", false, "changes in place"},
		{"changes behind the upload", false, "changes behind the upload"},
		{"replaced by rename", false, "replaced by rename"},
		{"vanishes", false, "vanishes"},
		{"grows over sftp", true, "grows"},
		{"changes in place over sftp", true, "changes in place"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.sftp {
				r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
				checkSourceChange(t, r.src, r.dst, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--bwlimit", rate)...), old, changes[tc.change])
				return
			}
			ferrybin.Path(t)
			tmp := t.TempDir()
			src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
			checkSourceChange(t, src, dst, []string{"-v", "sync", "--bwlimit", rate, src, dst}, old, changes[tc.change])
		})
	}
}

// TestSourceChangesDuringSFTPUpload runs the changes that
// TestSourceChangesDuringUpload makes to local targets only over the real
// sshd, whose upload path (pipelined writes, a partial on the server) is
// another one: a file that shrinks, vanishes or is replaced by a rename
// while it is uploaded. The final name may only ever hold a complete
// version; at the end it holds the new one, or nothing for a vanished
// file, and no partial is left on the server.
func TestSourceChangesDuringSFTPUpload(t *testing.T) {
	old := pattern(12<<20, 1)
	changes := sourceChanges(old)
	for _, name := range []string{"shrinks", "vanishes", "replaced by rename", "changes behind the upload"} {
		t.Run(name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
			checkSourceChange(t, r.src, r.dst, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--bwlimit", "6M")...), old, changes[name])
		})
	}
}

// sourceChanges returns, by name, the ways the tests above change the file
// p, which held old, under a running upload; each returns the new content,
// nil if the file is gone.
func sourceChanges(old []byte) map[string]func(t *testing.T, p string) []byte {
	size := len(old)
	return map[string]func(t *testing.T, p string) []byte{
		"grows": func(t *testing.T, p string) []byte {
			extra := pattern(1<<20, 9)
			appendFile(t, p, extra)
			return append(bytes.Clone(old), extra...)
		},
		"shrinks": func(t *testing.T, p string) []byte {
			if err := os.Truncate(p, int64(size/3)); err != nil {
				t.Fatal(err)
			}
			return old[:size/3]
		},
		"changes in place": func(t *testing.T, p string) []byte {
			return overwriteAt(t, p, size/2, pattern(4096, 7), old)
		},
		"changes behind the upload": func(t *testing.T, p string) []byte {
			// Bytes already sent change: only the mtime can tell.
			return overwriteAt(t, p, 0, pattern(4096, 5), old)
		},
		"replaced by rename": func(t *testing.T, p string) []byte {
			n := pattern(size, 3)
			tmp := p + ".new"
			if err := os.WriteFile(tmp, n, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
			return n
		},
		"vanishes": func(t *testing.T, p string) []byte {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return nil
		},
	}
}

// checkSourceChange writes a small file and old, an hour old, as big.bin
// to src, starts ferry with args, lets change alter big.bin once a MiB of
// it has reached dst, and checks that big.bin's final name only ever held
// a whole version, that ferry exited 0 leaving the new content (or, for a
// vanished file, nothing and a report) and saying it saw the change, and
// that no partial is left.
func checkSourceChange(t *testing.T, src, dst string, args []string, old []byte, change func(t *testing.T, p string) []byte) {
	t.Helper()
	if change == nil {
		t.Fatal("no such source change")
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, src, map[string]int{"small.txt": 100})
	p := filepath.Join(src, "big.bin")
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dst, "big.bin")
	w := watchPublished(final, map[string][]byte{"old": old})
	proc := ferrybin.Start(t, args...)
	// Change the file once part of it has gone out.
	awaitPartial(t, proc, dst, "big.bin", 1<<20)
	newData := change(t, p)
	if newData != nil {
		w.mu.Lock()
		w.allowed[sha256.Sum256(newData)] = "new"
		w.mu.Unlock()
	}
	res := proc.Wait()
	seen, torn := w.finish()
	if len(torn) > 0 {
		t.Fatalf("a torn file was published at %s while the source changed: %q\n%s", final, torn, res)
	}
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("exit %d, want 0 (a changed file is sent again, a vanished one reported): %s", res.ExitCode, res)
	}
	got, err := os.ReadFile(final)
	switch {
	case newData == nil:
		if err == nil {
			t.Errorf("the vanished file was published (%d bytes)", len(got))
		}
		if !strings.Contains(res.Stderr, "vanished") {
			t.Errorf("the vanished file is not reported:\n%s", res.Stderr)
		}
	case err != nil:
		t.Fatalf("the changed file is not on the target: %v\n%s", err, res)
	case !bytes.Equal(got, newData):
		t.Fatalf("target holds %d bytes, not the new %d-byte version (old version: %v)", len(got), len(newData), bytes.Equal(got, old))
	case !strings.Contains(res.Stderr, "source changed during upload"):
		t.Errorf("no \"source changed during upload\" in the log: the change was not seen\n%s", firstLines(res.Stderr, "big.bin", 10))
	}
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) > 0 {
		t.Errorf("partial files left in %s: %q", dst, parts)
	}
	t.Logf("exit %d after %v; versions seen at the final name: %v", res.ExitCode, res.Duration.Round(time.Millisecond), seen)
}

func appendFile(t *testing.T, p string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// overwriteAt writes data at off of the file p that held old, and returns
// the new content.
func overwriteAt(t *testing.T, p string, off int, data, old []byte) []byte {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, int64(off)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	n := bytes.Clone(old)
	copy(n[off:], data)
	return n
}

// unprivileged prepares cmd to run as nobody (65534), so that file modes
// bind it: root reads every file whatever its mode, which would make an
// unreadable file impossible to make honestly. The binary is copied where
// nobody may run it.
func unprivileged(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	requireRoot(t)
	bin := filepath.Join(dir, "ferry")
	data, err := os.ReadFile(ferrybin.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
	return cmd
}

// TestUnreadableSource runs ferry as an unprivileged user over a source
// with a file and a folder it may not read. The file fails once with a
// permission error; the folder is skipped with a warning, and, since its
// content is unknown, nothing of what the target holds under it is deleted.
func TestUnreadableSource(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("", "ferry-unreadable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeFiles(t, src, map[string]int{"ok.txt": 100, "secret.txt": 200, "dir/a.txt": 300, "dir/b.txt": 400, "open/c.txt": 500})
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	chownAll(t, dir)

	// First everything is readable and lands on the target.
	if res := ferrybin.RunCmd(t, time.Minute, unprivileged(t, dir, "sync", src, dst)); res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("first sync as nobody: %s", res)
	}
	// Then a folder and a file become unreadable, and a new unreadable
	// file appears.
	writeFiles(t, src, map[string]int{"new-secret.txt": 600})
	chownAll(t, dir)
	for p, mode := range map[string]os.FileMode{"dir": 0o000, "new-secret.txt": 0o000} {
		if err := os.Chmod(filepath.Join(src, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	res := ferrybin.RunCmd(t, time.Minute, unprivileged(t, dir, "-v", "sync", "--retries", "3", src, dst))
	if res.ExitCode != ferrybin.ExitFailed {
		t.Fatalf("exit %d, want 1 (an unreadable file failed): %s", res.ExitCode, res)
	}
	failed := failedPaths(res.Stderr)
	if !containsPath(failed, "new-secret.txt") {
		t.Errorf("the unreadable file is not reported as failed: %q\n%s", failed, res.Stderr)
	}
	if n := attempts(res.Stderr, "new-secret.txt"); n != 1 {
		t.Errorf("the unreadable file was tried %d times, want 1", n)
	}
	if !strings.Contains(res.Stderr, "permission denied") {
		t.Errorf("no \"permission denied\" in the log:\n%s", res.Stderr)
	}
	for _, p := range []string{"dir/a.txt", "dir/b.txt", "ok.txt", "secret.txt", "open/c.txt"} {
		if _, err := os.Stat(filepath.Join(dst, p)); err != nil {
			t.Errorf("%s: gone from the target after its source folder became unreadable: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "new-secret.txt")); err == nil {
		t.Errorf("the unreadable file was published")
	}
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) > 0 {
		t.Errorf("partial files left: %q", parts)
	}
	t.Logf("second run: exit %d\n%s", res.ExitCode, res.Stdout)
}

func chownAll(t *testing.T, root string) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSourceRootGone takes the source root away between runs and in the
// middle of one: deleted, or a bind mount unmounted so that an empty
// mountpoint is left ("suddenly empty"). No target may lose a file; ferry
// must exit 1.
func TestSourceRootGone(t *testing.T) {
	cases := []struct {
		name string
		// mount: the source is a bind mount of a real folder.
		mount bool
		// midRun: the source goes while a slow run uploads new versions.
		midRun bool
		// wantExit: 1, failed; a config naming a source that does not
		// exist is refused when it is loaded, before any job runs (2).
		// For midRun cases it is the exit of the run after the one the
		// source vanished under, which itself always fails (1).
		wantExit int
		gone     func(t *testing.T, src string)
	}{
		{"deleted before the run", false, false, ferrybin.ExitUsage, removeSource},
		{"unmounted before the run", true, false, ferrybin.ExitFailed, func(t *testing.T, src string) { sh(t, "umount", src) }},
		{"unmounted mid run", true, true, ferrybin.ExitFailed, func(t *testing.T, src string) { sh(t, "umount", "-l", src) }},
		{"deleted mid run", false, true, ferrybin.ExitUsage, removeSource},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := ferrybin.Path(t)
			tmp := t.TempDir()
			real, src := filepath.Join(tmp, "real"), filepath.Join(tmp, "src")
			files := map[string]int{"big1.bin": 4 << 20, "big2.bin": 4 << 20}
			for i := range 30 {
				files["d/f"+strconv.Itoa(i)+".txt"] = 1000 + i
			}
			writeFiles(t, real, files)
			if tc.mount {
				if err := os.Mkdir(src, 0o755); err != nil {
					t.Fatal(err)
				}
				requireRoot(t)
				sh(t, "mount", "--bind", real, src)
				t.Cleanup(func() { _ = exec.Command("umount", "-l", src).Run() })
			} else {
				src = real
			}
			a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
			cfg := filepath.Join(tmp, "ferry.yaml")
			text := "jobs:\n  - name: j\n    source: \"" + src + "\"\n    targets:\n" +
				"      - {name: a, type: local, path: \"" + a + "\", bwlimit: 8M}\n" +
				"      - {name: b, type: local, path: \"" + b + "\", bwlimit: 8M}\n"
			if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(tmp, "state"), 0o700); err != nil {
				t.Fatal(err)
			}
			run := func() *exec.Cmd {
				cmd := exec.Command(bin, "-v", "run", "--once", "-c", cfg)
				cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(tmp, "state"))
				return cmd
			}
			if res := ferrybin.RunCmd(t, time.Minute, run()); res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("first run: %s", res)
			}
			before := map[string]treecheck.Tree{}
			for _, d := range []string{a, b} {
				tr, err := treecheck.Scan(d, false)
				if err != nil {
					t.Fatal(err)
				}
				before[d] = tr
			}
			var res ferrybin.Result
			if tc.midRun {
				// New versions of every file, so that the run has work to
				// be cut in.
				files2 := map[string]int{}
				for p, n := range files {
					files2[p] = n + 1
				}
				writeFiles(t, src, files2)
				p := ferrybin.StartCmd(t, run())
				awaitPartial(t, p, a, "big", 1)
				tc.gone(t, src)
				res = p.Wait()
			} else {
				tc.gone(t, src)
				res = ferrybin.RunCmd(t, time.Minute, run())
			}
			t.Logf("run with the source gone: exit %d after %v\n%s", res.ExitCode, res.Duration.Round(time.Millisecond), res.Stdout)
			for _, d := range []string{a, b} {
				after, err := treecheck.Scan(d, true)
				if err != nil {
					t.Fatal(err)
				}
				var lost []string
				for p := range before[d] {
					if _, ok := after[p]; !ok {
						lost = append(lost, p)
					}
				}
				if len(lost) > 0 {
					t.Errorf("target %s lost %d entries when the source went away: %q", filepath.Base(d), len(lost), first(lost, 10))
				}
			}
			if tc.midRun {
				// And the run after it, on a source that stays gone or
				// empty.
				res2 := ferrybin.RunCmd(t, time.Minute, run())
				if res2.ExitCode != tc.wantExit {
					t.Errorf("next run on the gone source: exit %d, want %d: %s", res2.ExitCode, tc.wantExit, res2)
				}
				for _, d := range []string{a, b} {
					n, _ := countEntries(t, d)
					if n != len(before[d]) {
						t.Errorf("target %s holds %d entries after the next run, had %d", filepath.Base(d), n, len(before[d]))
					}
				}
			}
			// A run the source vanished under has failed (1), whatever
			// the next run's config check says of the missing source.
			want := tc.wantExit
			if tc.midRun {
				want = ferrybin.ExitFailed
			}
			if res.ExitCode != want {
				t.Errorf("exit %d, want %d (the source went away): %s", res.ExitCode, want, res)
			}
		})
	}
}

// removeSource deletes the source folder src.
func removeSource(t *testing.T, src string) {
	t.Helper()
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
}

// awaitPartial waits until a partial file whose name ends in suffix holds
// at least n bytes somewhere under dir: an upload is under way. It fails
// the test if ferry ends first or nothing shows within a minute.
func awaitPartial(t *testing.T, p *ferrybin.Process, dir, suffix string, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		found := false
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || found || !strings.HasPrefix(d.Name(), ".ferry-partial-") || !strings.Contains(d.Name(), suffix) {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Size() >= n {
				found = true
			}
			return nil
		})
		if found {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("ferry ended before an upload of %s was seen under way: %s", suffix, p.Wait())
		case <-time.After(2 * time.Millisecond):
		}
	}
	t.Fatalf("no partial of %s with %d bytes under %s within a minute", suffix, n, dir)
}
