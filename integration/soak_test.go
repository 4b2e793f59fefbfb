package integration

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// soakProfile sizes one soak run.
type soakProfile struct {
	name   string
	spec   treecheck.Spec
	budget time.Duration // time under faults; the clean last run comes after
	round  time.Duration // a run still going after this is a hang
	// window: a SIGKILL or sshd restart falls at a random moment within
	// this much of a run's start, so that most runs are cut.
	window time.Duration
}

// soakProfiles: the short one runs by default (about two minutes on two
// cores), the long one with FERRY_SOAK=long.
var soakProfiles = map[string]soakProfile{
	"short": {
		name: "short",
		spec: treecheck.Spec{Dirs: 50, SmallFiles: 2500, Symlinks: 10,
			LargeFiles: 3, LargeMin: 20 << 20, LargeMax: 32 << 20},
		budget: 75 * time.Second,
		round:  3 * time.Minute,
		window: 8 * time.Second,
	},
	"long": {
		name: "long",
		spec: treecheck.Spec{Dirs: 200, SmallFiles: 10000, Symlinks: 40,
			LargeFiles: 8, LargeMin: 20 << 20, LargeMax: 50 << 20},
		budget: 15 * time.Minute,
		round:  10 * time.Minute,
		window: 30 * time.Second,
	},
}

// soakSeed is FERRY_SOAK_SEED when set, else the common test seed.
func soakSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("FERRY_SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FERRY_SOAK_SEED=%q: %v", s, err)
		}
		t.Logf("soak seed %d (replay with FERRY_SOAK_SEED=%d)", v, v)
		return v
	}
	seed := testSeed(t)
	t.Logf("soak seed %d (replay with FERRY_SOAK_SEED=%d)", seed, seed)
	return seed
}

// soakStats are the figures a soak prints at its end.
type soakStats struct {
	mu       sync.Mutex
	faults   map[string]int
	exits    map[string]int
	jobs     int   // complete, checked syncs of the whole source
	maxRSS   int64 // KiB, the largest of every ferry process
	files    int
	bytes    int64
	upstream int64
	// From ferry's logs: connections the keepalive declared dead, and
	// uploads resumed from a partial.
	dead, resumed int
}

func (s *soakStats) fault(kind string) {
	s.mu.Lock()
	s.faults[kind]++
	s.mu.Unlock()
}

