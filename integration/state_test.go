package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/local"
	"github.com/ferrysync/ferry/engine"
	"github.com/ferrysync/ferry/engine/state"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// openSyncState opens the state `ferry sync --state-dir dir` keeps for dst.
func openSyncState(t *testing.T, dir, dst string) *state.Store {
	t.Helper()
	abs, err := filepath.Abs(dst)
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(dir, state.FileName("sync", abs)), state.Options{Target: abs, Scope: engine.StateScope(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Rebuilt(); r != "" {
		t.Fatalf("state file of %s was not usable: %s", dst, r)
	}
	return st
}

// stateClaimsOnlyWhatExists checks the promise that holds at every moment,
// also right after a SIGKILL: each record outside the in-flight set is on
// the target as recorded (type, and size and mtime of files).
func stateClaimsOnlyWhatExists(t *testing.T, dir, dst string) (records, inFlight int) {
	t.Helper()
	st := openSyncState(t, dir, dst)
	defer st.Close()
	fl, err := st.InFlight()
	if err != nil {
		t.Fatal(err)
	}
	touched := func(p string) bool {
		for _, f := range fl {
			if p == f || strings.HasPrefix(p, f+"/") {
				return true
			}
		}
		return false
	}
	err = st.ForEach(func(r backends.FileInfo) error {
		records++
		if touched(r.Path) {
			return nil
		}
		fi, err := os.Lstat(filepath.Join(dst, filepath.FromSlash(r.Path)))
		switch {
		case err != nil:
			return fmt.Errorf("state records %s, target: %v", r.Path, err)
		case fi.Mode().Type() != r.Mode.Type():
			return fmt.Errorf("state records %s as %v, target holds %v", r.Path, r.Mode.Type(), fi.Mode().Type())
		case r.IsRegular() && (fi.Size() != r.Size || !fi.ModTime().Equal(r.ModTime)):
			return fmt.Errorf("state records %s with %d bytes at %v, target holds %d at %v", r.Path, r.Size, r.ModTime, fi.Size(), fi.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after a kill: %v", err)
	}
	return records, len(fl)
}

// stateAgrees checks that the state holds exactly what a listing of the
// target finds.
func stateAgrees(t *testing.T, dir, dst string) {
	t.Helper()
	storeAgrees(t, openSyncState(t, dir, dst), dst)
}

// storeAgrees checks that st holds exactly what a listing of dst finds,
// with nothing left in flight, and closes st.
func storeAgrees(t *testing.T, st *state.Store, dst string) {
	t.Helper()
	defer st.Close()
	b, err := local.New(dst, local.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	listed, _, problems, err := engine.ListTarget(context.Background(), b, nil, nil)
	if err != nil || len(problems) > 0 {
		t.Fatalf("list %s: %v %v", dst, err, problems)
	}
	recs, err := st.Entries()
	if err != nil {
		t.Fatal(err)
	}
	var diff []string
	i := 0
	for _, r := range recs {
		for i < len(listed) && engine.ComparePaths(listed[i].Path, r.Path) < 0 {
			diff = append(diff, "not in the state: "+listed[i].Path)
			i++
		}
		if i == len(listed) || listed[i].Path != r.Path {
			diff = append(diff, "not on the target: "+r.Path)
			continue
		}
		l := listed[i]
		i++
		if l.Mode.Type() != r.Mode.Type() || l.IsRegular() && (l.Size != r.Size || !l.ModTime.Equal(r.ModTime)) || l.LinkTarget != r.LinkTarget {
			diff = append(diff, fmt.Sprintf("%s: state %v %d %v, target %v %d %v", r.Path, r.Mode, r.Size, r.ModTime, l.Mode, l.Size, l.ModTime))
		}
	}
	for ; i < len(listed); i++ {
		diff = append(diff, "not in the state: "+listed[i].Path)
	}
	if len(diff) > 0 {
		t.Fatalf("state and target disagree (%d):\n%s", len(diff), strings.Join(first(diff, 30), "\n"))
	}
	if fl, _ := st.InFlight(); len(fl) != 0 {
		t.Fatalf("in flight after a clean run: %v", first(fl, 10))
	}
}

func syncState(t *testing.T, stateDir, src, dst string, extra ...string) ferrybin.Result {
	t.Helper()
	args := append([]string{"sync", "-v", "--state-dir", stateDir}, extra...)
	res := ferrybin.Run(t, 5*time.Minute, append(args, src, dst)...)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("sync: %s", res)
	}
	return res
}

// TestStateKillSyncLocal kills `ferry sync --state-dir` with SIGKILL at
// random moments, many times. After every kill the state may lack recent
// changes but never records what the target does not hold (outside the
// in-flight set); a last run then leaves the target identical to the
// source and the state identical to a listing of the target, and a run
// after it plans from the state without listing.
func TestStateKillSyncLocal(t *testing.T) {
	seed := testSeed(t)
	spec := treecheck.Spec{Seed: seed, Dirs: 60, SmallFiles: 3000, Symlinks: 10,
		LargeFiles: 2, LargeMin: 4 << 20, LargeMax: 32 << 20}
	rounds := 20
	if testing.Short() {
		spec.SmallFiles, spec.LargeFiles, rounds = 800, 1, 8
	}
	bin := ferrybin.Path(t)
	t.Logf("ferry binary %s", bin)
	tmp := t.TempDir()
	src, dst, stateDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	srcTree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	whole := syncState(t, filepath.Join(tmp, "cstate"), src, filepath.Join(tmp, "calibrate")).Duration
	t.Logf("uninterrupted sync of %d entries: %v", len(srcTree), whole.Round(time.Millisecond))

	r := rand.New(rand.NewPCG(seed, 6))
	tornCheck := treecheck.NewTornChecker(srcTree)
	killed := 0
	for i := range rounds {
		delay := time.Duration(r.Float64() * float64(whole))
		res, how, torn := killRound(t, i, delay, tornCheck, dst, "sync", "--state-dir", stateDir, src, dst)
		if res.Killed() {
			killed++
		}
		if len(torn) > 0 {
			t.Fatalf("round %d: torn entries after SIGKILL at %v:\n%s", i, delay, strings.Join(torn, "\n"))
		}
		recs, fl := 0, 0
		if _, err := os.Stat(stateDir); err == nil {
			recs, fl = stateClaimsOnlyWhatExists(t, stateDir, dst)
		}
		t.Logf("round %d: %s after %v; state holds %d records, %d in flight", i, how, delay.Round(time.Millisecond), recs, fl)
		if res.ExitCode == ferrybin.ExitOK && i < rounds-1 {
			checkTarget(t, srcTree, dst)
			stateAgrees(t, stateDir, dst)
			// Start over so that later rounds have work to cut, the
			// state with it.
			if err := os.RemoveAll(dst); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(stateDir); err != nil {
				t.Fatal(err)
			}
		}
	}
	if killed == 0 {
		t.Fatal("no run was killed: the test proved nothing")
	}
	syncState(t, stateDir, src, dst)
	checkTarget(t, srcTree, dst)
	stateAgrees(t, stateDir, dst)
	res := syncState(t, stateDir, src, dst)
	if !strings.Contains(res.Stderr, "target state trusted") || !strings.Contains(res.Stdout, "copied 0 files") {
		t.Fatalf("the run after a clean one did not plan from the state:\n%s", res)
	}
	t.Logf("%d of %d rounds killed", killed, rounds)
}

// TestStateDriftLocal changes the target behind ferry's back: a run with
// trusted state does not see it, a forced rescan and the periodic one find
// and repair each change, and say how many.
func TestStateDriftLocal(t *testing.T) {
	tmp := t.TempDir()
	src, dst, stateDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	if err := treecheck.Generate(src, treecheck.Spec{Seed: 7, Dirs: 10, SmallFiles: 200}); err != nil {
		t.Fatal(err)
	}
	srcTree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	syncState(t, stateDir, src, dst)
	files := regularFiles(t, dst)
	tamper := func() int {
		// Deleted, truncated, rewritten with another mtime, and an extra.
		must(t, os.Remove(filepath.Join(dst, files[0])))
		must(t, os.Truncate(filepath.Join(dst, files[1]), 0))
		must(t, os.Chtimes(filepath.Join(dst, files[2]), time.Now(), time.Unix(1e9, 0)))
		must(t, os.WriteFile(filepath.Join(dst, "planted-by-someone"), []byte("x"), 0o644))
		return 4
	}
	cases := []struct {
		name string
		args []string
	}{
		{"forced rescan", []string{"--rescan-target"}},
		{"periodic rescan", []string{"--target-rescan-every", "1ns"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := tamper()
			res := syncState(t, stateDir, src, dst, "--target-rescan-every", "24h")
			if !strings.Contains(res.Stdout, "copied 0 files") {
				t.Fatalf("a run on trusted state saw the drift, so it listed: %s", res)
			}
			res = syncState(t, stateDir, src, dst, c.args...)
			if !strings.Contains(res.Stdout, fmt.Sprintf("%d drifted paths on the target repaired", want)) {
				t.Errorf("want %d drifted paths reported: %s", want, res)
			}
			checkTarget(t, srcTree, dst)
			stateAgrees(t, stateDir, dst)
		})
	}
}

// TestStateMoveDirectoryLocal renames a directory of files in the source:
// the next run moves it on the target, uploading nothing.
func TestStateMoveDirectoryLocal(t *testing.T) {
	tmp := t.TempDir()
	src, dst, stateDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst"), filepath.Join(tmp, "state")
	if err := treecheck.Generate(src, treecheck.Spec{Seed: 9, Dirs: 6, SmallFiles: 300, LargeFiles: 2, LargeMin: 1 << 20, LargeMax: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	syncState(t, stateDir, src, dst)
	must(t, os.MkdirAll(filepath.Join(src, "archive", "2026"), 0o755))
	moved := biggestDir(t, src)
	must(t, os.Rename(filepath.Join(src, moved), filepath.Join(src, "archive", "2026", "renamed")))
	srcTree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	res := syncState(t, stateDir, src, dst)
	if !strings.Contains(res.Stdout, "copied 0 files") || !strings.Contains(res.Stdout, "moved 1 path on the target") {
		t.Fatalf("want no copy and one move:\n%s", res)
	}
	checkTarget(t, srcTree, dst)
	stateAgrees(t, stateDir, dst)
}

// biggestDir names the top-level directory of root holding the most files.
func biggestDir(t *testing.T, root string) string {
	t.Helper()
	tree, err := treecheck.Scan(root, true)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for p, e := range tree {
		if top, _, ok := strings.Cut(p, "/"); ok && e.Kind == treecheck.File {
			count[top]++
		}
	}
	best := ""
	for d, n := range count {
		if n > count[best] || n == count[best] && d < best {
			best = d
		}
	}
	if best == "" {
		t.Fatal("no directory with files in the generated tree")
	}
	return best
}

func regularFiles(t *testing.T, root string) []string {
	t.Helper()
	tree, err := treecheck.Scan(root, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range tree.Paths() {
		if tree[p].Kind == treecheck.File && tree[p].Size > 0 {
			out = append(out, p)
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStateSFTP runs the state against a real OpenSSH server: a restart
// plans from the state, a renamed directory is moved with the server's
// rename, and a forced rescan finds a file deleted behind ferry's back.
func TestStateSFTP(t *testing.T) {
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: 3, Dirs: 8, SmallFiles: 300})
	stateDir := filepath.Join(t.TempDir(), "state")
	run := func(extra ...string) ferrybin.Result {
		t.Helper()
		args := r.syncArgs(r.knownHosts, append([]string{"-v", "--state-dir", stateDir}, extra...)...)
		res := ferrybin.Run(t, 5*time.Minute, args...)
		if res.ExitCode != ferrybin.ExitOK {
			t.Fatalf("sync: %s", res)
		}
		return res
	}
	run()
	r.check(t)
	if res := run(); !strings.Contains(res.Stderr, "target state trusted") || !strings.Contains(res.Stdout, "copied 0 files") {
		t.Fatalf("restart did not plan from the state:\n%s", res)
	}
	moved := biggestDir(t, r.src)
	must(t, os.Rename(filepath.Join(r.src, moved), filepath.Join(r.src, "moved-here")))
	r.rescan(t)
	if res := run(); !strings.Contains(res.Stdout, "copied 0 files") || !strings.Contains(res.Stdout, "moved 1 path on the target") {
		t.Fatalf("want one move and no copy:\n%s", res)
	}
	r.check(t)
	files := regularFiles(t, r.dst)
	must(t, os.Remove(filepath.Join(r.dst, files[len(files)/2])))
	if res := run("--rescan-target"); !strings.Contains(res.Stdout, "1 drifted path on the target repaired") {
		t.Fatalf("want 1 drifted path:\n%s", res)
	}
	r.check(t)
}
