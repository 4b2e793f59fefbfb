package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// sftpSyncChecks is what an sftp:// target must keep of the source: content
// and permission bits, and mtimes to the second, since SFTP version 3
// carries whole seconds only.
var sftpSyncChecks = treecheck.Options{ModTime: true, ModTimeResolution: time.Second, Perm: true}

// sftpRig is a real sshd with a fault proxy in front of it, and a source
// tree to mirror through the proxy into a directory on the server's side.
// The server runs on this machine, so the test reads the target directly
// from disk.
type sftpRig struct {
	srv        *sshd.Server
	proxy      *faultproxy.Proxy
	knownHosts string // trusts the server under the proxy's address
	src        string
	srcTree    treecheck.Tree
	dst        string // target directory, as both the server and the test see it
}

// newSFTPRig starts sshd and the proxy and generates the source from spec
// (nothing when spec is the zero value).
func newSFTPRig(t *testing.T, opts sshd.Options, spec treecheck.Spec) *sftpRig {
	t.Helper()
	ferrybin.Path(t) // build before anything is timed
	r := &sftpRig{srv: sshd.Start(t, opts)}
	r.proxy = newProxy(t, r.srv.Addr())
	var err error
	if r.knownHosts, err = r.srv.KnownHostsFor(r.proxy.Addr()); err != nil {
		t.Fatal(err)
	}
	r.dst = filepath.Join(r.srv.Root(), "dst")
	r.src = filepath.Join(t.TempDir(), "src")
	if spec != (treecheck.Spec{}) {
		if err := treecheck.Generate(r.src, spec); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(r.src, 0o755); err != nil {
		t.Fatal(err)
	}
	r.rescan(t)
	return r
}

// rescan records the source tree again after the test changed it.
func (r *sftpRig) rescan(t *testing.T) {
	t.Helper()
	var err error
	if r.srcTree, err = treecheck.Scan(r.src, false); err != nil {
		t.Fatal(err)
	}
}

// url names the target directory through the proxy.
func (r *sftpRig) url() string {
	return "sftp://" + r.srv.User() + "@" + r.proxy.Addr() + r.dst
}

// syncArgs returns the arguments of `ferry sync` from the source to the
// target through the proxy, trusting the server by knownHosts, with extra
// flags appended. No ~/.ssh/config of the machine running the tests leaks in.
func (r *sftpRig) syncArgs(knownHosts string, extra ...string) []string {
	args := []string{"sync", r.src, r.url(), "--identity", r.srv.ClientKeyPath(),
		"--known-hosts", knownHosts, "--ssh-config", "none"}
	return append(args, extra...)
}

// check fails the test unless the target is identical to the source, with
// no partial files left over.
func (r *sftpRig) check(t *testing.T) {
	t.Helper()
	checkTargetWith(t, r.srcTree, r.dst, sftpSyncChecks)
}

// checkTorn fails the test if a file at a final name under the target is
// not a faithful copy of its source; missing files and partials are fine.
func (r *sftpRig) checkTorn(t *testing.T) {
	t.Helper()
	torn, err := treecheck.Torn(r.srcTree, r.dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(torn) > 0 {
		t.Fatalf("torn or foreign entries at final names:\n%s", strings.Join(first(torn, 30), "\n"))
	}
}

// checkTargetWith is checkTarget with the comparison options of the target.
func checkTargetWith(t *testing.T, want treecheck.Tree, dst string, opts treecheck.Options) {
	t.Helper()
	checkSameWith(t, want, dst, opts)
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) > 0 {
		t.Fatalf("%d partial files left after a complete sync:\n%s", len(parts), strings.Join(first(parts, 30), "\n"))
	}
}

// checkSameWith fails the test unless the target holds want, partial files
// aside.
func checkSameWith(t *testing.T, want treecheck.Tree, dst string, opts treecheck.Options) {
	t.Helper()
	diff, err := treecheck.CompareTo(want, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Fatalf("target differs from source (%d differences):\n%s", len(diff), strings.Join(first(diff, 30), "\n"))
	}
}

// logTime returns the time of the first log line of ferry's text log that
// contains msg, and whether there is one.
func logTime(log, msg string) (time.Time, bool) {
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, msg) {
			continue
		}
		m := logTimeRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return at, true
		}
	}
	return time.Time{}, false
}

var logTimeRE = regexp.MustCompile(`^time=(\S+)`)

// emptyDir fails the test unless dir holds nothing.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("server-side root %s holds %q, want nothing", dir, names)
	}
}

// maxHandshakeBytes bounds what a client sends upstream to reach the point
// where it checks the host key: its banner and KEXINIT and its key exchange
// message, well under a KiB each. A refused host key must stop it there:
// anything near a file's size means data went out.
const maxHandshakeBytes = 8 << 10

