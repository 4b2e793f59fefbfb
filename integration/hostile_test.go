package integration

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// These tests feed ferry hostile input: names on a target that no honest
// sync would create, symlinks in the source that point out of it, and
// symlinks planted in a target to redirect writes out of it. ferry must
// refuse the names, copy links as links, and never write, read or delete
// outside the target root.

// forged is a log line a hostile file name tries to inject.
const forged = "level=ERROR msg=forged"

// hostileNames are names a compromised target can hold on POSIX: control
// characters, one of them a newline that tries to forge a log line.
var hostileNames = []string{"evil\n" + forged, "x\x01y", "esc\x1b[2Jz", "tab\there"}

// plantHostile creates every hostile name as a file in dir, and a folder
// with a control character holding a file.
func plantHostile(t *testing.T, dir string) []string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "ctl\x02dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	planted := append([]string{"ctl\x02dir/inner"}, hostileNames...)
	for _, p := range planted {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("planted "+p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return planted
}

// TestSFTPHostileTargetNames plants files with control characters in their
// names on the SFTP target, in a folder and at the root, beside a file that
// mirror mode would delete. The names are refused, nothing is deleted
// (the listing is incomplete), the planted files are left alone, no forged
// log line appears, and ferry exits 1; files elsewhere are synced.
func TestSFTPHostileTargetNames(t *testing.T) {
	cases := []struct {
		name string
		dir  string // where the hostile names are planted, under the target
	}{
		{"in a folder", "sub"},
		{"at the root", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
			writeFiles(t, r.src, map[string]int{"a.txt": 100, "sub/b.txt": 200, "other/c.txt": 300})
			r.rescan(t)
			writeFiles(t, r.dst, map[string]int{"extra.txt": 50, "sub/extra.txt": 60})
			planted := plantHostile(t, filepath.Join(r.dst, tc.dir))
			res := ferrybin.Run(t, time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts)...)...)
			t.Logf("exit %d after %v:\n%s%s", res.ExitCode, res.Duration.Round(time.Millisecond), res.Stdout, firstLines(res.Stderr, "unsafe", 3))
			if res.ExitCode != ferrybin.ExitFailed {
				t.Errorf("exit %d, want 1 (the target holds names ferry refuses): %s", res.ExitCode, res)
			}
			for _, p := range planted {
				got, err := os.ReadFile(filepath.Join(r.dst, tc.dir, p))
				if err != nil || string(got) != "planted "+p {
					t.Errorf("planted %q was touched: %q, %v", p, got, err)
				}
			}
			for _, p := range []string{"extra.txt", "sub/extra.txt"} {
				if _, err := os.Stat(filepath.Join(r.dst, p)); err != nil {
					t.Errorf("%s deleted though the listing was incomplete: %v", p, err)
				}
			}
			for _, l := range strings.Split(res.Stderr+res.Stdout, "\n") {
				if strings.HasPrefix(l, forged) {
					t.Errorf("a file name forged a log line: %q", l)
				}
			}
			if !strings.Contains(res.Stderr, "unsafe path") {
				t.Errorf("the refusal is not in the log:\n%s", res.Stderr)
			}
			if tc.dir != "" {
				// Only the folder with hostile names is left out.
				for _, p := range []string{"a.txt", "other/c.txt"} {
					if _, err := os.Stat(filepath.Join(r.dst, p)); err != nil {
						t.Errorf("%s not synced: %v", p, err)
					}
				}
			}
		})
	}
}

