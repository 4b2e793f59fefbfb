package integration

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/s3server"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// restoreChecks: content, permission bits, and mtimes to the second (SFTP
// version 3 keeps whole seconds).
var restoreChecks = treecheck.Options{ModTime: true, ModTimeResolution: time.Second, Perm: true}

// filesOf lists the regular files under root, sorted.
func filesOf(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// mutate changes the source for backup round n: rewrites every 5th file,
// deletes every 7th (and one directory in round 1 if deleteDir), adds new files, and in
// round 2 brings one deleted path back with new content.
func mutate(t *testing.T, src string, n int, gone *[]string, deleteDir bool) {
	t.Helper()
	files := filesOf(t, src)
	for i, rel := range files {
		p := filepath.Join(src, rel)
		switch {
		case (i+n)%5 == 0:
			if err := os.WriteFile(p, []byte(fmt.Sprintf("round %d rewrote %s\n", n, rel)), 0o640); err != nil {
				t.Fatal(err)
			}
		case (i+n)%7 == 0:
			os.Remove(p)
			*gone = append(*gone, rel)
		}
	}
	if n == 1 && deleteDir {
		var dirs []string
		filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != src {
				dirs = append(dirs, p)
			}
			return nil
		})
		if len(dirs) > 0 {
			os.RemoveAll(dirs[len(dirs)/2])
		}
	}
	if n == 2 && len(*gone) > 0 {
		back := filepath.Join(src, (*gone)[0])
		os.MkdirAll(filepath.Dir(back), 0o755)
		if err := os.WriteFile(back, []byte("back again in round 2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 3 {
		p := filepath.Join(src, fmt.Sprintf("new-%d", n), fmt.Sprintf("f%d.txt", k))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(strings.Repeat(fmt.Sprint(n, k), 1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// withoutEmptyDirs drops the directories that hold no file or link: a
// restore of an earlier time makes only the folders its files need.
func withoutEmptyDirs(tr treecheck.Tree) treecheck.Tree {
	out := treecheck.Tree{}
	for p, e := range tr {
		if e.Kind != treecheck.Dir {
			out[p] = e
			for d := filepath.Dir(filepath.FromSlash(p)); d != "."; d = filepath.Dir(d) {
				slash := filepath.ToSlash(d)
				out[slash] = tr[slash]
			}
		}
	}
	return out
}

// TestRestoreRoundTrip backs a tree up with versions over three runs that
// change, delete and add files (and a whole folder), to a local and an SFTP
// target, then restores the current state and the state after each run
// from both: each restore must equal the source as it was then.
func TestRestoreRoundTrip(t *testing.T) {
	ferrybin.Path(t)
	srv := sshd.Start(t, sshd.Options{})
	tmp := t.TempDir()
	restoreRoundTrip(t, tmp, sftpTargetYAML("remote", srv, "")+
		fmt.Sprintf("      - name: disk\n        type: local\n        path: %q\n", filepath.Join(tmp, "local")),
		nil, true, "disk", "remote")
}

// TestRestoreRoundTripS3 is the round trip with an S3 target, a deleted
// folder (archived by renaming its objects, marker included) among the
// changes.
func TestRestoreRoundTripS3(t *testing.T) {
	ferrybin.Path(t)
	s3srv := s3server.Start(t, s3server.Options{})
	tmp := t.TempDir()
	restoreRoundTrip(t, tmp, fmt.Sprintf("      - name: bucket\n        type: s3\n        endpoint: %s\n        insecure: true\n        bucket: %s\n        path: backup\n        access_key_id: %s\n        secret_access_key: ${FERRY_TEST_S3_SECRET}\n",
		s3srv.Addr(), s3srv.Bucket(), s3srv.AccessKey()),
		[]string{"FERRY_TEST_S3_SECRET=" + s3srv.SecretKey()}, true, "bucket")
}

// restoreRoundTrip runs the round trip in tmp over the targets of one
// backup job (targetsYAML), with env added to ferry's environment.
func restoreRoundTrip(t *testing.T, tmp, targetsYAML string, env []string, deleteDir bool, targets ...string) {
	src := filepath.Join(tmp, "src")
	if err := treecheck.Generate(src, treecheck.Spec{Seed: testSeed(t), Dirs: 8, SmallFiles: 80, LargeFiles: 2, LargeMin: 1 << 20, LargeMax: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	cfg := writeRunConfig(t, tmp, fmt.Sprintf("jobs:\n  - name: nightly\n    source: %q\n    mode: backup\n    backup_dir: .versions\n    targets:\n", src)+targetsYAML)
	ferry := func(args ...string) ferrybin.Result {
		t.Helper()
		cmd := ferrybin.Command(t, args...)
		cmd.Env = append(os.Environ(), env...)
		return ferrybin.RunCmd(t, 2*time.Minute, cmd)
	}
	var (
		states []treecheck.Tree
		times  []time.Time
		gone   []string
	)
	for round := range 3 {
		if round > 0 {
			mutate(t, src, round, &gone, deleteDir)
		}
		if res := ferry("run", "--once", "-c", cfg); res.ExitCode != 0 {
			t.Fatalf("backup run %d:\n%v", round+1, res)
		}
		tree, err := treecheck.Scan(src, false)
		if err != nil {
			t.Fatal(err)
		}
		states, times = append(states, tree), append(times, time.Now())
		// Version folders are stamped in whole seconds: the next run must
		// start in a later second than this state's time.
		time.Sleep(1100 * time.Millisecond)
	}
	for _, target := range targets {
		for i := range 4 {
			name := fmt.Sprintf("%s/state-%d", target, i+1)
			args := []string{"restore", "-c", cfg, "nightly/" + target, filepath.Join(tmp, "restore", target, fmt.Sprint(i))}
			want := states[min(i, 2)]
			if i < 3 {
				args = append(args, "--at", times[i].Format(time.RFC3339Nano))
				want = withoutEmptyDirs(want)
			} else {
				name = target + "/current"
			}
			t.Run(name, func(t *testing.T) {
				res := ferry(args...)
				if res.ExitCode != 0 {
					t.Fatalf("restore:\n%v", res)
				}
				diff, err := treecheck.CompareTo(want, args[4], restoreChecks)
				if err != nil {
					t.Fatal(err)
				}
				if len(diff) > 0 {
					t.Errorf("restore differs from the source as it was:\n%s", strings.Join(first(diff, 20), "\n"))
				}
			})
		}
	}
	if len(gone) == 0 || len(states[0]) == len(states[1]) {
		t.Fatal("the rounds changed nothing: the test proves nothing")
	}
}

// TestRestoreSFTPCutOnce restores a 200 MiB file from SFTP through a proxy
// that resets the connection once, half way: the restore must complete,
// byte-identical, resuming rather than starting over, so that well under
// the whole file crosses the link a second time.
func TestRestoreSFTPCutOnce(t *testing.T) {
	const size = 200 << 20
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
	big := filepath.Join(r.srv.Root(), "big")
	if err := treecheck.Generate(big, treecheck.Spec{Seed: testSeed(t), LargeFiles: 1, LargeMin: size, LargeMax: size}); err != nil {
		t.Fatal(err)
	}
	want, err := treecheck.Scan(big, false)
	if err != nil {
		t.Fatal(err)
	}
	// Cut once after half the file came down.
	stop := make(chan struct{})
	cut := make(chan int64, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if n := r.proxy.BytesDown(); n >= size/2 {
					r.proxy.Reset()
					cut <- n
					return
				}
			}
		}
	}()
	dest := filepath.Join(t.TempDir(), "dest")
	url := "sftp://" + r.srv.User() + "@" + r.proxy.Addr() + big
	res := ferrybin.Run(t, 3*time.Minute, "restore", url, dest, "--identity", r.srv.ClientKeyPath(),
		"--known-hosts", r.knownHosts, "--ssh-config", "none", "--retries", "3")
	close(stop)
	if res.ExitCode != 0 {
		t.Fatalf("restore through a cut link:\n%v", res)
	}
	var at int64
	select {
	case at = <-cut:
	default:
		t.Fatalf("the cut never fired: %d bytes came down", r.proxy.BytesDown())
	}
	diff, err := treecheck.CompareTo(want, dest, restoreChecks)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Fatalf("restored tree differs:\n%s", strings.Join(first(diff, 20), "\n"))
	}
	down := r.proxy.BytesDown()
	again := down - size
	t.Logf("200 MiB restore cut after %.1f MiB downstream: %.1f MiB downstream in all (%.3fx the file), %.1f MiB more than the file, %d connections, %v; %s",
		float64(at)/(1<<20), float64(down)/(1<<20), float64(down)/size, float64(again)/(1<<20), r.proxy.Accepted(), res.Duration.Round(time.Millisecond), strings.TrimSpace(res.Stdout))
	// Starting over would send the first half again (1.5x); a resume sends
	// back only the verified window and what was in flight at the cut.
	if limit := int64(size + size/10); down > limit {
		t.Errorf("%d bytes came down for a %d-byte file cut once at half (%.3fx), want at most %d (1.1x): the download did not resume", down, size, float64(down)/size, limit)
	}
}

// TestRestoreHostileTarget restores from local and SFTP targets planted
// with control-character names and symlinks pointing out, into a DEST
// whose folder sub is a symlink pointing out: nothing is written outside
// DEST, each refusal is reported, the rest is restored, and ferry exits 1.
// (The restore in the refused folder sub, through DEST's link, is refused too.)
func TestRestoreHostileTarget(t *testing.T) {
	for _, kind := range []string{"local", "sftp"} {
		t.Run(kind, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
			tmp := t.TempDir()
			outside, snap := outsideTree(t, filepath.Join(tmp, "outside"))
			tgt := filepath.Join(tmp, "tgt")
			args := []string{"restore", tgt}
			if kind == "sftp" {
				tgt = r.dst
				args = []string{"restore", r.url(), "--identity", r.srv.ClientKeyPath(), "--known-hosts", r.knownHosts, "--ssh-config", "none"}
			}
			writeFiles(t, tgt, map[string]int{"ok.txt": 100, "sub/ok2.txt": 200, "deep/ok3.txt": 300})
			// An SFTP listing with an unsafe name is refused as a whole, so
			// there the names go in a folder of their own; a local listing
			// keeps the safe names beside the refusal.
			hostileDir := tgt
			if kind == "sftp" {
				hostileDir = filepath.Join(tgt, "bad")
			}
			planted := plantHostile(t, hostileDir)
			links := map[string]string{
				"good":        "ok.txt",
				"deep/good2":  "../ok.txt",
				"abs":         filepath.Join(outside, "secret.txt"),
				"up":          "../outside/secret.txt",
				"deep/up2":    "../../outside",
				"deep/sneaky": "x/../../../outside",
				"linkdir":     outside,
			}
			for name, to := range links {
				if err := os.Symlink(to, filepath.Join(tgt, name)); err != nil {
					t.Fatal(err)
				}
			}
			box := filepath.Join(tmp, "box")
			dest := filepath.Join(box, "dest")
			if err := os.MkdirAll(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(dest, "sub")); err != nil {
				t.Fatal(err)
			}
			args = append(args, dest)
			res := ferrybin.Run(t, time.Minute, args...)
			t.Logf("exit %d:\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
			if res.ExitCode != ferrybin.ExitFailed {
				t.Errorf("exit %d, want 1", res.ExitCode)
			}
			checkOutside(t, outside, snap)
			noSecretIn(t, dest)
			if es, _ := os.ReadDir(box); len(es) != 1 {
				t.Errorf("%s holds %d entries, want only dest", box, len(es))
			}
			for _, name := range []string{"abs", "up", "deep/up2", "deep/sneaky"} {
				if _, err := os.Lstat(filepath.Join(dest, name)); err == nil {
					t.Errorf("symlink %s pointing out was created", name)
				}
				if !strings.Contains(res.Stderr, name+":") {
					t.Errorf("refusal of %s not reported", name)
				}
			}
			if !strings.Contains(res.Stderr, "unsafe path") {
				t.Errorf("unsafe names not reported")
			}
			for _, p := range planted {
				if _, err := os.Lstat(filepath.Join(dest, p)); err == nil {
					t.Errorf("hostile name %q was written", p)
				}
				if _, err := os.Lstat(filepath.Join(dest, "bad", p)); err == nil {
					t.Errorf("hostile name %q was written", p)
				}
			}
			for _, l := range strings.Split(res.Stderr+res.Stdout, "\n") {
				if strings.HasPrefix(l, forged) {
					t.Errorf("a file name forged a log line: %q", l)
				}
			}
			for _, p := range []string{"ok.txt", "deep/ok3.txt", "good", "deep/good2"} {
				if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
					t.Errorf("%s not restored: %v", p, err)
				}
			}
			if fi, err := os.Lstat(filepath.Join(dest, "linkdir")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
				t.Errorf("linkdir, pointing out, was created as a link")
			}
		})
	}
}