// TestFaultSoak mirrors thousands of files, a few of them large, to the real
// sshd through the fault proxy while faults hit at seeded random moments:
// link resets, black holes (caught by a 1s keepalive), data limits, latency
// spikes, bandwidth drops, refused logins, sshd restarts, and SIGKILL of
// ferry itself, which is then started again. After every run, killed or
// not, no file at a final name may be torn. A run that ends with exit 0
// must have made the target identical to the source, which is then wiped so
// that the next run has work to be hit in. When the time under faults is
// up, the faults stop and one last run must finish the job: target
// identical to the source, no partial file left (every partial belongs to
// an unchanged source file: the last run resumes and publishes it, or, when
// an earlier run published it, removes it as of a version already there).
func TestFaultSoak(t *testing.T) {
	prof := soakProfiles["short"]
	if v := os.Getenv("FERRY_SOAK"); v != "" {
		p, ok := soakProfiles[v]
		if !ok {
			t.Fatalf("FERRY_SOAK=%q: want short or long", v)
		}
		prof = p
	}
	if testing.Short() && prof.name == "short" {
		prof.budget = 30 * time.Second
	}
	seed := soakSeed(t)
	prof.spec.Seed = seed
	start := time.Now()
	r := newSFTPRig(t, sshd.Options{}, prof.spec)
	st := &soakStats{faults: map[string]int{}, exits: map[string]int{}}
	for _, e := range r.srcTree {
		if e.Kind != treecheck.Dir {
			st.files++
			st.bytes += e.Size
		}
	}
	t.Logf("%s soak: %d entries, %d files and symlinks, %.1f MiB, %v under faults",
		prof.name, len(r.srcTree), st.files, float64(st.bytes)/(1<<20), prof.budget)

	args := r.syncArgs(r.knownHosts, "--retries", "8", "--keepalive", "1s",
		"--keepalive-max-missed", "2", "--stall-timeout", "5s")
	chaos := r.proxy.StartChaos(faultproxy.ChaosOptions{
		Seed:      seed,
		Interval:  1500 * time.Millisecond,
		Hold:      3 * time.Second, // long enough for 2 missed 1s keepalives
		Latency:   80 * time.Millisecond,
		Bandwidth: 512 << 10,
		DataLimit: 8 << 20,
		Log:       func(msg string) { t.Logf("fault: %s", msg) },
	})
	defer chaos.Stop()

	rnd := rand.New(rand.NewPCG(seed, 0x50a4))
	torn := treecheck.NewTornChecker(r.srcTree)
	deadline := time.Now().Add(prof.budget)
	for round := 0; time.Now().Before(deadline); round++ {
		// A run is killed at a random moment in half the rounds; in a
		// third, sshd is restarted under it (if it still runs by then).
		var killAt, restartAt time.Duration
		// The first run, which has the whole source to copy, is always
		// killed, at a moment early enough to fall within it.
		if round == 0 {
			killAt = 300*time.Millisecond + time.Duration(rnd.Int64N(int64(prof.window/2)))
		} else if rnd.IntN(2) == 0 {
			killAt = 300*time.Millisecond + time.Duration(rnd.Int64N(int64(prof.window)))
		}
		if rnd.IntN(3) == 0 {
			restartAt = 200*time.Millisecond + time.Duration(rnd.Int64N(int64(prof.window*2/3)))
		}
		res := soakRun(t, r, st, args, prof.round, killAt, restartAt)
		how := fmt.Sprintf("exit %d", res.ExitCode)
		if res.Killed() {
			how = "killed"
		}
		st.mu.Lock()
		st.exits[how]++
		st.mu.Unlock()
		t.Logf("round %d: %s after %v (kill at %v, sshd restart at %v)", round, how,
			res.Duration.Round(time.Millisecond), killAt, restartAt)
		if _, err := os.Lstat(r.dst); errors.Is(err, fs.ErrNotExist) && res.ExitCode != ferrybin.ExitOK {
			// Stopped before it made the target root: nothing to check.
		} else if list, err := torn.Check(r.dst); err != nil {
			t.Fatal(err)
		} else if len(list) > 0 {
			t.Fatalf("round %d (%s): torn or foreign entries at final names:\n%s", round, how, strings.Join(first(list, 30), "\n"))
		}
		switch {
		case res.Killed(), res.ExitCode == ferrybin.ExitFailed:
			// Faults may make a run give up on files; the next run goes on
			// from what it left.
		case res.ExitCode == ferrybin.ExitUnreachable:
			// Refused logins or a restarting sshd stop a run at its first
			// dial; wait a moment, as a scheduler would, rather than spin.
			time.Sleep(time.Second)
		case res.ExitCode == ferrybin.ExitOK:
			// Partials may be left under faults: an upload that published
			// its file removes the partials it resumed from over a link
			// that may be down by then. The next run removes them, and the
			// last run, without faults, must leave none.
			checkSameWith(t, r.srcTree, r.dst, sftpSyncChecks)
			st.jobs++
			if time.Now().Before(deadline) {
				if err := os.RemoveAll(r.dst); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(r.dst, 0o755); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("round %d under faults: %s", round, res)
		}
	}
	counts := chaos.Stop()
	for k, n := range counts {
		st.faults[string(k)] += n
	}

	res := soakRun(t, r, st, args, prof.round, 0, 0)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("last run without faults: %s", res)
	}
	diff, err := treecheck.CompareTo(r.srcTree, r.dst, sftpSyncChecks)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := treecheck.Partials(r.dst)
	if err != nil {
		t.Fatal(err)
	}
	st.jobs++
	st.upstream = r.proxy.BytesUp()
	st.log(t, time.Since(start), len(diff), len(parts))
	if len(diff) > 0 {
		t.Fatalf("target differs from source after the last run (%d differences):\n%s", len(diff), strings.Join(first(diff, 30), "\n"))
	}
	if len(parts) > 0 {
		t.Fatalf("%d partial files left after the last run:\n%s", len(parts), strings.Join(first(parts, 30), "\n"))
	}
	if st.exits["killed"] == 0 {
		t.Errorf("no run was killed: the soak did not test restarts")
	}
}

