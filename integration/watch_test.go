package integration

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
)

// watchConverge is how long a target may take to reach the source's state.
const watchConverge = 60 * time.Second

// watchLog collects a process's output; safe for concurrent use.
type watchLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *watchLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *watchLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

type watchProc struct {
	cmd  *exec.Cmd
	log  *watchLog
	done chan error
}

// startWatch runs `ferry watch args...`; the process is stopped at the end
// of the test if it still runs.
func startWatch(t *testing.T, args ...string) *watchProc {
	t.Helper()
	bin := ferrybin.Path(t)
	p := &watchProc{log: &watchLog{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"watch", "--status-interval=100ms"}, args...)...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("ferry watch output:\n%s", tailLines(p.log.String(), 60))
		}
	})
	return p
}

// stop sends SIGTERM and returns the exit error once the process ended.
func (p *watchProc) stop(t *testing.T) error {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("ferry watch did not stop within 20s of SIGTERM")
		return nil
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// status returns the fields of the last status line logged for target.
func (p *watchProc) status(target string) map[string]string {
	lines := strings.Split(p.log.String(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if !strings.Contains(l, "msg=status") || !strings.Contains(l, " target="+target+" ") {
			continue
		}
		out := map[string]string{}
		for _, f := range strings.Fields(l) {
			if k, v, ok := strings.Cut(f, "="); ok {
				out[k] = v
			}
		}
		return out
	}
	return nil
}

func (p *watchProc) count(t *testing.T, target, field string) int {
	t.Helper()
	n, err := strconv.Atoi(p.status(target)[field])
	if err != nil {
		t.Fatalf("status of %s has no %s: %v", target, field, p.status(target))
	}
	return n
}

// quiet waits until the status of every target stopped changing and shows
// nothing queued: the numbers read then are final.
func (p *watchProc) quiet(t *testing.T, targets ...string) {
	t.Helper()
	var last string
	stable := 0
	deadline := time.Now().Add(watchConverge)
	for stable < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("status did not settle: %s", last)
		}
		time.Sleep(100 * time.Millisecond)
		var b strings.Builder
		busy := false
		for _, tg := range targets {
			s := p.status(tg)
			fmt.Fprint(&b, s)
			if s["queued"] != "0" || s["in_flight"] != "0" {
				busy = true
			}
		}
		if busy || b.String() != last {
			stable = 0
			last = b.String()
			continue
		}
		stable++
	}
}

// watchTree reads the regular files, symlinks and directories under root,
// without partial files.
func watchTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || strings.Contains(d.Name(), ".ferry-") {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel] = "/"
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "->" + l
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	return out, err
}

func watchDiff(src, dst string) error {
	a, err := watchTree(src)
	if err != nil {
		return err
	}
	b, err := watchTree(dst)
	if err != nil {
		return err
	}
	var d []string
	for p, v := range a {
		if w, ok := b[p]; !ok {
			d = append(d, "missing "+p)
		} else if v != w {
			d = append(d, fmt.Sprintf("differs %s (%d vs %d bytes)", p, len(v), len(w)))
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			d = append(d, "extra "+p)
		}
	}
	if len(d) == 0 {
		return nil
	}
	sort.Strings(d)
	if len(d) > 5 {
		d = append(d[:5], fmt.Sprintf("and %d more", len(d)-5))
	}
	return errors.New(strings.Join(d, "; "))
}

