package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPBlackHoleDetectionScales black-holes an upload to the real sshd
// with two keepalive settings and holds the detection to interval x misses
// plus two seconds, and to no less than that product less an interval. The
// existing black-hole test allows ten seconds of slack over a 3 s bound, so
// a detector that waited twice as long as configured, or ignored the
// settings for a fixed few seconds, would pass it. The two windows here,
// [0.4 s, 2.9 s] and [4 s, 8 s], do not overlap: no detector that ignores
// the settings passes both.
func TestSFTPBlackHoleDetectionScales(t *testing.T) {
	const size = 64 << 20
	cases := []struct {
		interval time.Duration
		missed   int
	}{
		{300 * time.Millisecond, 3},
		{2 * time.Second, 3},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v x %d", tc.interval, tc.missed), func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: testSeed(t), LargeFiles: 1, LargeMin: size, LargeMax: size})
			r.proxy.FireAfter(size/4, faultproxy.FaultBlackHole)
			p := ferrybin.Start(t, r.syncArgs(r.knownHosts, "-v", "--retries", "3", "--keepalive", tc.interval.String(),
				"--keepalive-max-missed", fmt.Sprint(tc.missed), "--stall-timeout", "2m")...)
			fired := waitFor(t, p, 30*time.Second, "the black hole to fire", func() bool { return !r.proxy.Armed() })
			accepted := r.proxy.Accepted()
			waitFor(t, p, time.Minute, "ferry to dial again", func() bool { return r.proxy.Accepted() > accepted })
			r.proxy.Pass()
			res := p.Wait()
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync through a black hole: %s", res)
			}
			r.check(t)
			dead, ok := logTime(res.Stderr, "sftp connection dead")
			if !ok {
				t.Fatalf("no \"sftp connection dead\" in the log\n%s", res)
			}
			detect := dead.Sub(fired)
			bound := tc.interval*time.Duration(tc.missed) + 2*time.Second
			// The last sign of life may predate the black hole a little (an
			// interval, or half a second on a loaded machine).
			early := tc.interval*time.Duration(tc.missed) - max(tc.interval, 500*time.Millisecond)
			t.Logf("keepalive %v x %d: black hole detected after %v (window [%v, %v])", tc.interval, tc.missed, detect.Round(time.Millisecond), early, bound)
			if detect > bound || detect < early {
				t.Errorf("black hole detected after %v, want within [%v, %v]", detect, early, bound)
			}
		})
	}
}
