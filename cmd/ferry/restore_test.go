package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends/local"
	"github.com/ferrysync/ferry/engine"
)

// backupThree backs src up to dst three times with versions in .old, at
// run times an hour apart with files modified ten minutes before each,
// and returns the run times and the source's files after each step.
func backupThree(t *testing.T, src, dst string) ([]time.Time, []map[string]string) {
	t.Helper()
	os.MkdirAll(dst, 0o755)
	b, err := local.New(dst, local.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t1 := time.Date(2026, 11, 25, 16, 15, 0, 0, time.UTC)
	runs := []time.Time{t1, t1.Add(time.Hour), t1.Add(2 * time.Hour)}
	steps := []map[string]string{
		{"a.txt": "a1", "c.txt": "c1", "d/b.txt": "b1", "d/e/f.txt": "f1"},
		{"a.txt": "a2-changed", "c.txt": "", "d/b.txt": "", "d/e/f.txt": "", "n.txt": "n2"},
		{"c.txt": "c3", "d/b.txt": "b3"},
	}
	var states []map[string]string
	for i, step := range steps {
		for p, c := range step {
			full := filepath.Join(src, filepath.FromSlash(p))
			if c == "" {
				os.Remove(full)
				continue
			}
			write(t, src, p, c)
			mt := runs[i].Add(-10 * time.Minute)
			os.Chtimes(full, mt, mt)
		}
		states = append(states, files(t, src))
		now := runs[i]
		res, err := engine.SyncTargets(context.Background(), engine.FanOutOptions{
			Source: src, Mode: engine.Backup, MaxDelete: -1,
			Versions: &engine.Versions{Dir: ".old", Now: func() time.Time { return now }},
			Targets:  []engine.FanOutTarget{{Name: "t", Target: b}},
		})
		if err != nil || res[0].Err != nil || len(res[0].Report.Problems) > 0 {
			t.Fatalf("backup %d: %v %v %v", i, err, res[0].Err, res[0].Report.Problems)
		}
	}
	return runs, states
}

func TestRestoreCommand(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	runs, states := backupThree(t, src, dst)
	fakeTargets(t)
	deadDir := t.TempDir()
	cfg := writeConfig(t, dir, fmt.Sprintf("jobs:\n  - name: j\n    source: %q\n    mode: backup\n    backup_dir: .old\n    targets: [{name: t, type: local, path: %q}, {name: dead, type: local, path: %q}]\n", src, dst, deadDir))
	for i, at := range []string{runs[0].Format(time.RFC3339), runs[1].Add(5 * time.Minute).Format(time.RFC3339), runs[2].Format(time.RFC3339), ""} {
		want := states[min(i, 2)]
		t.Run(fmt.Sprintf("state %d", i+1), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"restore", "-c", cfg, "j/t", out}
			if at != "" {
				args = append(args, "--at", at)
			}
			if code, stdout, stderr := runFerry(t, args...); code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			if got := files(t, out); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("restored\n got %v\nwant %v", got, want)
			}
		})
	}
	t.Run("a folder lands under its name", func(t *testing.T) {
		out := t.TempDir()
		if code, stdout, stderr := runFerry(t, "restore", "-c", cfg, "j/t/d", out, "--at", runs[0].Format(time.RFC3339)); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		if got := fmt.Sprint(files(t, out)); got != "map[d/b.txt:b1 d/e/f.txt:f1]" {
			t.Errorf("restored %s", got)
		}
	})
	t.Run("versions lists live then newest first", func(t *testing.T) {
		code, stdout, stderr := runFerry(t, "versions", "-c", cfg, "j/t", "c.txt")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[1], "live") || !strings.Contains(lines[2], ".old/2026-11-25T171500Z/c.txt") {
			t.Errorf("versions output:\n%s", stdout)
		}
	})
	t.Run("ls -R shows files and marks folders", func(t *testing.T) {
		code, stdout, stderr := runFerry(t, "ls", "-c", cfg, "j/t", "-R")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
		for _, want := range []string{" d/\n", " d/b.txt\n", " .old/2026-11-25T171500Z/d/e/f.txt\n", " 10 "} {
			if !strings.Contains(stdout, want) {
				t.Errorf("ls output lacks %q:\n%s", want, stdout)
			}
		}
	})
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"unknown job", []string{"restore", "-c", cfg, "nope/t", t.TempDir()}, exitUsage},
		{"unknown target", []string{"restore", "-c", cfg, "j/nope", t.TempDir()}, exitUsage},
		{"bad time", []string{"restore", "-c", cfg, "j/t", t.TempDir(), "--at", "yesterday"}, exitUsage},
		{"missing path", []string{"restore", "-c", cfg, "j/t/nothing", t.TempDir()}, exitFailed},
		{"dotdot path", []string{"restore", "-c", cfg, "j/t/../x", t.TempDir()}, exitUsage},
		{"ls missing", []string{"ls", dst, "nothing"}, exitFailed},
		{"local target form", []string{"ls", dst, "d"}, exitOK},
		{"unreachable target", []string{"restore", "-c", cfg, "j/dead", t.TempDir()}, exitUnreachable},
		{"versions of a missing path", []string{"versions", "-c", cfg, "j/t", "nothing"}, exitFailed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if code, stdout, stderr := runFerry(t, c.args...); code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, stdout, stderr)
			}
		})
	}
}

func TestRestoreCommandRefusesAndKeeps(t *testing.T) {
	dir := t.TempDir()
	tgt := filepath.Join(dir, "tgt")
	write(t, tgt, "f.txt", "from target")
	outside := filepath.Join(dir, "outside")
	if err := os.Symlink(outside, filepath.Join(tgt, "evil")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	write(t, out, "f.txt", "mine")
	code, stdout, stderr := runFerry(t, "restore", tgt, out)
	if code != exitFailed || !strings.Contains(stderr, "evil") || !strings.Contains(stderr, "f.txt exists") {
		t.Errorf("exit %d, want 1 naming evil and f.txt\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Lstat(filepath.Join(out, "evil")); err == nil {
		t.Error("a symlink pointing out was created")
	}
	code, stdout, stderr = runFerry(t, "restore", "--overwrite", tgt, out)
	if code != exitFailed { // evil is still refused
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
	got := files(t, out)
	var aside string
	for p, c := range got {
		if strings.HasPrefix(p, "f.txt.ferry-old-") {
			aside = c
		}
	}
	if got["f.txt"] != "from target" || aside != "mine" {
		t.Errorf("after --overwrite: %v", got)
	}
}
