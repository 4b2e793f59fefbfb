package integration

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// uploadedRE matches ferry's -v line for one published upload and captures
// its path (quoted by the text log when it holds a space) and the check
// that verified it.
var uploadedRE = regexp.MustCompile(`(?m)^.*msg=uploaded .*path=("(?:[^"\\]|\\.)*"|\S+) .*verified=(\S+)`)

// TestSFTPVerifyMethodLogged syncs to a real sshd with each --verify setting
// and checks that the log says, for every file, which check was used: the
// size, a SHA-256 computed by the server (an exec of sha256sum), or a
// read-back when the account may not run commands (ForceCommand
// internal-sftp) even though a hash was asked for.
func TestSFTPVerifyMethodLogged(t *testing.T) {
	cases := []struct {
		name   string
		verify string
		extra  []string // sshd_config lines
		want   string
	}{
		{"default, size", "none", nil, "size"},
		{"hash by sha256sum", "hash", nil, "sha256"},
		{"hash without exec falls back to read-back", "hash", []string{"ForceCommand internal-sftp"}, "read-back"},
		{"read-back", "read-back", nil, "read-back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{ExtraConfig: tc.extra}, treecheck.Spec{Seed: 5, Dirs: 2, SmallFiles: 12, LargeFiles: 1, LargeMin: 3 << 20, LargeMax: 3 << 20})
			res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--verify", tc.verify)...)...)
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync with --verify %s: %s", tc.verify, res)
			}
			r.check(t)
			files := map[string]bool{}
			for p, e := range r.srcTree {
				if e.Kind == treecheck.File {
					files[p] = true
				}
			}
			logged := map[string]string{}
			for _, m := range uploadedRE.FindAllStringSubmatch(res.Stderr, -1) {
				p := m[1]
				if q, err := strconv.Unquote(p); err == nil {
					p = q
				}
				logged[p] = m[2]
			}
			for p := range files {
				how, ok := logged[p]
				switch {
				case !ok:
					t.Errorf("%s: no \"uploaded\" line saying how it was verified", p)
				case how != tc.want:
					t.Errorf("%s: verified=%s in the log, want %s", p, how, tc.want)
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", firstLines(res.Stderr, "uploaded", 10))
			}
			if tc.want == "read-back" && tc.verify == "hash" && !strings.Contains(res.Stderr, "server cannot hash") {
				t.Errorf("the fall-back from hash to read-back is not logged")
			}
		})
	}
}