// outsideTree makes a folder outside every source and target, with a secret
// in it, and returns it with a snapshot to compare against later.
func outsideTree(t *testing.T, dir string) (string, treecheck.Tree) {
	t.Helper()
	writeFiles(t, dir, map[string]int{"secret.txt": 0, "keep/precious.txt": 0})
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(secretContent), 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := treecheck.Scan(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	return dir, snap
}

const secretContent = "TOP-SECRET: must never leave the folder it is in"

// checkOutside fails the test if anything under dir changed since snap.
func checkOutside(t *testing.T, dir string, snap treecheck.Tree) {
	t.Helper()
	now, err := treecheck.Scan(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if d := treecheck.Diff(snap, now, treecheck.Options{ModTime: true, Perm: true}); len(d) > 0 {
		t.Fatalf("ferry changed %s, outside the target:\n%s", dir, strings.Join(first(d, 20), "\n"))
	}
}

// noSecretIn fails the test if a regular file under dir holds the secret.
func noSecretIn(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if bytes.Contains(b, []byte("TOP-SECRET")) {
			t.Errorf("%s holds the content of a file outside the source", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSourceSymlinksOutside syncs a source whose symlinks point out of it,
// by absolute and relative paths, to a file and to a folder. The target
// gets the links as links, never what they point to.
func TestSourceSymlinksOutside(t *testing.T) {
	for _, kind := range []string{"local", "sftp"} {
		t.Run(kind, func(t *testing.T) {
			var src, dst string
			var args []string
			if kind == "sftp" {
				r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
				src, dst, args = r.src, r.dst, r.syncArgs(r.knownHosts)
			} else {
				ferrybin.Path(t)
				tmp := t.TempDir()
				src, dst = filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
				args = []string{"sync", src, dst}
			}
			out, snap := outsideTree(t, filepath.Join(t.TempDir(), "outside"))
			writeFiles(t, src, map[string]int{"plain.txt": 10})
			rel, err := filepath.Rel(filepath.Join(src, "sub"), filepath.Join(out, "secret.txt"))
			if err != nil {
				t.Fatal(err)
			}
			links := map[string]string{
				"abs-dir":      out,
				"abs-file":     filepath.Join(out, "secret.txt"),
				"sub/rel-file": rel,
				"dotdot":       "../../../../../../../..",
			}
			if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			for p, to := range links {
				if err := os.Symlink(to, filepath.Join(src, p)); err != nil {
					t.Fatal(err)
				}
			}
			want, err := treecheck.Scan(src, false)
			if err != nil {
				t.Fatal(err)
			}
			res := ferrybin.Run(t, time.Minute, args...)
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync: %s", res)
			}
			for p, to := range links {
				got, err := os.Readlink(filepath.Join(dst, p))
				if err != nil || got != to {
					t.Errorf("%s on the target: link to %q (%v), want a link to %q", p, got, err, to)
				}
			}
			checkTargetWith(t, want, dst, treecheck.Options{})
			noSecretIn(t, dst)
			checkOutside(t, out, snap)
		})
	}
}

// TestPlantedSymlinkTarget plants symlinks in a target that point out of
// it: a folder the source also has, a file the source also has, and a
// folder the source lacks (mirror mode deletes it). Whatever ferry does
// with them, nothing outside the target may change; a clean run must end
// with the target identical to the source, the links replaced.
func TestPlantedSymlinkTarget(t *testing.T) {
	for _, kind := range []string{"local", "sftp"} {
		t.Run(kind, func(t *testing.T) {
			var src, dst string
			var args []string
			var out string
			if kind == "sftp" {
				r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
				src, dst, args = r.src, r.dst, append([]string{"-v"}, r.syncArgs(r.knownHosts)...)
				// Beside the target root, on the server.
				out = filepath.Join(r.srv.Root(), "outside")
			} else {
				ferrybin.Path(t)
				tmp := t.TempDir()
				src, dst = filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
				args = []string{"-v", "sync", src, dst}
				out = filepath.Join(tmp, "outside")
			}
			out, snap := outsideTree(t, out)
			writeFiles(t, src, map[string]int{"d/x.txt": 100, "d/keep/y.txt": 200, "secret.txt": 300, "top.txt": 10})
			want, err := treecheck.Scan(src, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			for p, to := range map[string]string{
				"d":          out,                                // a folder the source has
				"secret.txt": filepath.Join(out, "secret.txt"),   // a file the source has
				"gone":       filepath.Join(out, "keep"),         // mirror mode deletes it
				"rel":        "../outside",                       // relative, the source lacks it
				"top.txt":    filepath.Join(out, "no-such-file"), // a dangling link
			} {
				if err := os.Symlink(to, filepath.Join(dst, p)); err != nil {
					t.Fatal(err)
				}
			}
			res := ferrybin.Run(t, time.Minute, args...)
			t.Logf("first run: exit %d\n%s", res.ExitCode, res.Stdout)
			checkOutside(t, out, snap)
			if _, err := os.Stat(filepath.Join(out, "no-such-file")); err == nil {
				t.Fatalf("a write followed the dangling link out of the target")
			}
			if res.ExitCode != ferrybin.ExitOK {
				// A refusal is fine once; a second run must get there.
				res = ferrybin.Run(t, time.Minute, args...)
				checkOutside(t, out, snap)
				if res.ExitCode != ferrybin.ExitOK {
					t.Fatalf("second run: %s", res)
				}
			}
			checkTargetWith(t, want, dst, treecheck.Options{})
		})
	}
}

// TestPartialFilesPrivate watches a slow upload and checks that its partial
// file is owner-only (0600) for as long as it is incomplete, on a local and
// an SFTP target, though the source file is world-readable: nobody reads a
// file that is not yet published. Once whole, a partial takes the source's
// mode just before the rename that publishes it.
func TestPartialFilesPrivate(t *testing.T) {
	for _, kind := range []string{"local", "sftp"} {
		t.Run(kind, func(t *testing.T) {
			var src, dst string
			var args []string
			if kind == "sftp" {
				r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
				src, dst, args = r.src, r.dst, r.syncArgs(r.knownHosts, "--bwlimit", "4M")
			} else {
				ferrybin.Path(t)
				tmp := t.TempDir()
				src, dst = filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
				args = []string{"sync", "--bwlimit", "4M", src, dst}
			}
			writeFiles(t, src, map[string]int{"big.bin": 6 << 20, "sub/mid.bin": 2 << 20})
			sizes := map[string]int64{"big.bin": 6 << 20, "mid.bin": 2 << 20}
			if err := os.Chmod(filepath.Join(src, "big.bin"), 0o666); err != nil {
				t.Fatal(err)
			}
			p := ferrybin.Start(t, args...)
			seen := map[string]bool{}
			var bad []string
			for done := false; !done; {
				select {
				case <-p.Done():
					done = true
				case <-time.After(time.Millisecond):
				}
				_ = filepath.WalkDir(dst, func(path string, d fs.DirEntry, err error) error {
					if err != nil || !strings.HasPrefix(d.Name(), ".ferry-partial-") {
						return nil
					}
					fi, err := os.Lstat(path)
					if err != nil {
						return nil
					}
					seen[d.Name()] = true
					// A partial that holds the whole file is sealed: it takes
					// the source's mode just before the rename publishes it.
					if fi.Mode().Perm() != 0o600 && fi.Size() < sizes[d.Name()[len(d.Name())-7:]] {
						bad = append(bad, fmt.Sprintf("%s: %v at %d bytes", d.Name(), fi.Mode(), fi.Size()))
					}
					return nil
				})
			}
			if res := p.Wait(); res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync: %s", res)
			}
			if len(seen) == 0 {
				t.Fatalf("no partial file seen during a rate-limited upload: the test proved nothing")
			}
			if len(bad) > 0 {
				t.Errorf("partial files readable by others while in progress (%d of %d polls): %q", len(bad), len(seen), first(bad, 5))
			}
			if fi, err := os.Stat(filepath.Join(dst, "big.bin")); err != nil || fi.Mode().Perm() != 0o666 {
				t.Errorf("published file: %v, %v; want the source's mode 0666", fi.Mode(), err)
			}
			t.Logf("%d partial files watched", len(seen))
		})
	}
}

// TestSecretsNotLogged runs ferry with an encrypted key whose passphrase
// comes from the environment, at debug level, with the right passphrase and
// a wrong one: the passphrase appears in no output.
func TestSecretsNotLogged(t *testing.T) {
	const pass = "s3cr3t-Passphrase-4-ferry"
	for _, tc := range []struct {
		name, given string
		wantExit    int
	}{
		{"right passphrase", pass, ferrybin.ExitOK},
		{"wrong passphrase", pass + "-wrong", ferrybin.ExitUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{EncryptedClientKey: true, ClientKeyPassphrase: pass}, treecheck.Spec{Seed: 3, Dirs: 2, SmallFiles: 20})
			cmd := ferrybin.Command(t, append([]string{"-v"}, r.syncArgs(r.knownHosts)...)...)
			cmd.Env = append(os.Environ(), "FERRY_SSH_PASSPHRASE="+tc.given)
			res := ferrybin.RunCmd(t, time.Minute, cmd)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d: %s", res.ExitCode, tc.wantExit, res)
			}
			if tc.wantExit == ferrybin.ExitOK {
				r.check(t)
			}
			for _, s := range []string{pass, tc.given, "s3cr3t"} {
				if strings.Contains(res.Stdout+res.Stderr, s) {
					t.Errorf("the passphrase (%q) is in ferry's output:\n%s", s, res)
				}
			}
			if tc.wantExit == ferrybin.ExitOK && !strings.Contains(res.Stderr, "level=DEBUG") {
				t.Errorf("no debug lines: -v did not take, the test proved little")
			}
		})
	}
}

// firstLines returns up to n lines of s that hold sub.
func firstLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
