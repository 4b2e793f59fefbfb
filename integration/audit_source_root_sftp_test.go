package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSourceRootGoneSFTP takes the source away between two `ferry sync`
// runs to the real sshd, with and without a state directory: deleted, or
// left as an empty folder (what an unmounted disk leaves). TestSourceRootGone
// runs `ferry run --once` to local targets; this is the other command and
// the other target type. The second run must fail and delete nothing.
func TestSourceRootGoneSFTP(t *testing.T) {
	cases := []struct {
		name  string
		state bool
		gone  func(t *testing.T, src string)
	}{
		{"deleted", false, removeSource},
		{"emptied", false, emptySource},
		{"emptied, with state", true, emptySource},
		{"deleted, with state", true, removeSource},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: 12, Dirs: 4, SmallFiles: 40})
			var extra []string
			if tc.state {
				extra = []string{"--state"}
			}
			if res := ferrybin.Run(t, time.Minute, r.syncArgs(r.knownHosts, extra...)...); res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("first sync: %s", res)
			}
			r.check(t)
			before, _ := countEntries(t, r.dst)
			tc.gone(t, r.src)
			res := ferrybin.Run(t, time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, extra...)...)...)
			if res.ExitCode == ferrybin.ExitOK {
				t.Errorf("sync of a source that went away exited 0: %s", res)
			}
			if after, _ := countEntries(t, r.dst); after != before {
				t.Errorf("the target held %d entries, %d after a sync from a gone source", before, after)
			}
			t.Logf("exit %d: %s", res.ExitCode, strings.TrimSpace(firstLines(res.Stderr, "ferry:", 2)))
		})
	}
}

// emptySource leaves src an empty folder.
func emptySource(t *testing.T, src string) {
	t.Helper()
	removeSource(t, src)
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
}
