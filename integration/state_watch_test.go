package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestStateWatchJobKilled runs a watch job of `ferry run` with its state,
// changes the source, kills the daemon with SIGKILL once the changes have
// landed, and starts it again: the restart plans from the state and
// replaces no file of the target (each keeps its inode).
func TestStateWatchJobKilled(t *testing.T) {
	ferrybin.Path(t)
	tmp := t.TempDir()
	src, dst, stateDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	spec := treecheck.Spec{Seed: testSeed(t), Dirs: 10, SmallFiles: 200, LargeFiles: 1, LargeMin: 1 << 20, LargeMax: 2 << 20}
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	cfg := writeRunConfig(t, tmp, fmt.Sprintf("state_dir: %q\njobs:\n  - name: live\n    source: %q\n    watch: true\n"+
		"    targets:\n      - {name: disk, type: local, path: %q}\n", stateDir, src, dst))
	waitEqual := func(p *ferrybin.Process, what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			diff, err := treecheck.Compare(src, dst, localSyncChecks)
			if err == nil && len(diff) == 0 {
				return
			}
			select {
			case <-p.Done():
				t.Fatalf("ferry ended while waiting for %s:\n%v", what, p.Wait())
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				compareTree(t, what, src, dst, localSyncChecks)
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	p := ferrybin.Start(t, "run", "-c", cfg)
	waitEqual(p, "the first sync")
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("new-%02d.txt", i)), []byte(strings.Repeat("n", 100+i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(src, "fresh", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "fresh", "dir", "f.txt"), []byte("fresh"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitEqual(p, "the changes")
	// The records are committed each second; a kill right after the
	// changes land may lose the last ones, which leaves their paths in
	// flight: checked on the target, not copied again.
	p.Kill()
	if res := p.Wait(); !res.Killed() {
		t.Fatalf("ferry was not killed: %s", res)
	}
	before := inodes(t, dst)

	var stderr stateLog
	cmd := ferrybin.Command(t, "run", "-v", "-c", cfg)
	cmd.Stderr = &stderr
	p = ferrybin.StartCmd(t, cmd)
	defer p.Kill()
	waitEqual(p, "the restart")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "target state trusted") && !strings.Contains(stderr.String(), "listing the target") {
		if time.Now().After(deadline) {
			t.Fatalf("the restart said nothing of its state:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(stderr.String(), "listing the target") {
		t.Errorf("the restart listed the target instead of trusting the state:\n%s", stderr.String())
	}
	time.Sleep(500 * time.Millisecond) // anything copied again would land by now
	after := inodes(t, dst)
	for path, ino := range before {
		if after[path] != ino {
			t.Errorf("%s was replaced by the restart", path)
		}
	}
	p.Signal(syscall.SIGTERM)
	if res := p.Wait(); res.ExitCode != ferrybin.ExitOK {
		t.Errorf("stop: %s", res)
	}
	jobStateAgrees(t, stateDir, "live", "disk", dst)
}

// stateLog collects a process's log while the test reads it.
type stateLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *stateLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *stateLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// inodes maps each regular file under root to its inode.
func inodes(t *testing.T, root string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fi.Sys().(*syscall.Stat_t).Ino
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
