package ferrybin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func TestExitCodes(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"version", []string{"version"}, ExitOK},
		{"sync", []string{"sync", src, filepath.Join(t.TempDir(), "dst")}, ExitOK},
		{"sync without target", []string{"sync", src}, ExitUsage},
		{"unknown flag", []string{"sync", "--no-such-flag", src, t.TempDir()}, ExitUsage},
		{"missing source", []string{"sync", filepath.Join(src, "nope"), t.TempDir()}, ExitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Run(t, time.Minute, tc.args...)
			if res.ExitCode != tc.want || res.Killed() {
				t.Fatalf("want exit %d, got %s", tc.want, res)
			}
		})
	}
}

func TestKill(t *testing.T) {
	// A sleep stands in for a long sync, so the test does not depend on
	// how fast ferry is.
	p := StartCmd(t, exec.Command("/bin/sh", "-c", "sleep 30 & wait"))
	time.Sleep(50 * time.Millisecond)
	p.Kill()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("process still running 10s after Kill")
	}
	res := p.Wait()
	if !res.Killed() || res.Signal != syscall.SIGKILL || res.ExitCode != -1 {
		t.Fatalf("want killed by SIGKILL, got %s", res)
	}
	if !strings.Contains(res.String(), "killed by signal 9") {
		t.Fatalf("description %q does not say how it ended", res.String())
	}
	// The whole process group went, the background sleep too.
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(-p.Pid(), 0) == nil {
		if time.Now().After(deadline) {
			t.Fatal("a child of the killed process is still alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
