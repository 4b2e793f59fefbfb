package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// sftpChecks is what an SFTP target keeps: content, and mtimes in whole
// seconds.
var sftpChecks = treecheck.Options{ModTime: true, ModTimeResolution: time.Second}

// sftpTargetYAML is one SFTP target of a config, on srv's root.
func sftpTargetYAML(name string, srv *sshd.Server, extra string) string {
	return fmt.Sprintf("      - name: %s\n        type: sftp\n        host: 127.0.0.1\n        port: %d\n        user: %s\n"+
		"        identity: %q\n        known_hosts: %q\n        path: %q\n        keepalive: 1s\n        keepalive_max_missed: 2\n%s",
		name, srv.Port(), srv.User(), srv.ClientKeyPath(), srv.KnownHostsPath(), srv.Root(), extra)
}

func writeRunConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func compareTree(t *testing.T, what, src, dst string, opts treecheck.Options) {
	t.Helper()
	diff, err := treecheck.Compare(src, dst, opts)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(diff) > 0 {
		if len(diff) > 10 {
			diff = append(diff[:10], fmt.Sprintf("... %d more", len(diff)-10))
		}
		t.Errorf("%s differs from the source:\n%s", what, strings.Join(diff, "\n"))
	}
}

// TestRunOnceOneSSHDStopped runs one job to two SFTP targets and one local
// target with `ferry run --once`, stopping one sshd while its target is
// still being filled: the run exits 3 (or 1) with the other two complete,
// and after the sshd restarts, the next run brings the third up to date.
func TestRunOnceOneSSHDStopped(t *testing.T) {
	bin := ferrybin.Path(t)
	t.Logf("ferry binary %s", bin)
	s1 := sshd.Start(t, sshd.Options{})
	s2 := sshd.Start(t, sshd.Options{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	spec := treecheck.Spec{Seed: testSeed(t), Dirs: 20, SmallFiles: 300, LargeFiles: 3, LargeMin: 2 << 20, LargeMax: 4 << 20}
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	localDst := filepath.Join(tmp, "local")
	cfg := writeRunConfig(t, tmp, fmt.Sprintf("jobs:\n  - name: fan\n    source: %q\n    targets:\n", src)+
		sftpTargetYAML("fast", s1, "        retries: 2\n")+
		// The slow target is throttled so that it is still busy when its
		// sshd goes away.
		sftpTargetYAML("slow", s2, "        retries: 2\n        bwlimit: 1M\n")+
		fmt.Sprintf("      - name: disk\n        type: local\n        path: %q\n", localDst))

	p := ferrybin.Start(t, "run", "--once", "-c", cfg)
	// Stop the slow target's sshd once it has started receiving files.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := countFiles(t, s2.Root()); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow target got no file in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stoppedAt := time.Now()
	s2.Stop()
	var res ferrybin.Result
	select {
	case <-p.Done():
		res = p.Wait()
	case <-time.After(2 * time.Minute):
		p.Kill()
		t.Fatalf("run --once did not end 2 minutes after the sshd stopped:\n%v", p.Wait())
	}
	t.Logf("run ended %v after the sshd stopped, exit %d", time.Since(stoppedAt).Round(time.Millisecond), res.ExitCode)
	if res.ExitCode != 3 && res.ExitCode != 1 {
		t.Fatalf("want exit 3 or 1 with one target down:\n%v", res)
	}
	if !strings.Contains(res.Stdout, "fast") || !strings.Contains(res.Stdout, "slow") {
		t.Errorf("no summary table:\n%s", res.Stdout)
	}
	compareTree(t, "fast SFTP target", src, s1.Root(), sftpChecks)
	compareTree(t, "local target", src, localDst, localSyncChecks)
	if diff, _ := treecheck.Compare(src, s2.Root(), sftpChecks); len(diff) == 0 {
		t.Errorf("the stopped target is complete: the sshd was stopped too late to test anything")
	}

	if err := s2.Restart(); err != nil {
		t.Fatal(err)
	}
	res = ferrybin.Run(t, 2*time.Minute, "run", "--once", "-c", cfg)
	if res.ExitCode != 0 {
		t.Fatalf("run after the restart:\n%v", res)
	}
	for _, dst := range []struct {
		name, dir string
		opts      treecheck.Options
	}{{"fast", s1.Root(), sftpChecks}, {"slow", s2.Root(), sftpChecks}, {"disk", localDst, localSyncChecks}} {
		compareTree(t, dst.name, src, dst.dir, dst.opts)
		if parts, err := treecheck.Partials(dst.dir); err != nil || len(parts) > 0 {
			t.Errorf("%s: partial files left: %v %v", dst.name, parts, err)
		}
	}
}

// countFiles counts the regular files under root, partials included.
func countFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.Walk(root, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// TestSystemdUnit checks examples/ferry.service with systemd-analyze
// verify (skipped where it is missing), with the built binary in place of
// /usr/local/bin/ferry; any warning fails the test, since systemd only
// warns about unknown or misspelt keys.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join("..", "examples", "ferry.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/ferry run -c /etc/ferry/ferry.yaml\n",
		"ExecReload=/bin/kill -HUP $MAINPID\n",
		"Restart=on-failure\n",
		"ProtectSystem=strict\n",
		"ReadWritePaths=",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := ferrybin.Path(t)
	p := filepath.Join(t.TempDir(), "ferry.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/ferry", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", p).CombinedOutput()
	if err != nil || strings.Contains(string(out), "ferry.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestWatchOneSSHDStopped runs a watch job (`ferry run`) to two SFTP
// targets and a local one, stops one sshd, changes the source: the other
// two follow the changes while it is down, and it catches up after its
// sshd restarts; SIGTERM then stops ferry with exit 0.
func TestWatchOneSSHDStopped(t *testing.T) {
	ferrybin.Path(t)
	s1 := sshd.Start(t, sshd.Options{})
	s2 := sshd.Start(t, sshd.Options{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	spec := treecheck.Spec{Seed: testSeed(t), Dirs: 10, SmallFiles: 200, LargeFiles: 1, LargeMin: 1 << 20, LargeMax: 2 << 20}
	if err := treecheck.Generate(src, spec); err != nil {
		t.Fatal(err)
	}
	localDst := filepath.Join(tmp, "local")
	cfg := writeRunConfig(t, tmp, fmt.Sprintf("jobs:\n  - name: live\n    source: %q\n    watch: true\n    targets:\n", src)+
		sftpTargetYAML("one", s1, "")+sftpTargetYAML("two", s2, "")+
		fmt.Sprintf("      - name: disk\n        type: local\n        path: %q\n", localDst))
	p := ferrybin.Start(t, "run", "-c", cfg)
	defer p.Kill()

	type target struct {
		name, dir string
		opts      treecheck.Options
	}
	one, two, disk := target{"one", s1.Root(), sftpChecks}, target{"two", s2.Root(), sftpChecks}, target{"disk", localDst, localSyncChecks}
	equal := func(tg target) bool {
		diff, err := treecheck.Compare(src, tg.dir, tg.opts)
		return err == nil && len(diff) == 0
	}
	waitEqual := func(what string, limit time.Duration, tgs ...target) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			ok := true
			for _, tg := range tgs {
				ok = ok && equal(tg)
			}
			if ok {
				return time.Since(start)
			}
			select {
			case <-p.Done():
				t.Fatalf("ferry ended while waiting for %s:\n%v", what, p.Wait())
			case <-time.After(200 * time.Millisecond):
			}
			if time.Since(start) > limit {
				for _, tg := range tgs {
					compareTree(t, tg.name, src, tg.dir, tg.opts)
				}
				t.Fatalf("timed out after %v waiting for %s", limit, what)
			}
		}
	}
	t.Logf("first sync of all three: %v", waitEqual("the first sync", time.Minute, one, two, disk).Round(time.Millisecond))

	s2.Stop()
	// Changes while "two" is down: new files, a changed file, a deleted one.
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("new-%02d.txt", i)), []byte(strings.Repeat("x", i*100)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	var removed int
	for _, path := range tree.Paths() {
		if e := tree[path]; e.Kind == treecheck.File && removed < 5 {
			if err := os.Remove(filepath.Join(src, filepath.FromSlash(path))); err != nil {
				t.Fatal(err)
			}
			removed++
		}
	}
	t.Logf("changes on the two live targets while one is down: %v", waitEqual("the live targets", time.Minute, one, disk).Round(time.Millisecond))
	if equal(two) {
		t.Fatalf("the stopped target has the changes: its sshd did not stop")
	}

	if err := s2.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("the restarted target caught up in %v", waitEqual("the restarted target", 2*time.Minute, one, two, disk).Round(time.Millisecond))

	p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatalf("ferry did not stop 30s after SIGTERM")
	}
	if res := p.Wait(); res.ExitCode != 0 {
		t.Errorf("after SIGTERM:\n%v", res)
	}
}
