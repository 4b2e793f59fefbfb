package integration

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// localSyncChecks is what a local target must keep of the source: content,
// mtimes to the nanosecond, permission bits and symlinks.
var localSyncChecks = treecheck.Options{ModTime: true, Perm: true}

// TestKillSyncLocal kills `ferry sync` to a local target with SIGKILL at
// random moments and checks after every kill that no file at a final name is
// torn; a last run must then leave the target identical to the source with
// no partial files.
func TestKillSyncLocal(t *testing.T) {
	seed := testSeed(t)
	spec := treecheck.Spec{
		Seed: seed, Dirs: 60, SmallFiles: 2000, Symlinks: 10,
		LargeFiles: 3, LargeMin: 8 << 20, LargeMax: 64 << 20,
	}
	rounds := 10
	if testing.Short() {
		spec.SmallFiles, spec.LargeFiles, spec.LargeMax, rounds = 500, 1, 16<<20, 4
	}
	bin := ferrybin.Path(t) // build before anything is timed
	t.Logf("ferry binary %s", bin)

	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	srcTree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}

	// One uninterrupted run tells how long a whole sync takes here, and
	// that a plain sync is right to begin with.
	whole := syncAndCheck(t, src, srcTree, filepath.Join(tmp, "calibrate"))
	t.Logf("uninterrupted sync of %d entries: %v", len(srcTree), whole.Round(time.Millisecond))

	// A second run over the complete target gives the fixed cost of a run
	// (start, scan, listing) that every round pays before copying.
	fixed := syncAndCheck(t, src, srcTree, filepath.Join(tmp, "calibrate"))
	t.Logf("no-op sync: %v", fixed.Round(time.Millisecond))

	// Each round is killed at a random moment within 60% of the time its
	// remaining work should take, so almost every round is cut with work left
	// (run times vary a lot with the disk), and the
	// moments fall in every phase: start-up, small files, large files,
	// renames.
	dst := filepath.Join(tmp, "dst")
	var totalBytes int64
	for _, e := range srcTree {
		totalBytes += e.Size
	}
	r := rand.New(rand.NewPCG(seed, 2))
	tornCheck := treecheck.NewTornChecker(srcTree)
	var killed, fresh int
	for i := range rounds {
		n, size := countEntries(t, dst)
		left := 0.5*float64(len(srcTree)-n)/float64(len(srcTree)) + 0.5*float64(totalBytes-size)/float64(totalBytes)
		delay := time.Duration(r.Float64() * (float64(fixed) + 0.6*left*float64(whole-fixed)))
		res, how, torn := killRound(t, i, delay, tornCheck, dst, "sync", src, dst)
		if res.Killed() {
			killed++
		}
		parts, err := treecheck.Partials(dst)
		if err != nil {
			t.Fatal(err)
		}
		n, _ = countEntries(t, dst)
		t.Logf("round %d: %s after %v; %d of %d entries at final names, %d partial files",
			i, how, delay.Round(time.Millisecond), n, len(srcTree), len(parts))
		if len(torn) > 0 {
			t.Fatalf("round %d: torn or foreign entries at final names after SIGKILL at %v:\n%s", i, delay, strings.Join(torn, "\n"))
		}
		if res.ExitCode == ferrybin.ExitOK && i < rounds-1 {
			// A run that finished must have finished right; then start
			// over, or the next rounds would have nothing to cut.
			checkTarget(t, srcTree, dst)
			if err := os.RemoveAll(dst); err != nil {
				t.Fatal(err)
			}
			fresh++
		}
	}
	t.Logf("%d of %d rounds killed; %d started on a fresh target", killed, rounds, fresh)
	if killed == 0 {
		t.Fatalf("no run was killed: every one finished within its delay, the test proved nothing")
	}
	syncAndCheck(t, src, srcTree, dst)
}

// syncAndCheck runs a sync to completion and checks the target: exit 0,
// identical to the source, no partial files left. It returns the run's
// wall time.
func syncAndCheck(t *testing.T, src string, want treecheck.Tree, dst string) time.Duration {
	t.Helper()
	res := ferrybin.Run(t, 5*time.Minute, "sync", src, dst)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("sync to completion: %s", res)
	}
	checkTarget(t, want, dst)
	return res.Duration
}

// checkTarget checks that dst is identical to the source tree want, with
// no partial files.
func checkTarget(t *testing.T, want treecheck.Tree, dst string) {
	t.Helper()
	diff, err := treecheck.CompareTo(want, dst, localSyncChecks)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Fatalf("target differs from source after a complete sync (%d differences):\n%s", len(diff), strings.Join(first(diff, 30), "\n"))
	}
	// Every partial a killed run left belongs to a file of the unchanged
	// source, which the last run resumed and published; none may remain.
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) > 0 {
		t.Fatalf("%d partial files left after a complete sync:\n%s", len(parts), strings.Join(first(parts, 30), "\n"))
	}
}

// countEntries counts what lies under root, partial files left out, and
// the bytes of its regular files.
func countEntries(t *testing.T, root string) (n int, size int64) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return filepath.SkipDir
		}
		if err != nil {
			return err
		}
		if p == root || backends.IsPartialName(d.Name()) {
			return nil
		}
		n++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// killRound runs ferry with args, SIGKILLs it after delay unless it ends
// first, and checks dst for torn entries against tc. A run that ended by
// itself must have exited 0. It returns the result, "killed" or "finished
// first", and the torn entries found.
func killRound(t *testing.T, round int, delay time.Duration, tc *treecheck.TornChecker, dst string, args ...string) (ferrybin.Result, string, []string) {
	t.Helper()
	p := ferrybin.Start(t, args...)
	how := "killed"
	select {
	case <-p.Done():
		how = "finished first"
	case <-time.After(delay):
		p.Kill()
	}
	res := p.Wait()
	if !res.Killed() && res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("round %d: %s", round, res)
	}
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) && res.Killed() {
		// Killed before it made the target root: nothing there to tear.
		return res, how, nil
	}
	torn, err := tc.Check(dst)
	if err != nil {
		t.Fatal(err)
	}
	return res, how, torn
}
