package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// These tests break the target's disk or permissions under a running ferry:
// each broken file must be one clear error, given up on at once (retrying
// cannot help), with no partial file left behind, while every other file,
// and every other target, goes on. The faults are real: a small tmpfs, a
// read-only bind mount, an immutable directory. Making them needs root,
// which ignores file modes, so chmod would prove nothing.

// requireRoot skips a test that needs mount or chattr.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount and chattr make the faults, and root ignores the file modes that could stand in for them")
	}
}

// sh runs a command and fails the test with its output if it fails.
func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mountTmpfs mounts a tmpfs of the given size (mount's syntax, e.g. "2m")
// on dir until the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	requireRoot(t)
	sh(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// readOnlyBind makes dir read-only for everyone, root included, by binding
// it over itself and remounting the bind read-only, until the test ends.
func readOnlyBind(t *testing.T, dir string) {
	t.Helper()
	requireRoot(t)
	sh(t, "mount", "--bind", dir, dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	sh(t, "mount", "-o", "remount,bind,ro", dir)
}

// immutable sets the immutable attribute on dir until the test ends:
// nothing can be created, renamed or removed in it, not even by root.
func immutable(t *testing.T, dir string) {
	t.Helper()
	requireRoot(t)
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		t.Skipf("chattr +i %s: %v (%s): the filesystem has no immutable attribute", dir, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", dir).Run() })
}

// writeFiles writes name -> size files of fixed pseudo-random content under
// root.
func writeFiles(t *testing.T, root string, files map[string]int) {
	t.Helper()
	for name, size := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*31 + len(name))
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// attempts counts the upload attempts the -v log shows for path: the
// first, plus one per "retrying" line that names it.
func attempts(log, path string) int {
	re := regexp.MustCompile(`msg="retrying[^"]*".* path=` + regexp.QuoteMeta(path) + `( |$)`)
	return 1 + len(re.FindAllString(log, -1))
}

// failedPaths returns the paths the log reports as given up on.
func failedPaths(log string) []string {
	re := regexp.MustCompile(`(?m)level=WARN msg=failed .*?path=(\S+)`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkSubset fails the test unless every entry of want that keep accepts is
// at dst and faithful (content, mode, mtime), and dst holds no partial file
// and no entry outside want.
func checkSubset(t *testing.T, want treecheck.Tree, dst string, opts treecheck.Options, keep func(path string) bool) {
	t.Helper()
	sub := treecheck.Tree{}
	for p, e := range want {
		if keep(p) {
			sub[p] = e
		}
	}
	got, err := treecheck.Scan(dst, false)
	if err != nil {
		t.Fatal(err)
	}
	// Directories the fault made are not the test's business; what lies at
	// other paths is.
	for p, e := range got {
		if _, ok := sub[p]; !ok && e.Kind == treecheck.Dir {
			delete(got, p)
		}
	}
	if diff := treecheck.Diff(sub, got, opts); len(diff) > 0 {
		t.Fatalf("target %s differs from what should have gone through (%d differences):\n%s", dst, len(diff), strings.Join(first(diff, 30), "\n"))
	}
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) > 0 {
		t.Fatalf("partial files left in %s after a failed upload: %q", dst, parts)
	}
}

// faultRetries is the --retries given to every run here: a permanent fault
// must use none of them.
const faultRetries = 3

// checkGaveUp checks that ferry exited 1, that each path in mustFail
// failed, that every path that failed is in mustFail or accepted by
// mayFail, and that each failure was given up on at the first attempt with
// an error that says want. It returns the paths that failed.
func checkGaveUp(t *testing.T, res ferrybin.Result, mustFail []string, mayFail func(string) bool, want string) map[string]bool {
	t.Helper()
	if res.ExitCode != ferrybin.ExitFailed {
		t.Fatalf("exit %d, want %d (some files failed): %s", res.ExitCode, ferrybin.ExitFailed, res)
	}
	log := res.Stderr
	failed := map[string]bool{}
	for _, p := range failedPaths(log) {
		failed[p] = true
	}
	for _, p := range mustFail {
		if !failed[p] {
			t.Errorf("%s: no \"failed\" log line for it", p)
		}
	}
	for p := range failed {
		if !containsPath(mustFail, p) && (mayFail == nil || !mayFail(p)) {
			t.Errorf("%s failed, though the fault does not touch it", p)
		}
		if n := attempts(log, p); n != 1 {
			t.Errorf("%s: %d attempts for a fault retrying cannot mend, want 1", p, n)
		}
		re := regexp.MustCompile(`(?m)^.*msg=failed .*path=` + regexp.QuoteMeta(p) + ` .*$`)
		if l := re.FindString(log); !strings.Contains(strings.ToLower(l), want) {
			t.Errorf("%s: the error does not say %q: %s", p, want, l)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log)
	}
	return failed
}

func containsPath(list []string, p string) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// TestLocalTargetDiskFull mirrors one source to two local targets, one on
// a 2 MiB tmpfs. The file that does not fit fails there at once with a
// no-space error and leaves no partial; every file that fits is written;
// the other target gets everything.
func TestLocalTargetDiskFull(t *testing.T) {
	bin := ferrybin.Path(t)
	tmp := t.TempDir()
	src, small, other := filepath.Join(tmp, "src"), filepath.Join(tmp, "small"), filepath.Join(tmp, "other")
	for _, d := range []string{small, filepath.Join(tmp, "state")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mountTmpfs(t, small, "2m")
	files := map[string]int{"big.bin": 6 << 20}
	for i := range 20 {
		files[fmt.Sprintf("docs/f%02d.txt", i)] = 8 << 10
	}
	writeFiles(t, src, files)
	want, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(tmp, "ferry.yaml")
	text := fmt.Sprintf("jobs:\n  - name: j\n    source: %q\n    targets:\n"+
		"      - {name: full, type: local, path: %q, retries: %d}\n"+
		"      - {name: roomy, type: local, path: %q, retries: %d}\n",
		src, filepath.Join(small, "dst"), faultRetries, other, faultRetries)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-v", "run", "--once", "-c", cfg)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+filepath.Join(tmp, "state"))
	res := ferrybin.RunCmd(t, 2*time.Minute, cmd)
	t.Logf("run: exit %d after %v\n%s", res.ExitCode, res.Duration.Round(time.Millisecond), res.Stdout)
	// The large file fills the disk while small ones are written beside
	// it: those that hit the full disk then fail the same way, and may
	// not be retried even though they would fit once the large file's
	// partial is gone (a full disk is a permanent error).
	failed := checkGaveUp(t, res, []string{"big.bin"}, func(string) bool { return true }, "no space")
	t.Logf("%d of %d files failed with no space on the small target", len(failed), len(files))
	if !regexp.MustCompile(`(?m)^j +full .*failed`).MatchString(res.Stdout) {
		t.Errorf("summary does not show the full target as failed:\n%s", res.Stdout)
	}
	if !regexp.MustCompile(`(?m)^j +roomy .* ok`).MatchString(res.Stdout) {
		t.Errorf("summary does not show the other target as ok:\n%s", res.Stdout)
	}
	checkTargetWith(t, want, other, localSyncChecks)
	checkSubset(t, want, filepath.Join(small, "dst"), localSyncChecks, func(p string) bool { return !failed[p] })
}

// TestSFTPTargetDiskFull fills a 2 MiB tmpfs mounted in the target folder on
// the server's side of a real OpenSSH sshd. OpenSSH answers the write that
// hits the full disk with a generic SSH_FX_FAILURE, so only a statvfs
// check can tell it from a passing fault: the file that does not fit must
// fail once with a no-space error (permanent, none of the retries used),
// leave no partial, and every file outside the small disk must be synced.
func TestSFTPTargetDiskFull(t *testing.T) {
	files := map[string]int{"small/big.bin": 6 << 20, "top.txt": 1000}
	for i := range 10 {
		files[fmt.Sprintf("free/f%02d.txt", i)] = 8 << 10
	}
	r, res := syncSFTPIntoFault(t, files, "small", func(t *testing.T, dir string) { mountTmpfs(t, dir, "2m") })
	// The small folder's own mode and mtime may fail with it; nothing else.
	failed := checkGaveUp(t, res, []string{"small/big.bin"}, func(p string) bool { return p == "small" }, "no space")
	t.Logf("failed: %v; exit %d after %v", failed, res.ExitCode, res.Duration.Round(time.Millisecond))
	checkSubset(t, r.srcTree, r.dst, sftpSyncChecks, func(p string) bool { return !strings.HasPrefix(p, "small") })
	// The server's statvfs answer, not a guess from the message, made the
	// call: OpenSSH's status message for a failed write is "Failure".
	if !strings.Contains(res.Stderr, "bytes free") {
		t.Errorf("the no-space error does not give the free space statvfs reported:\n%s", firstLines(res.Stderr, "big.bin", 5))
	}
}

// TestSFTPTargetOutOfInodes fills the inodes, not the bytes, of a tmpfs
// mounted in the target folder of the real sshd (nr_inodes=5, 20 MiB). The
// kernel answers ENOSPC, "No space left on device", and OpenSSH sends it as
// a bare SSH_FX_FAILURE: the files that cannot be created must fail once
// with a no-space error, not be retried, and the files elsewhere must be
// synced. statvfs@openssh.com gives the free inodes (f_favail) beside the
// free bytes.
func TestSFTPTargetOutOfInodes(t *testing.T) {
	files := map[string]int{"top.txt": 1000, "free/a.txt": 2000}
	for i := range 10 {
		files[fmt.Sprintf("small/f%02d.txt", i)] = 1000
	}
	r, res := syncSFTPIntoFault(t, files, "small", func(t *testing.T, dir string) { mountTmpfs(t, dir, "20m,nr_inodes=5") })
	// Which files got the few inodes depends on the order of the uploads.
	failed := checkGaveUp(t, res, nil, func(p string) bool { return strings.HasPrefix(p, "small") }, "no space")
	if len(failed) == 0 {
		t.Fatalf("no file failed: the inodes did not run out\n%s", res)
	}
	checkSubset(t, r.srcTree, r.dst, sftpSyncChecks, func(p string) bool { return !failed[p] && p != "small" })
}

// TestLocalTargetReadOnlyDir syncs into a target where one folder is a
// read-only mount: its files fail at once with a permission error, the rest
// of the target is written.
func TestLocalTargetReadOnlyDir(t *testing.T) {
	ferrybin.Path(t)
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	writeFiles(t, src, lockedFiles())
	want, err := treecheck.Scan(src, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dst, "locked"), 0o755); err != nil {
		t.Fatal(err)
	}
	readOnlyBind(t, filepath.Join(dst, "locked"))
	res := ferrybin.Run(t, 2*time.Minute, "-v", "sync", "--retries", fmt.Sprint(faultRetries), src, dst)
	checkLockedGaveUp(t, res, want, dst, localSyncChecks, "read-only")
}

// TestSFTPPermissionDeniedFolder syncs over SFTP into a target where the
// server refuses writes in one folder (immutable: root on the server side
// ignores modes). Its files fail at once with a permission error; the rest
// is synced.
func TestSFTPPermissionDeniedFolder(t *testing.T) {
	r, res := syncSFTPIntoFault(t, lockedFiles(), "locked", immutable)
	checkLockedGaveUp(t, res, r.srcTree, r.dst, sftpSyncChecks, "permission")
}

// TestSFTPReadOnlyFolder syncs over the real sshd into a target where one
// folder is a read-only mount on the server's side. OpenSSH answers the
// writes there with a bare SSH_FX_FAILURE ("Failure"); each file in it must
// still end as one clear per-file error, given up on without using the
// retries, with no partial left, while the rest of the target is synced.
// statvfs@openssh.com's read-only flag (SSH_FXE_STATVFS_ST_RDONLY) is what
// tells it from a passing fault.
func TestSFTPReadOnlyFolder(t *testing.T) {
	r, res := syncSFTPIntoFault(t, lockedFiles(), "locked", readOnlyBind)
	checkLockedGaveUp(t, res, r.srcTree, r.dst, sftpSyncChecks, "read-only")
}

// syncSFTPIntoFault writes files to a new rig's source, makes the folder
// dir in its target and breaks it with fault on the server's side, then
// runs `ferry -v sync` over the real sshd with faultRetries retries. The
// faults are mounts and attributes, so it skips the test unless root.
func syncSFTPIntoFault(t *testing.T, files map[string]int, dir string, fault func(t *testing.T, dir string)) (*sftpRig, ferrybin.Result) {
	t.Helper()
	requireRoot(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
	writeFiles(t, r.src, files)
	r.rescan(t)
	broken := filepath.Join(r.dst, filepath.FromSlash(dir))
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	fault(t, broken)
	res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--retries", fmt.Sprint(faultRetries))...)...)
	return r, res
}

// lockedFiles is the source of the tests that break the target folder
// "locked": two files in it, three elsewhere.
func lockedFiles() map[string]int {
	return map[string]int{
		"top.txt": 1000, "free/a.txt": 3000, "free/b.bin": 3 << 20,
		"locked/x.txt": 2000, "locked/y.bin": 2 << 20,
	}
}

// checkLockedGaveUp checks, for a run over lockedFiles, that both files in
// "locked" were given up on at once with an error that says says, and that
// every other entry of want reached dst whole.
func checkLockedGaveUp(t *testing.T, res ferrybin.Result, want treecheck.Tree, dst string, opts treecheck.Options, says string) {
	t.Helper()
	broken := []string{"locked/x.txt", "locked/y.bin"}
	if containsPath(failedPaths(res.Stderr), "locked") {
		// Setting the folder's own mode or mtime fails the same way.
		broken = append(broken, "locked")
	}
	checkGaveUp(t, res, broken, nil, says)
	checkSubset(t, want, dst, opts, func(p string) bool { return !strings.HasPrefix(p, "locked") })
}
