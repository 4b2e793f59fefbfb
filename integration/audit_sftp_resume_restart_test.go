package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPResumeAfterKill SIGKILLs ferry in the middle of a large upload to
// the real sshd and runs it again: the new process must find the partial
// the dead one left, verify it and send only what is missing. The proxy
// counts the bytes of the second run, so a restart from byte zero, or a
// resume that drops far more than the writes in flight, fails the test.
func TestSFTPResumeAfterKill(t *testing.T) {
	const size = 48 << 20
	seed := testSeed(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: seed, LargeFiles: 1, LargeMin: size, LargeMax: size})
	p := ferrybin.Start(t, r.syncArgs(r.knownHosts, "--bwlimit", "16M")...)
	awaitPartial(t, p, r.dst, "", size/2)
	p.Kill()
	if res := p.Wait(); !res.Killed() {
		t.Fatalf("ferry was not killed mid-upload: %s", res)
	}
	r.checkTorn(t)
	// The server may still write what was in flight; let it settle.
	time.Sleep(300 * time.Millisecond)
	var partial int64
	_ = filepath.Walk(r.dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && backends.IsPartialName(fi.Name()) {
			partial = max(partial, fi.Size())
		}
		return nil
	})
	if partial < size/2 {
		t.Fatalf("the killed run left a partial of %d bytes, want at least %d", partial, size/2)
	}
	before, conns := r.proxy.BytesUp(), r.proxy.Accepted()
	res := ferrybin.Run(t, 2*time.Minute, append([]string{"-v"}, r.syncArgs(r.knownHosts)...)...)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("run after the kill: %s", res)
	}
	r.check(t)
	sent, dialled := r.proxy.BytesUp()-before, r.proxy.Accepted()-conns
	m := verifiedRE.FindStringSubmatch(res.Stderr)
	if m == nil {
		t.Fatalf("no \"resuming upload\" in the second run's log: it did not resume the partial\n%s", firstLines(res.Stderr, "upload", 10))
	}
	verified, _ := strconv.ParseInt(m[1], 10, 64)
	t.Logf("killed with a %.1f MiB partial; the next run resumed from %.1f MiB and sent %.1f MiB upstream over %d connections",
		float64(partial)/(1<<20), float64(verified)/(1<<20), float64(sent)/(1<<20), dialled)
	// A resume may drop the window of writes that could have been in
	// flight (two connections of 64 x 32 KiB), no more.
	if minKept := partial - 8<<20; verified < minKept {
		t.Errorf("resumed from %d, want at least %d of the %d-byte partial", verified, minKept, partial)
	}
	limit := int64(float64(size-verified)*(1+sftpOverhead)) + dialled*perConnBytes
	if sent > limit {
		t.Errorf("the second run sent %d bytes upstream for the %d missing, want at most %d", sent, size-verified, limit)
	}
	if strings.Contains(res.Stderr, "level=WARN msg=failed") {
		t.Errorf("the second run reported a failure:\n%s", firstLines(res.Stderr, "failed", 5))
	}
}
