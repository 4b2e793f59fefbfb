package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/cmd/ferry/config"
)

// fakeTargets makes config targets named dead-* unreachable, auth-* refuse
// our key, and nopng-* refuse .png files; others open as configured.
func fakeTargets(t *testing.T) {
	t.Helper()
	old := configTargetOpener
	t.Cleanup(func() { configTargetOpener = old })
	configTargetOpener = func(ctx context.Context, ct *config.Target, log *slog.Logger, onReconnect func()) (backends.Backend, error) {
		switch {
		case strings.HasPrefix(ct.Name, "dead"):
			return nil, fmt.Errorf("dial 127.0.0.1:1: connection refused: %w", backends.ErrUnreachable)
		case strings.HasPrefix(ct.Name, "auth"):
			return nil, fmt.Errorf("host key mismatch: %w", backends.ErrAuth)
		case strings.HasPrefix(ct.Name, "nopng"):
			b, err := old(ctx, ct, log, onReconnect)
			return noPNG{b}, err
		}
		return old(ctx, ct, log, onReconnect)
	}
}

// writeConfig writes a config file in dir, with mode 600.
func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// jobSite makes a small source tree and returns its path.
func jobSite(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	for p, c := range map[string]string{"index.html": "<h1>hi</h1>", "css/a.css": "body{}", "img/logo.png": "PNG"} {
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// files lists the regular files under root with their content.
func files(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

func sameFiles(t *testing.T, src, dst string) {
	t.Helper()
	a, b := files(t, src), files(t, dst)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("%s differs from the source:\n got %v\nwant %v", dst, b, a)
	}
}

func TestRunOnceExitCodes(t *testing.T) {
	fakeTargets(t)
	tests := []struct {
		name    string
		targets []string // target names; each a local dir under out/
		code    int
		status  map[string]string // target -> start of its STATUS column
	}{
		{"all targets done", []string{"a", "b"}, exitOK, map[string]string{"a": "ok", "b": "ok"}},
		{"a file fails on one target", []string{"a", "nopng"}, exitFailed, map[string]string{"a": "ok", "nopng": "failed: 1 path"}},
		{"one target unreachable, the others finish", []string{"a", "dead", "b"}, exitUnreachable,
			map[string]string{"a": "ok", "dead": "unreachable:", "b": "ok"}},
		{"auth refused counts as unreachable over failed files", []string{"nopng", "auth"}, exitUnreachable,
			map[string]string{"nopng": "failed", "auth": "unreachable:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src := jobSite(t, dir)
			var b strings.Builder
			fmt.Fprintf(&b, "jobs:\n  - name: site\n    source: %q\n    targets:\n", src)
			for _, n := range tc.targets {
				fmt.Fprintf(&b, "      - {name: %s, type: local, path: %q, fsync: false}\n", n, filepath.Join(dir, "out", n))
			}
			cfg := writeConfig(t, dir, b.String())
			code, stdout, stderr := runFerry(t, "run", "--once", "-c", cfg)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for target, st := range tc.status {
				re := regexp.MustCompile(`(?m)^site +` + target + ` .*  ` + regexp.QuoteMeta(st))
				if !re.MatchString(stdout) {
					t.Errorf("no line for %s with status %q in:\n%s", target, st, stdout)
				}
				if st == "ok" {
					sameFiles(t, src, filepath.Join(dir, "out", target))
				}
			}
			if !strings.Contains(stdout, "JOB") || !strings.Contains(stdout, "VERSIONED") {
				t.Errorf("no table header:\n%s", stdout)
			}
		})
	}
}

func TestRunOnceConfigErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "jobs:\n  - name: x\n    source: ./missing\n    colour: red\n    targets: [{name: a, type: local, path: ./out}]\n")
	code, stdout, stderr := runFerry(t, "run", "--once", "-c", cfg)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{"ferry.yaml:3:13: jobs[0].source", "ferry.yaml:4:5: jobs[0].colour"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, "\n"); n < 2 {
		t.Errorf("want one line per problem, got:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Errorf("a bad config created a target")
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	good := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: site\n    source: %q\n    targets: [{name: a, type: local, path: %q}]\n", src, filepath.Join(dir, "out")))
	code, stdout, stderr := runFerry(t, "check", "-c", good)
	if code != 0 || !strings.Contains(stdout, "ok: 1 job, 1 target") {
		t.Errorf("good config: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Errorf("check created the target")
	}
	bad := writeConfig(t, dir, "jobs:\n  - name: site\n    source: "+src+"\n    mode: mirorr\n    targets: [{name: a, type: local, path: "+src+"/x}]\n")
	code, stdout, stderr = runFerry(t, "check", "-c", bad)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "jobs[0].mode") || !strings.Contains(stderr, "jobs[0].targets[0]") {
		t.Errorf("bad config: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if code, _, _ := runFerry(t, "check"); code != exitUsage {
		t.Errorf("check without -c: exit %d", code)
	}
}

func TestRunOnceBackupKeepsVersions(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: b\n    source: %q\n    mode: backup\n    backup_dir: .old\n    keep: 2\n    targets: [{name: a, type: local, path: %q, fsync: false}]\n", src, out))
	for i := range 4 {
		if i > 0 {
			os.WriteFile(filepath.Join(src, "index.html"), []byte(fmt.Sprintf("v%d", i)), 0o644)
			os.Chtimes(filepath.Join(src, "index.html"), time.Now(), time.Now().Add(time.Duration(i)*time.Minute))
		}
		if code, stdout, stderr := runFerry(t, "run", "--once", "-c", cfg); code != 0 {
			t.Fatalf("run %d: exit %d\n%s%s", i, code, stdout, stderr)
		}
	}
	got := files(t, out)
	if got["index.html"] != "v3" {
		t.Errorf("live file %q", got["index.html"])
	}
	var versions []string
	for p, c := range got {
		if strings.HasPrefix(p, ".old/") {
			versions = append(versions, c)
		}
	}
	// Three versions were replaced; keep: 2 leaves the two newest.
	if fmt.Sprint(sortStrings(versions)) != "[v1 v2]" {
		t.Errorf("versions %v, want [v1 v2] (files %v)", versions, got)
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	load := func(text string) *config.Config {
		c, err := config.Parse(filepath.Join(dir, "f.yaml"), []byte(text), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	job := func(extra string) string {
		return fmt.Sprintf("  - name: j\n    source: %q\n    schedule: 1h\n%s    targets: [{name: a, type: sftp, host: h, path: p, accept_new_host_key: true}]\n", src, extra)
	}
	base := load("jobs:\n" + job("")).Jobs[0]
	moved := load("x-pad: 1\n\n\njobs:\n" + job("")).Jobs[0]
	changed := load("jobs:\n" + job("    exclude: ['*.tmp']\n")).Jobs[0]
	if fingerprint(base) != fingerprint(moved) {
		t.Errorf("a job moved down the file counts as changed")
	}
	if fingerprint(base) == fingerprint(changed) {
		t.Errorf("a job with a new exclude counts as unchanged")
	}
	pw := load("jobs:\n" + strings.Replace(job(""), "accept_new_host_key: true", "accept_new_host_key: true, password: a", 1)).Jobs[0]
	pw2 := load("jobs:\n" + strings.Replace(job(""), "accept_new_host_key: true", "accept_new_host_key: true, password: b", 1)).Jobs[0]
	if fingerprint(pw) == fingerprint(pw2) {
		t.Errorf("a changed password counts as unchanged")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// startDaemon runs `ferry run ARGS` in the background until the test ends,
// then cancels it and checks that it stops, with exit 0. It returns the
// daemon's log (stderr).
func startDaemon(t *testing.T, args ...string) *syncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"run"}, args...), stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("daemon exit %d after cancel\n%s", code, stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("daemon did not stop")
		}
	})
	return stderr
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, limit time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDaemonScheduleReloadAndStatus(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	outA, outB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	jobA := fmt.Sprintf("  - name: ja\n    source: %q\n    schedule: 1s\n    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, outA)
	cfg := writeConfig(t, dir, "metrics_addr: 127.0.0.1:0\njobs:\n"+jobA)

	stderr := startDaemon(t, "-c", cfg)

	waitFor(t, "first scheduled run", 10*time.Second, func() bool { return len(files(t, outA)) == 3 })
	// A change lands on the next interval.
	os.WriteFile(filepath.Join(src, "new.txt"), []byte("new"), 0o644)
	waitFor(t, "the change on a later run", 10*time.Second, func() bool { return files(t, outA)["new.txt"] == "new" })

	// Status over HTTP.
	m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", stderr.String())
	}
	var sout, serr bytes.Buffer
	if code := run(context.Background(), []string{"status", "--addr", m[1]}, &sout, &serr); code != 0 ||
		!regexp.MustCompile(`(?m)^ja +t +schedule +(ok|running) `).MatchString(sout.String()) {
		t.Errorf("status: exit %d\n%s%s", code, sout.String(), serr.String())
	}

	// SIGHUP with a second job added: it starts, ja keeps running.
	writeConfig(t, dir, "metrics_addr: 127.0.0.1:0\njobs:\n"+jobA+
		fmt.Sprintf("  - name: jb\n    source: %q\n    schedule: 1s\n    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, outB))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the added job", 10*time.Second, func() bool { return len(files(t, outB)) == 4 })
	log := stderr.String()
	if strings.Contains(log, "job stopped") || strings.Count(log, "job started") != 2 {
		t.Errorf("reload restarted an unchanged job:\n%s", log)
	}

	// jb changed (an exclude) and ja removed: both stop, jb starts again.
	writeConfig(t, dir, "metrics_addr: 127.0.0.1:0\njobs:\n"+
		fmt.Sprintf("  - name: jb\n    source: %q\n    schedule: 1s\n    exclude: [new.txt]\n    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, outB))
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed job to restart", 10*time.Second, func() bool { return strings.Count(stderr.String(), "job started") == 3 })
	log = stderr.String()
	if !regexp.MustCompile(`msg="job stopped" job=ja`).MatchString(log) || !regexp.MustCompile(`msg="job stopped" job=jb`).MatchString(log) {
		t.Errorf("reload did not stop the removed and the changed job:\n%s", log)
	}
	// Each run of ja rewrote nothing after its removal: a new file stays off outA.
	os.WriteFile(filepath.Join(src, "later.txt"), []byte("later"), 0o644)
	waitFor(t, "jb to copy later.txt", 10*time.Second, func() bool { return files(t, outB)["later.txt"] == "later" })
	if _, ok := files(t, outA)["later.txt"]; ok {
		t.Errorf("the removed job still runs")
	}

	// A broken config on reload is reported; the jobs keep running.
	writeConfig(t, dir, "jobs:\n  - name: jb\n    sauce: x\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload", 10*time.Second, func() bool { return strings.Contains(stderr.String(), "reload failed") })
	os.WriteFile(filepath.Join(src, "after-bad.txt"), []byte("still"), 0o644)
	waitFor(t, "jb after the failed reload", 10*time.Second, func() bool { return files(t, outB)["after-bad.txt"] == "still" })
}

func TestDaemonWatchJob(t *testing.T) {
	fakeTargets(t)
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, dir, fmt.Sprintf("metrics_addr: 127.0.0.1:0\njobs:\n  - name: live\n    source: %q\n    watch: true\n"+
		"    targets:\n      - {name: t, type: local, path: %q, fsync: false}\n      - {name: dead, type: local, path: %q}\n",
		src, out, filepath.Join(dir, "never")))
	stderr := startDaemon(t, "-c", cfg)
	waitFor(t, "the first sync", 10*time.Second, func() bool { return len(files(t, out)) == 3 })
	os.WriteFile(filepath.Join(src, "new.txt"), []byte("watched"), 0o644)
	os.Remove(filepath.Join(src, "css", "a.css"))
	waitFor(t, "the change", 15*time.Second, func() bool {
		f := files(t, out)
		_, gone := f["css/a.css"]
		return f["new.txt"] == "watched" && !gone
	})
	m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", stderr.String())
	}
	var sout, serr bytes.Buffer
	if code := run(context.Background(), []string{"status", "--addr", m[1]}, &sout, &serr); code != 0 ||
		!regexp.MustCompile(`(?m)^live +t +watch +watching `).MatchString(sout.String()) ||
		!regexp.MustCompile(`(?m)^live +dead +watch +(down|syncing) `).MatchString(sout.String()) {
		t.Errorf("status: exit %d\n%s%s", code, sout.String(), serr.String())
	}
}

func TestDaemonWatchBackupKeepsVersions(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	out := filepath.Join(dir, "out")
	cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: live\n    source: %q\n    watch: true\n    mode: backup\n    backup_dir: .v\n"+
		"    targets: [{name: t, type: local, path: %q, fsync: false}]\n", src, out))
	stderr := startDaemon(t, "-c", cfg)
	waitFor(t, "the first sync", 10*time.Second, func() bool {
		f := files(t, out)
		return len(f) == 3 && f["index.html"] == "<h1>hi</h1>" && f["img/logo.png"] == "PNG"
	})
	for i, c := range []string{"second", "third"} {
		p := filepath.Join(src, "index.html")
		os.WriteFile(p, []byte(c), 0o644)
		mt := time.Now().Add(time.Duration(i+1) * time.Minute)
		os.Chtimes(p, mt, mt)
		waitFor(t, "the change to "+c, 15*time.Second, func() bool { return files(t, out)["index.html"] == c })
	}
	var old []string
	for p, c := range files(t, out) {
		if strings.HasPrefix(p, ".v/") && strings.HasSuffix(p, "/index.html") {
			old = append(old, c)
		}
	}
	if fmt.Sprint(sortStrings(old)) != "[<h1>hi</h1> second]" {
		t.Errorf("old versions %v, want the first and second content\n%s", old, stderr.String())
	}
}
