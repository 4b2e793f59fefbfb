package integration

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// These tests run the real ferry against the real sshd through the fault
// proxy and break the link or the server in the middle of a job: each job
// must end with the target identical to the source and no torn file at a
// final name.

// sftpOverhead is the share of upstream bytes that SSH and SFTP add to the
// file data of an upload. Each write request carries 32 KiB of data behind
// an SFTP header of 29 bytes plus the handle; the SSH channel's 32 KiB
// packet limit splits it into two channel messages, each with a 9-byte
// header, a packet header, 4 to 19 bytes of padding and a 16-byte tag:
// about 130 bytes per 32 KiB, 0.4%. One percent leaves room for the
// acknowledgement-driven keepalives and window adjustments.
const sftpOverhead = 0.01

// perConnBytes bounds what one connection sends upstream besides file data:
// key exchange, authentication with a public key signature, the SFTP
// session, and the stats, opens and renames of a single-file job.
const perConnBytes = 64 << 10

// maxResendRatio is the bound on a cut upload: all bytes sent, the
// first attempt's included, at most this many times the file.
const maxResendRatio = 1.1

var verifiedRE = regexp.MustCompile(`resuming upload.*verified=(\d+)`)

// TestSFTPResetMidUpload cuts the link in the middle of a 200 MiB upload.
// The job must finish by itself (per-file retry on a new connection), and
// the retry must resume from what reached the server, not start over: the
// proxy counts every byte that went upstream.
func TestSFTPResetMidUpload(t *testing.T) {
	const size = 200 << 20
	seed := testSeed(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: seed, LargeFiles: 1, LargeMin: size, LargeMax: size})
	r.proxy.ResetAfter(size / 2)
	res := ferrybin.Run(t, 2*time.Minute, r.syncArgs(r.knownHosts, "--retries", "3")...)
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("sync through a reset link: %s", res)
	}
	if r.proxy.Armed() {
		t.Fatalf("the reset never fired: the upload sent less than %d bytes upstream (%d)", size/2, r.proxy.BytesUp())
	}
	r.check(t)

	up, conns := r.proxy.BytesUp(), r.proxy.Accepted()
	m := verifiedRE.FindStringSubmatch(res.Stderr)
	if m == nil {
		t.Fatalf("no \"resuming upload\" in the log: the retry did not resume the partial\n%s", res)
	}
	verified, _ := strconv.ParseInt(m[1], 10, 64)
	// Exactly size/2 bytes went up before the cut; what came after carried
	// the rest of the file from the verified offset, so its excess over
	// that is the protocol's overhead (handshakes included).
	after := up - size/2
	t.Logf("200 MiB upload reset after %d MiB upstream: resumed from %.2f MiB (%.2f MiB of file data sent twice); %d bytes upstream in all (%.4fx the file) over %d connections in %v; overhead after the cut %.2f%%",
		size/2>>20, float64(verified)/(1<<20), float64(size/2-verified)/(1<<20), up, float64(up)/size, conns,
		res.Duration.Round(time.Millisecond), 100*(float64(after)/float64(size-verified)-1))
	// Whatever reached the server before the cut, less at most the window
	// of writes in flight (64 x 32 KiB per connection), is kept.
	if minKept := int64(size/2) - 3*(8<<20); verified < minKept {
		t.Errorf("resumed from %d bytes, want at least %d: the partial lost more than the writes in flight", verified, minKept)
	}
	fileSize := float64(size)
	limit := int64(maxResendRatio*fileSize*(1+sftpOverhead)) + conns*perConnBytes
	if up > limit {
		t.Errorf("%d bytes went upstream for a %d-byte file cut once at half (%.3fx), want at most %d (%.2fx plus protocol overhead)",
			up, size, float64(up)/size, limit, maxResendRatio)
	}
}

