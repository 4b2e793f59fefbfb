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

// TestSFTPTargetOutOfInodes fills the inodes, not the bytes, of a tmpfs
// mounted in the target folder of the real sshd (nr_inodes=5, 20 MiB). The
// kernel answers ENOSPC, "No space left on device", and OpenSSH sends it as
// a bare SSH_FX_FAILURE: the files that cannot be created must fail once
// with a no-space error, not be retried, and the files elsewhere must be
// synced. statvfs@openssh.com gives the free inodes (f_favail) beside the
// free bytes.
func TestSFTPTargetOutOfInodes(t *testing.T) {
	requireRoot(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
	files := map[string]int{"top.txt": 1000, "free/a.txt": 2000}
	for i := range 10 {
		files[fmt.Sprintf("small/f%02d.txt", i)] = 1000
	}
	writeFiles(t, r.src, files)
	r.rescan(t)
	small := filepath.Join(r.dst, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, small, "20m,nr_inodes=5")
	res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--retries", fmt.Sprint(faultRetries))...)...)
	// Which files got the few inodes depends on the order of the uploads.
	failed := checkGaveUp(t, res, nil, func(p string) bool { return strings.HasPrefix(p, "small") }, "no space")
	if len(failed) == 0 {
		t.Fatalf("no file failed: the inodes did not run out\n%s", res)
	}
	checkSubset(t, r.srcTree, r.dst, sftpSyncChecks, func(p string) bool { return !failed[p] && p != "small" })
}
