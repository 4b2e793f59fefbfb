package integration

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPChaos runs `ferry sync` again and again while the proxy injects
// random faults (resets, black holes, links that die after a few bytes,
// latency, throttling, refused connections) for a while. Every run must end
// by itself with a known exit status and leave no torn file at a final name;
// a run that says it succeeded must have left the target identical to the
// source (the target is then wiped so that the next run has work to do).
// Once the faults stop, one more run must finish the job.
func TestSFTPChaos(t *testing.T) {
	seed := testSeed(t)
	chaosFor := 20 * time.Second
	if testing.Short() {
		chaosFor = 8 * time.Second
	}
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{
		Seed: seed, Dirs: 10, SmallFiles: 200,
		LargeFiles: 2, LargeMin: 8 << 20, LargeMax: 24 << 20,
	})
	args := r.syncArgs(r.knownHosts, "--retries", "10",
		"--keepalive", "500ms", "--keepalive-max-missed", "3", "--stall-timeout", "2s")

	var mu sync.Mutex
	var faults []string
	start := time.Now()
	chaos := r.proxy.StartChaos(faultproxy.ChaosOptions{
		Seed: seed, Interval: 700 * time.Millisecond, Hold: 2 * time.Second,
		DataLimit: 4 << 20,
		Log: func(msg string) {
			mu.Lock()
			faults = append(faults, fmt.Sprintf("%6.2fs %s", time.Since(start).Seconds(), msg))
			mu.Unlock()
		},
	})
	// The faults stop on time even while a run is in flight, so that the
	// test also measures how soon a run recovers once the link is good.
	var counts map[faultproxy.Kind]int
	var stopOnce sync.Once
	stopped := make(chan struct{})
	stopChaos := func() {
		stopOnce.Do(func() {
			counts = chaos.Stop()
			close(stopped)
		})
	}
	defer stopChaos()
	time.AfterFunc(chaosFor, stopChaos)
	chaosOn := func() bool {
		select {
		case <-stopped:
			return false
		default:
			return true
		}
	}
	dump := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(faults, "\n")
	}

	// Mtime and mode are held to the letter under faults too: stale
	// requests of an abandoned connection never reach a published file
	// (TestSFTPStaleWritesAfterStall).
	duringChaos := sftpSyncChecks
	exits := map[int]int{}
	torn := treecheck.NewTornChecker(r.srcTree)
	var lastRun ferrybin.Result
	for run := 0; chaosOn(); run++ {
		res := ferrybin.Run(t, 2*time.Minute, args...)
		lastRun = res
		exits[res.ExitCode]++
		switch res.ExitCode {
		case ferrybin.ExitOK, ferrybin.ExitFailed, ferrybin.ExitUnreachable:
		default:
			t.Fatalf("run %d under faults: %s\nfaults so far:\n%s", run, res, dump())
		}
		if res.ExitCode == ferrybin.ExitUnreachable {
			// Refused at once (a refused or reset dial): give the link a
			// moment rather than spin.
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := os.Stat(r.dst); os.IsNotExist(err) {
			// Refused before the target root was created: nothing to check.
			continue
		}
		bad, err := torn.Check(r.dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Fatalf("run %d (exit %d): torn or foreign entries at final names:\n%s\nfaults so far:\n%s",
				run, res.ExitCode, strings.Join(first(bad, 30), "\n"), dump())
		}
		if res.ExitCode == ferrybin.ExitOK {
			diff, err := treecheck.CompareTo(r.srcTree, r.dst, duringChaos)
			if err != nil {
				t.Fatal(err)
			}
			if len(diff) > 0 {
				t.Fatalf("run %d exited 0 under faults but the target differs (%d differences):\n%s\n%s\nfaults so far:\n%s",
					run, len(diff), strings.Join(first(diff, 30), "\n"), res, dump())
			}
			if err := os.RemoveAll(r.dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	over := time.Since(start) - chaosFor
	t.Logf("%v of faults %v; runs by exit status %v; bytes up %d, down %d, connections %d; the run in flight when the faults stopped ended %v later (exit %d)",
		chaosFor, counts, exits, r.proxy.BytesUp(), r.proxy.BytesDown(), r.proxy.Accepted(), over.Round(time.Millisecond), lastRun.ExitCode)
	res := ferrybin.Run(t, 2*time.Minute, args...)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("run after the faults stopped: %s", res)
	}
	r.check(t)
}
