package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPReadOnlyFolder syncs over the real sshd into a target where one
// folder is a read-only mount on the server's side. OpenSSH answers the
// writes there with a bare SSH_FX_FAILURE ("Failure"); each file in it must
// still end as one clear per-file error, given up on without using the
// retries, with no partial left, while the rest of the target is synced.
// statvfs@openssh.com's read-only flag (SSH_FXE_STATVFS_ST_RDONLY) is what
// tells it from a passing fault.
func TestSFTPReadOnlyFolder(t *testing.T) {
	requireRoot(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
	writeFiles(t, r.src, map[string]int{
		"top.txt": 1000, "free/a.txt": 3000, "free/b.bin": 3 << 20,
		"locked/x.txt": 2000, "locked/y.bin": 2 << 20,
	})
	r.rescan(t)
	locked := filepath.Join(r.dst, "locked")
	if err := os.MkdirAll(locked, 0o755); err != nil {
		t.Fatal(err)
	}
	readOnlyBind(t, locked)
	res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--retries", fmt.Sprint(faultRetries))...)...)
	broken := []string{"locked/x.txt", "locked/y.bin"}
	if containsPath(failedPaths(res.Stderr), "locked") {
		broken = append(broken, "locked")
	}
	checkGaveUp(t, res, broken, nil, "read-only")
	checkSubset(t, r.srcTree, r.dst, sftpSyncChecks, func(p string) bool { return !strings.HasPrefix(p, "locked") })
}
