package bench

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMeasureRSS(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wrapped bool
	}{
		{"child", []string{"BENCH_HOG_MIB=48"}, false},
		{"grandchild", []string{"BENCH_HOG_MIB=48", "BENCH_HOG_VIA_CHILD=1"}, false},
		{"child via GNU time", []string{"BENCH_HOG_MIB=48"}, true},
		{"grandchild via GNU time", []string{"BENCH_HOG_MIB=48", "BENCH_HOG_VIA_CHILD=1"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			timeBin := ""
			if tc.wrapped {
				if timeBin = gnuTime(); timeBin == "" {
					t.Skip("no GNU time at /usr/bin/time")
				}
			}
			res, err := measure(context.Background(), Command{Name: os.Args[0], Env: tc.env}, timeBin)
			if err != nil {
				t.Fatal(err)
			}
			const want = 48 << 10 // KiB
			// Unwrapped, the figure also holds this test process's own
			// peak (vfork), so only the lower bound can be checked.
			if res.MaxRSSKiB < want || (tc.wrapped && res.MaxRSSKiB > 3*want) {
				t.Errorf("MaxRSSKiB = %d, want about %d", res.MaxRSSKiB, want)
			}
			if res.TreeRSSKiB < res.MaxRSSKiB {
				t.Errorf("TreeRSSKiB %d below MaxRSSKiB %d", res.TreeRSSKiB, res.MaxRSSKiB)
			}
			if res.CPU <= 0 {
				t.Errorf("CPU = %v, want the hog's own time", res.CPU)
			}
			if res.Wrapped != tc.wrapped {
				t.Errorf("Wrapped = %v, want %v", res.Wrapped, tc.wrapped)
			}
			if res.Wall < 150*time.Millisecond {
				t.Errorf("Wall = %v, shorter than the hog's sleep", res.Wall)
			}
		})
	}
}

// Through GNU time a tiny program must show a tiny peak, not the
// benchmark process's own (the vfork inheritance Result.Wrapped explains).
func TestMeasureSmallProcess(t *testing.T) {
	if gnuTime() == "" {
		t.Skip("no GNU time at /usr/bin/time")
	}
	res, err := Measure(context.Background(), Command{Name: "true"})
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxRSSKiB <= 0 || res.MaxRSSKiB > 32<<10 {
		t.Errorf("MaxRSSKiB of true = %d KiB, want a small positive figure", res.MaxRSSKiB)
	}
}

func TestMeasureFailure(t *testing.T) {
	_, err := Measure(context.Background(), Command{Name: "sh", Args: []string{"-c", "echo broken >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("err = %v, want a failure quoting stderr", err)
	}
}

func TestMeasureTimeoutKillsTree(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// The shell's child holds stdout open; unless the whole group dies,
	// Wait blocks until the sleep ends.
	_, err := Measure(ctx, Command{Name: "sh", Args: []string{"-c", "sleep 20; echo done"}})
	if err == nil {
		t.Fatal("Measure of a killed command returned no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Measure returned after %v; the tree was not killed at the deadline", d)
	}
}

func TestTreeRSSSeesChildren(t *testing.T) {
	// A shell that holds a sleeping child: the tree's sum must exceed the
	// shell's own memory.
	cmd := exec.Command("sh", "-c", "sleep 1 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	time.Sleep(200 * time.Millisecond)
	own := rssKiB(cmd.Process.Pid)
	all := treeRSS(cmd.Process.Pid)
	if own <= 0 || all <= own {
		t.Errorf("treeRSS = %d KiB, own = %d KiB; want the sleeping child counted", all, own)
	}
}

func TestReapedCPU(t *testing.T) {
	// A shell that burns a fixed amount of CPU in a child it reaps, then
	// lingers: while it lingers, its reaped CPU must account for nearly
	// all the CPU the whole tree reports at exit.
	busy := "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"
	cmd := exec.Command("sh", "-c", "sh -c '"+busy+"'; sleep 0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(20 * time.Millisecond)
	if !HasChildren(pid) {
		t.Error("HasChildren = false while the busy child runs")
	}
	var reaped time.Duration
	for waiting := true; waiting; {
		// The last sample taken before the shell is reaped itself holds
		// the busy child's CPU; after that /proc has nothing to read.
		if r := ReapedCPU(pid); r > 0 {
			reaped = r
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		case <-time.After(10 * time.Millisecond):
		}
	}
	total := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if reaped <= 0 || reaped < total/2 || reaped > total+20*time.Millisecond {
		t.Errorf("ReapedCPU = %v while the tree used %v in all; want most of it", reaped, total)
	}
}
