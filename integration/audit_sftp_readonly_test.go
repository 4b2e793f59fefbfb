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
//
// Known bug, backends/sftp: the bare failure is retried like a passing
// fault (4 attempts) and reported as "Failure", where statvfs@openssh.com,
// already asked for a full disk, carries the read-only flag
// (SSH_FXE_STATVFS_ST_RDONLY) that would make it a clear, permanent error.
// Skipped unless FERRY_TEST_KNOWN_BUGS=1.
func TestSFTPReadOnlyFolder(t *testing.T) {
	if os.Getenv("FERRY_TEST_KNOWN_BUGS") != "1" {
		t.Skip("known bug, backends/sftp: a read-only folder over OpenSSH is retried and reported as a bare \"Failure\"; set FERRY_TEST_KNOWN_BUGS=1 to run")
	}
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