// soakRun runs ferry once, killing it after killAt and restarting sshd
// after restartAt when those are non-zero, and records its peak memory.
func soakRun(t *testing.T, r *sftpRig, st *soakStats, args []string, limit, killAt, restartAt time.Duration) ferrybin.Result {
	t.Helper()
	cmd := ferrybin.Command(t, args...)
	p := ferrybin.StartCmd(t, cmd)
	timer := func(d time.Duration) <-chan time.Time {
		if d == 0 {
			return nil
		}
		return time.After(d)
	}
	kill, restart, hang := timer(killAt), timer(restartAt), time.After(limit)
wait:
	for {
		select {
		case <-p.Done():
			break wait
		case <-kill:
			p.Kill()
			st.fault("ferry SIGKILL")
			kill = nil
		case <-restart:
			if err := r.srv.Restart(); err != nil {
				t.Fatalf("sshd restart: %v", err)
			}
			st.fault("sshd restart")
			restart = nil
		case <-hang:
			p.Signal(syscall.SIGQUIT) // a goroutine dump, to see where it hung
			time.Sleep(time.Second)
			p.Kill()
			t.Fatalf("ferry still running after %v: %s", limit, p.Wait())
		}
	}
	res := p.Wait()
	if rss := st.noteRSS(cmd); rss > 0 {
		t.Logf("peak memory of this run: %.1f MiB", float64(rss)/1024)
	}
	st.mu.Lock()
	st.dead += strings.Count(res.Stderr, "sftp connection dead")
	st.resumed += strings.Count(res.Stderr, "resuming upload")
	st.mu.Unlock()
	return res
}

// noteRSS records the peak memory of a finished ferry process and returns
// it in KiB (0 when unknown).
func (s *soakStats) noteRSS(cmd *exec.Cmd) (kib int64) {
	if cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.mu.Lock()
		s.maxRSS = max(s.maxRSS, ru.Maxrss) // KiB on Linux
		s.mu.Unlock()
		return ru.Maxrss
	}
	return 0
}

func (s *soakStats) log(t *testing.T, wall time.Duration, lost, partials int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	kinds := make([]string, 0, len(s.faults))
	total := 0
	for k, n := range s.faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		total += n
	}
	slices.Sort(kinds)
	exits := make([]string, 0, len(s.exits))
	for k, n := range s.exits {
		exits = append(exits, fmt.Sprintf("%s=%d", k, n))
	}
	slices.Sort(exits)
	fmt.Fprintf(&b, "soak figures:\n")
	fmt.Fprintf(&b, "  faults injected: %d (%s)\n", total, strings.Join(kinds, ", "))
	fmt.Fprintf(&b, "  runs under faults: %s\n", strings.Join(exits, ", "))
	fmt.Fprintf(&b, "  connections declared dead by keepalive: %d; uploads resumed from a partial: %d\n", s.dead, s.resumed)
	fmt.Fprintf(&b, "  complete jobs: %d of %d files and symlinks, %.1f MiB each (%.1f MiB upstream in all)\n",
		s.jobs, s.files, float64(s.bytes)/(1<<20), float64(s.upstream)/(1<<20))
	fmt.Fprintf(&b, "  files lost or torn: %d; partial files left: %d\n", lost, partials)
	fmt.Fprintf(&b, "  wall time: %v; peak memory of ferry: %.1f MiB", wall.Round(time.Second), float64(s.maxRSS)/1024)
	t.Log(b.String())
}
