package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	cases := []struct {
		name     string
		line     string
		ppid     int
		cpu      time.Duration
		parsedOK bool
	}{
		{"plain", "517 (sshd) S 514 517 517 0 -1 4194560 100 0 0 0 40 31 0 0 20 0 1 0 123 0 0", 514, 710 * time.Millisecond, true},
		{"name with spaces and parens", "9 (a (b) c) R 1 9 9 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 1, 70 * time.Millisecond, true},
		{"truncated", "9 (x) R 1 9", 0, 0, false},
		{"no name", "garbage", 0, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ppid, cpu, ok := parseProcStat([]byte(tc.line))
			if ok != tc.parsedOK || ppid != tc.ppid || cpu != tc.cpu {
				t.Fatalf("got ppid %d cpu %v ok %v, want %d %v %v", ppid, cpu, ok, tc.ppid, tc.cpu, tc.parsedOK)
			}
		})
	}
}

// TestServerWatchCountsOrphans: a grandchild that outlives its parent,
// and so is reaped by init rather than by the watched process, still has
// its CPU counted; the watched process's reaped counters miss it.
func TestServerWatchCountsOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("burns CPU for about a second")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// The watched "server" is this test's child sh, which starts a
	// background sh that burns CPU for ~0.6 s and exits only after its
	// parent has gone.
	burn := `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done`
	server := exec.Command(sh, "-c", "("+burn+") & sleep 0.2")
	server.Stdout, server.Stderr = os.Stdout, os.Stderr
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	w := WatchServer(server.Process.Pid)
	if err := server.Wait(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the orphan burns on, then exits
	got := w.Stop()
	if got < 300*time.Millisecond {
		t.Fatalf("watched %v of CPU; the orphaned burner used far more", got)
	}
	if rc := server.ProcessState.UserTime() + server.ProcessState.SystemTime(); rc >= got {
		t.Fatalf("the server's own rusage (%v) already covers the orphan (%v): the test shows nothing", rc, got)
	}
}
