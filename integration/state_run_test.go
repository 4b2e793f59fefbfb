package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/engine"
	"github.com/ferrysync/ferry/engine/state"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// runJobState opens the state `ferry run` keeps for job's local target
// named target at dst (see cmd/ferry: one file per job and target).
func runJobState(t *testing.T, stateDir, job, target, dst string) *state.Store {
	t.Helper()
	id := "file://" + dst
	st, err := state.Open(filepath.Join(stateDir, state.FileName(job+"-"+target, id)), state.Options{Target: id, Scope: engine.StateScope(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.Rebuilt(); r != "" {
		t.Fatalf("state file of %s was not usable: %s", dst, r)
	}
	return st
}

// jobStateAgrees checks that the job's state holds what a listing of dst
// finds, with nothing left in flight.
func jobStateAgrees(t *testing.T, stateDir, job, target, dst string) {
	t.Helper()
	storeAgrees(t, runJobState(t, stateDir, job, target, dst), dst)
}

// TestStateRunOnceKilled runs `ferry run --once` with the job's state, kills
// it with SIGKILL at a random moment, runs it again to the end, and checks
// that the target equals the source and the state the target; a third run
// then plans from the state without listing and copies nothing.
func TestStateRunOnceKilled(t *testing.T) {
	seed := testSeed(t)
	spec := treecheck.Spec{Seed: seed, Dirs: 40, SmallFiles: 1500, Symlinks: 5,
		LargeFiles: 2, LargeMin: 4 << 20, LargeMax: 16 << 20}
	rounds := 3
	if testing.Short() {
		spec.SmallFiles, spec.LargeFiles, rounds = 500, 1, 2
	}
	ferrybin.Path(t)
	tmp := t.TempDir()
	src, stateDir := filepath.Join(tmp, "src"), filepath.Join(tmp, "state")
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	srcTree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	config := func(dst string) string {
		return writeRunConfig(t, filepath.Dir(dst), fmt.Sprintf("state_dir: %q\njobs:\n  - name: site\n    source: %q\n"+
			"    targets:\n      - {name: disk, type: local, path: %q}\n", stateDir, src, dst))
	}
	runOnce := func(cfg string) ferrybin.Result {
		t.Helper()
		res := ferrybin.Run(t, 5*time.Minute, "run", "--once", "-v", "-c", cfg)
		if res.ExitCode != ferrybin.ExitOK {
			t.Fatalf("run: %s", res)
		}
		return res
	}
	calDst := filepath.Join(tmp, "cal", "dst")
	os.MkdirAll(filepath.Dir(calDst), 0o755)
	whole := runOnce(config(calDst)).Duration
	t.Logf("uninterrupted run of %d entries: %v", len(srcTree), whole.Round(time.Millisecond))

	r := rand.New(rand.NewPCG(seed, 9))
	tc := treecheck.NewTornChecker(srcTree)
	for i := range rounds {
		dst := filepath.Join(tmp, fmt.Sprintf("r%d", i), "dst")
		os.MkdirAll(filepath.Dir(dst), 0o755)
		cfg := config(dst)
		// Killed within the first run's span, after the state exists.
		delay := time.Duration((0.2 + 0.6*r.Float64()) * float64(whole))
		res, how, torn := killRound(t, i, delay, tc, dst, "run", "--once", "-c", cfg)
		if len(torn) > 0 {
			t.Fatalf("round %d: torn entries after SIGKILL at %v:\n%s", i, delay, strings.Join(torn, "\n"))
		}
		t.Logf("round %d: %s after %v (%v)", i, how, delay.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
		again := runOnce(cfg)
		checkTarget(t, srcTree, dst)
		jobStateAgrees(t, stateDir, "site", "disk", dst)
		if res.Killed() && strings.Contains(again.Stderr, "target state trusted") {
			// A cut run leaves paths in flight: they are checked, and
			// a state never listed in full is not trusted.
			t.Logf("round %d: the run after the kill planned from the state", i)
		}
		third := runOnce(cfg)
		if !strings.Contains(third.Stderr, "target state trusted") || strings.Contains(third.Stderr, "listing the target") {
			t.Fatalf("round %d: the run after a clean one did not plan from the state:\n%s", i, third)
		}
		if n := copiedColumn(t, third.Stdout); n != "0" {
			t.Fatalf("round %d: the third run copied %s files:\n%s", i, n, third)
		}
	}
}

// copiedColumn returns the COPIED column of the one target row of a
// `ferry run --once` summary table.
func copiedColumn(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[0] == "site" {
			return f[2]
		}
	}
	t.Fatalf("no row for job site in:\n%s", out)
	return ""
}