// TestSFTPHostKeys checks that an unknown or changed host key stops ferry
// before anything is uploaded (exit 3, with a message that names the
// fingerprint and the file to fix), and that trust on first use, asked for
// explicitly, records the key and syncs.
func TestSFTPHostKeys(t *testing.T) {
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewPublicKey(otherPub)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		// knownHosts writes the known_hosts file to use for the proxy's
		// address, given the path to write it to.
		knownHosts func(r *sftpRig, path string) string
		extra      []string
		wantExit   int
		// wantInErr are substrings the error output must hold; the
		// fingerprints and file name are filled in per run.
		wantInErr func(r *sftpRig, path string) []string
	}{
		{
			name:       "unknown host key, empty known_hosts",
			knownHosts: func(*sftpRig, string) string { return "" },
			wantExit:   ferrybin.ExitUnreachable,
			wantInErr: func(r *sftpRig, path string) []string {
				return []string{r.srv.HostKeyFingerprint(), path, "unknown"}
			},
		},
		{
			name: "changed host key",
			knownHosts: func(r *sftpRig, _ string) string {
				return knownhosts.Line([]string{knownhosts.Normalize(r.proxy.Addr())}, other) + "\n"
			},
			wantExit: ferrybin.ExitUnreachable,
			wantInErr: func(r *sftpRig, path string) []string {
				return []string{r.srv.HostKeyFingerprint(), ssh.FingerprintSHA256(other), path, "CHANGED"}
			},
		},
		{
			name: "changed host key with --accept-new-host-key",
			knownHosts: func(r *sftpRig, _ string) string {
				return knownhosts.Line([]string{knownhosts.Normalize(r.proxy.Addr())}, other) + "\n"
			},
			extra:    []string{"--accept-new-host-key"},
			wantExit: ferrybin.ExitUnreachable,
			wantInErr: func(r *sftpRig, path string) []string {
				return []string{r.srv.HostKeyFingerprint(), path, "CHANGED"}
			},
		},
		{
			name:       "unknown host key trusted on first use",
			knownHosts: func(*sftpRig, string) string { return "" },
			extra:      []string{"--accept-new-host-key"},
			wantExit:   ferrybin.ExitOK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: 1, Dirs: 2, SmallFiles: 10})
			kh := filepath.Join(t.TempDir(), "known_hosts")
			before := tc.knownHosts(r, kh)
			if err := os.WriteFile(kh, []byte(before), 0o600); err != nil {
				t.Fatal(err)
			}
			res := ferrybin.Run(t, time.Minute, r.syncArgs(kh, tc.extra...)...)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d: %s", res.ExitCode, tc.wantExit, res)
			}
			after, err := os.ReadFile(kh)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantExit == ferrybin.ExitOK {
				r.check(t)
				// The key is recorded under the address dialled, and a
				// second run trusts it without the flag.
				hk, err := knownhosts.New(kh)
				if err != nil {
					t.Fatalf("known_hosts after trust on first use: %v\n%s", err, after)
				}
				addr, err := net.ResolveTCPAddr("tcp", r.proxy.Addr())
				if err != nil {
					t.Fatal(err)
				}
				if err := hk(r.proxy.Addr(), addr, r.srv.HostKeys()[0]); err != nil {
					t.Fatalf("known_hosts after trust on first use does not trust the server's key: %v\n%s", err, after)
				}
				if res := ferrybin.Run(t, time.Minute, r.syncArgs(kh)...); res.ExitCode != ferrybin.ExitOK {
					t.Fatalf("second run with the recorded key: %s", res)
				}
				return
			}
			for _, s := range tc.wantInErr(r, kh) {
				if !strings.Contains(res.Stderr, s) {
					t.Errorf("error output lacks %q:\n%s", s, res.Stderr)
				}
			}
			if string(after) != before {
				t.Errorf("a refused host key changed %s:\nbefore %q\nafter  %q", kh, before, after)
			}
			emptyDir(t, r.srv.Root())
			if up := r.proxy.BytesUp(); up > maxHandshakeBytes {
				t.Errorf("client sent %d bytes through the proxy with a refused host key, want at most %d (the handshake)", up, maxHandshakeBytes)
			}
			t.Logf("refused after %v, %d bytes upstream: %s", res.Duration.Round(time.Millisecond), r.proxy.BytesUp(), strings.TrimSpace(res.Stderr))
		})
	}
}

// TestSFTPSecondRunCopiesNothing syncs a tree twice. SFTP version 3 keeps
// mtimes to the second, so every target file reads back older than its
// source by the source's fraction of a second; the second run must take
// that for equal and copy nothing, yet still copy a file whose mtime moved
// by more than that.
func TestSFTPSecondRunCopiesNothing(t *testing.T) {
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: testSeed(t), Dirs: 4, SmallFiles: 40})
	var file string // one with a fraction of a second in its mtime
	for _, e := range r.srcTree {
		if e.Kind == treecheck.File && e.ModTime.Nanosecond() != 0 {
			file = e.Path
		}
	}
	if file == "" {
		t.Fatal("no source file has a fraction of a second in its mtime: the test proves nothing")
	}
	if res := ferrybin.Run(t, time.Minute, r.syncArgs(r.knownHosts)...); res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("first sync: %s", res)
	}
	r.check(t)
	before := inodes(t, r.dst)

	res := ferrybin.Run(t, time.Minute, r.syncArgs(r.knownHosts)...)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("second sync: %s", res)
	}
	if !strings.Contains(res.Stdout+res.Stderr, "copied 0 files") {
		t.Fatalf("second sync of an unchanged tree copied files again:\n%s", res)
	}
	if after := inodes(t, r.dst); !maps.Equal(before, after) {
		t.Fatalf("second sync of an unchanged tree replaced files on the target")
	}

	p := filepath.Join(r.src, filepath.FromSlash(file))
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	r.rescan(t)
	res = ferrybin.Run(t, time.Minute, r.syncArgs(r.knownHosts)...)
	if res.ExitCode != ferrybin.ExitOK || !strings.Contains(res.Stdout+res.Stderr, "copied 1 file ") {
		t.Fatalf("sync after moving one mtime by 2s, want that file copied:\n%s", res)
	}
	r.check(t)
}
