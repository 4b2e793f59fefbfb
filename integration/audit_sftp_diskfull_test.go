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

// TestSFTPTargetDiskFull fills a 2 MiB tmpfs mounted in the target folder on
// the server's side of a real OpenSSH sshd. OpenSSH answers the write that
// hits the full disk with a generic SSH_FX_FAILURE, so only a statvfs
// check can tell it from a passing fault: the file that does not fit must
// fail once with a no-space error (permanent, none of the retries used),
// leave no partial, and every file outside the small disk must be synced.
func TestSFTPTargetDiskFull(t *testing.T) {
	requireRoot(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
	files := map[string]int{"small/big.bin": 6 << 20, "top.txt": 1000}
	for i := range 10 {
		files[fmt.Sprintf("free/f%02d.txt", i)] = 8 << 10
	}
	writeFiles(t, r.src, files)
	r.rescan(t)
	small := filepath.Join(r.dst, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		t.Fatal(err)
	}
	mountTmpfs(t, small, "2m")
	res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--retries", fmt.Sprint(faultRetries))...)...)
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