// TestSFTPBlackHoleMidUpload stops every byte in the middle of an upload
// while the sockets stay open. ferry must notice within seconds, not the
// minutes TCP would take, and once the link passes again finish the job by
// itself. Each case leaves one detector to do the work by setting the other
// far out, so that neither can stand in for a broken one: the keepalive (1s,
// 3 misses) and the stall detector (3s without an acknowledged byte).
func TestSFTPBlackHoleMidUpload(t *testing.T) {
	const (
		size = 96 << 20
		// slack covers the tick the loss falls between, a loaded machine,
		// and the backoff before the retry dials again.
		slack = 10 * time.Second
	)
	cases := []struct {
		name  string
		flags []string
		// expect is the detector's own bound; logMsg marks the detection
		// in ferry's log.
		expect time.Duration
		logMsg string
	}{
		{
			name:   "keepalive",
			flags:  []string{"--keepalive", "1s", "--keepalive-max-missed", "3", "--stall-timeout", "2m"},
			expect: 3 * time.Second, logMsg: "sftp connection dead",
		},
		{
			name:   "stall detector",
			flags:  []string{"--keepalive", "1m", "--keepalive-max-missed", "3", "--stall-timeout", "3s"},
			expect: 3 * time.Second, logMsg: "upload stalled",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: seed, LargeFiles: 1, LargeMin: size, LargeMax: size})
			r.proxy.FireAfter(size/4, faultproxy.FaultBlackHole)
			p := ferrybin.Start(t, r.syncArgs(r.knownHosts, append([]string{"-v", "--retries", "3"}, tc.flags...)...)...)

			// The black hole fires at an exact byte; note when.
			fired := waitFor(t, p, 30*time.Second, "the black hole to fire", func() bool { return !r.proxy.Armed() })
			accepted := r.proxy.Accepted()
			t.Logf("black hole after %d MiB upstream, %d connections open", size/4>>20, len(r.proxy.Open()))
			// Nothing reaches the server now: what lies at final names stays.
			r.checkTorn(t)

			// A client that gave up on its connections dials again: the
			// proxy sees it. Only then is the link let through.
			bound := tc.expect + slack
			redial := waitFor(t, p, bound+30*time.Second, "ferry to dial again", func() bool { return r.proxy.Accepted() > accepted })
			r.proxy.Pass()

			res := p.Wait()
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync through a black hole: %s", res)
			}
			r.check(t)
			dead, ok := logTime(res.Stderr, tc.logMsg)
			if !ok {
				t.Fatalf("no %q in the log: the %s did not detect the black hole\n%s", tc.logMsg, tc.name, res)
			}
			detect := dead.Sub(fired)
			t.Logf("black hole detected by the %s after %v (its bound %v), dialled again after %v; job done in %v",
				tc.name, detect.Round(time.Millisecond), tc.expect, redial.Sub(fired).Round(time.Millisecond), res.Duration.Round(time.Millisecond))
			if detect > bound {
				t.Errorf("black hole detected after %v, want within %v (%v + %v)", detect, bound, tc.expect, slack)
			}
			// The last sign of life may predate the black hole by up to
			// an interval (a keepalive answered just before, a write
			// acknowledged while bytes queued), so detection can come a
			// little before the bound; much sooner is a false alarm.
			if early := tc.expect - 1500*time.Millisecond; detect < early {
				t.Errorf("black hole declared after %v, before %v: too soon for the %s", detect, early, tc.name)
			}
		})
	}
}

// TestSFTPServerKilledMidJob kills sshd with every session during a job of
// many files and starts it again a moment later. ferry must either finish
// (retrying the files that failed) or exit 1 with a second run finishing
// the job; no file at a final name may be torn at any point.
func TestSFTPServerKilledMidJob(t *testing.T) {
	seed := testSeed(t)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{
		Seed: seed, Dirs: 20, SmallFiles: 600, Symlinks: 0,
		LargeFiles: 3, LargeMin: 4 << 20, LargeMax: 8 << 20,
	})
	var total int64
	for _, e := range r.srcTree {
		total += e.Size
	}
	// A cap keeps the job long enough to be hit in its middle on a fast
	// machine: about two seconds for the whole source.
	r.proxy.Bandwidth(total / 2)
	p := ferrybin.Start(t, r.syncArgs(r.knownHosts, "--retries", "5")...)
	waitFor(t, p, time.Minute, "a third of the source to go upstream", func() bool { return r.proxy.BytesUp() > total/3 })
	if err := r.srv.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := r.proxy.BytesUp()
	r.checkTorn(t)
	n, _ := countEntries(t, r.dst)
	if n >= len(r.srcTree) {
		t.Fatalf("sshd was killed after the job had put all %d entries in place: the test proved nothing", n)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := r.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	r.proxy.Bandwidth(0)
	res := p.Wait()
	t.Logf("sshd killed after %d of %d source bytes upstream with %d of %d entries in place, restarted 1.5s later; ferry: exit %d after %v",
		killedAt, total, n, len(r.srcTree), res.ExitCode, res.Duration.Round(time.Millisecond))
	switch res.ExitCode {
	case ferrybin.ExitOK:
	case ferrybin.ExitFailed:
		r.checkTorn(t)
		t.Logf("first run gave up on some files:\n%s", res.Stderr)
		if res2 := ferrybin.Run(t, time.Minute, r.syncArgs(r.knownHosts)...); res2.ExitCode != ferrybin.ExitOK {
			t.Fatalf("second run after the server came back: %s", res2)
		}
	default:
		t.Fatalf("sync with sshd killed and restarted: %s", res)
	}
	r.check(t)
}

// waitFor polls cond until it holds and returns when it first did. It
// fails the test if ferry ends first or timeout passes.
func waitFor(t *testing.T, p *ferrybin.Process, timeout time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now()
		}
		select {
		case <-p.Done():
			if cond() {
				return time.Now()
			}
			t.Fatalf("ferry ended before %s: %s", what, p.Wait())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}