// converged polls until every dst equals src.
func converged(t *testing.T, what, src string, dsts ...string) {
	t.Helper()
	deadline := time.Now().Add(watchConverge)
	for {
		var err error
		for _, d := range dsts {
			if err = watchDiff(src, d); err != nil {
				err = fmt.Errorf("%s: %w", d, err)
				break
			}
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not converged after %v: %v", what, watchConverge, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func put(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mv(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func sshArgs(srv *sshd.Server) []string {
	return []string{"--identity", srv.ClientKeyPath(), "--known-hosts", srv.KnownHostsPath(), "--ssh-config", "none"}
}

// TestWatchLocalAndSFTP runs one `ferry watch` against a local target and
// an SFTP target on a real sshd, and walks it through the changes people
// make: bursts, moves, appends, renames, deletes, editor saves, and an
// outage of the SFTP server.
func TestWatchLocalAndSFTP(t *testing.T) {
	srv := sshd.Start(t, sshd.Options{})
	src := t.TempDir()
	outside := t.TempDir()
	localDst := filepath.Join(t.TempDir(), "local")
	sftpDst := filepath.Join(srv.Root(), "w")
	sftpURL := srv.URL(sftpDst)
	put(t, filepath.Join(src, "hello.txt"), []byte("hello\n"))
	put(t, filepath.Join(src, "docs/a.md"), bytes.Repeat([]byte("a"), 5000))
	args := append(sshArgs(srv), "--fsync=false", src, localDst, sftpURL)
	p := startWatch(t, args...)
	converged(t, "first sync", src, localDst, sftpDst)

	t.Run("many files in a new nested directory", func(t *testing.T) {
		for i := range 300 {
			put(t, filepath.Join(src, fmt.Sprintf("burst/l1/l2-%d/l3/f%03d.txt", i%5, i)), []byte(strings.Repeat(strconv.Itoa(i), 50)))
		}
		converged(t, "burst", src, localDst, sftpDst)
	})
	t.Run("populated directory moved in", func(t *testing.T) {
		for i := range 40 {
			put(t, filepath.Join(outside, "pop", fmt.Sprintf("s%d/f%d", i%4, i)), []byte(fmt.Sprint("pop ", i)))
		}
		mv(t, filepath.Join(outside, "pop"), filepath.Join(src, "pop"))
		converged(t, "moved in", src, localDst, sftpDst)
	})
	t.Run("file appended to for seconds", func(t *testing.T) {
		f, err := os.Create(filepath.Join(src, "growing.log"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			fmt.Fprintf(f, "line %d %s\n", i, strings.Repeat("x", 2000))
			time.Sleep(100 * time.Millisecond)
		}
		f.Close()
		converged(t, "appended file", src, localDst, sftpDst)
	})
	t.Run("rename storm", func(t *testing.T) {
		for i := range 50 {
			put(t, filepath.Join(src, fmt.Sprintf("storm/f%02d", i)), []byte(strings.Repeat(fmt.Sprint(i, " "), 30+i)))
		}
		converged(t, "storm files", src, localDst, sftpDst)
		for round := range 4 {
			for i := range 50 {
				from := filepath.Join(src, fmt.Sprintf("storm/f%02d", i))
				if round > 0 {
					from = filepath.Join(src, fmt.Sprintf("storm/r%d-%02d", round-1, i))
				}
				mv(t, from, filepath.Join(src, fmt.Sprintf("storm/r%d-%02d", round, i)))
			}
		}
		converged(t, "rename storm", src, localDst, sftpDst)
	})
	t.Run("rename of a large file is a move", func(t *testing.T) {
		big := make([]byte, 48<<20)
		rand.Read(big)
		put(t, filepath.Join(src, "big.bin"), big)
		converged(t, "large file", src, localDst, sftpDst)
		p.quiet(t, localDst, sftpURL)
		up := map[string]int{}
		moved := map[string]int{}
		for _, tg := range []string{localDst, sftpURL} {
			up[tg], moved[tg] = p.count(t, tg, "uploaded"), p.count(t, tg, "moved")
		}
		if err := os.Mkdir(filepath.Join(src, "archive"), 0o755); err != nil {
			t.Fatal(err)
		}
		mv(t, filepath.Join(src, "big.bin"), filepath.Join(src, "archive/big-renamed.bin"))
		converged(t, "large file renamed", src, localDst, sftpDst)
		p.quiet(t, localDst, sftpURL)
		for _, tg := range []string{localDst, sftpURL} {
			if n := p.count(t, tg, "uploaded") - up[tg]; n != 0 {
				t.Errorf("%s: %d uploads after renaming the large file, want 0", tg, n)
			}
			if n := p.count(t, tg, "moved") - moved[tg]; n < 1 {
				t.Errorf("%s: %d moves after renaming the large file, want 1", tg, n)
			}
		}
	})
	t.Run("deletes reach the targets", func(t *testing.T) {
		os.Remove(filepath.Join(src, "hello.txt"))
		os.RemoveAll(filepath.Join(src, "burst/l1/l2-3"))
		converged(t, "deletes", src, localDst, sftpDst)
	})
	t.Run("editor saves never lose the file on a target", func(t *testing.T) {
		doc := filepath.Join(src, "docs/a.md")
		var missing atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, d := range []string{localDst, sftpDst} {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := os.Stat(filepath.Join(d, "docs/a.md")); err != nil {
						missing.Add(1)
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		for v := range 6 {
			data := bytes.Repeat([]byte(fmt.Sprint("v", v)), 3000+v)
			if v%2 == 0 { // write a temp file, rename it over
				tmp := filepath.Join(src, "docs/.a.md.tmp")
				put(t, tmp, data)
				mv(t, tmp, doc)
			} else { // rename the original away, write, delete the backup
				mv(t, doc, doc+"~")
				put(t, doc, data)
				os.Remove(doc + "~")
			}
			time.Sleep(300 * time.Millisecond)
		}
		converged(t, "saves", src, localDst, sftpDst)
		close(stop)
		wg.Wait()
		if n := missing.Load(); n > 0 {
			t.Errorf("docs/a.md was missing on a target %d times during the saves", n)
		}
	})
	t.Run("sftp server down for a while", func(t *testing.T) {
		srv.Stop()
		for i := range 20 {
			put(t, filepath.Join(src, fmt.Sprintf("outage/f%d", i)), []byte(fmt.Sprint("during the outage ", i)))
		}
		for i := range 10 {
			put(t, filepath.Join(src, "outage/hot"), []byte(fmt.Sprint("version ", i)))
			time.Sleep(50 * time.Millisecond)
		}
		// The local target keeps up meanwhile.
		converged(t, "local target during the outage", src, localDst)
		deadline := time.Now().Add(watchConverge)
		for p.status(sftpURL)["up"] != "false" {
			if time.Now().After(deadline) {
				t.Fatalf("sftp target never marked down: %v", p.status(sftpURL))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if q, _ := strconv.Atoi(p.status(sftpURL)["queued"]); q > 25 {
			t.Errorf("%d changes queued for 21 paths", q)
		}
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		converged(t, "sftp target after the outage", src, localDst, sftpDst)
	})
	if err := p.stop(t); err != nil {
		t.Fatalf("ferry watch exited with %v after SIGTERM, want status 0", err)
	}
}

// TestWatchBackupMode checks that in backup mode deletes and renames add
// but never remove.
func TestWatchBackupMode(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "dst")
	put(t, filepath.Join(src, "a.txt"), []byte("a"))
	put(t, filepath.Join(src, "d/b.txt"), []byte("b"))
	p := startWatch(t, "--mode=backup", "--fsync=false", src, dst)
	converged(t, "first sync", src, dst)
	os.Remove(filepath.Join(src, "a.txt"))
	mv(t, filepath.Join(src, "d/b.txt"), filepath.Join(src, "d/c.txt"))
	put(t, filepath.Join(src, "marker"), []byte("m"))
	deadline := time.Now().Add(watchConverge)
	for {
		got, _ := watchTree(dst)
		if got["marker"] == "m" && got["d/c.txt"] == "b" {
			if got["a.txt"] != "a" || got["d/b.txt"] != "b" {
				t.Fatalf("backup mode removed files: %v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backup target never got the new files: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestWatchOverflowRescans forces the kernel's event queue to overflow by
// stopping ferry while far more files appear than the queue holds, and
// checks that the rescan that follows brings the target in line.
func TestWatchOverflowRescans(t *testing.T) {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		limit, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if limit > 100000 {
		t.Skipf("fs.inotify.max_queued_events is %d: too many files to overflow it here", limit)
	}
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "dst")
	put(t, filepath.Join(src, "seed"), []byte("s"))
	p := startWatch(t, "--fsync=false", src, dst)
	// The directories exist and are watched before the flood, so that every
	// file made in them is an event in the kernel's queue.
	for i := range 50 {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("flood/d%02d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	converged(t, "first sync", src, dst)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range limit + 2000 {
		put(t, filepath.Join(src, fmt.Sprintf("flood/d%02d/f%05d", i%50, i)), nil)
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	converged(t, "after the overflow", src, dst)
	if !strings.Contains(p.log.String(), "overflowed") {
		t.Errorf("no overflow reported; the test did not force one")
	}
	if !strings.Contains(p.log.String(), "rescanning") {
		t.Errorf("no rescan logged after the overflow")
	}
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestWatchPeriodicRescanFixesDrift changes the target behind ferry's back;
// the periodic rescan puts it right.
func TestWatchPeriodicRescanFixesDrift(t *testing.T) {
	src := t.TempDir()
	dst := filepath.Join(t.TempDir(), "dst")
	put(t, filepath.Join(src, "a.txt"), []byte("a"))
	p := startWatch(t, "--fsync=false", "--rescan-every=1s", src, dst)
	converged(t, "first sync", src, dst)
	os.Remove(filepath.Join(dst, "a.txt"))
	put(t, filepath.Join(dst, "junk"), []byte("j"))
	converged(t, "after drift", src, dst)
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}
