package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPWatchIdleKeepalive runs `ferry watch` to an sftp:// target behind
// a link that drops flows silent for 1.5 s, as NAT and firewalls do. With
// keepalives every 500 ms its one connection lives through 4 s without a
// change, and the next change is uploaded over that same connection; with
// keepalives too rare to help, the link drops it and the next change still
// arrives, over a connection rebuilt by itself. The second case shows the
// cut is real, so that the first proves the keepalive.
func TestSFTPWatchIdleKeepalive(t *testing.T) {
	const (
		idleCut = 1500 * time.Millisecond
		idle    = 4 * time.Second
	)
	cases := []struct {
		name      string
		keepalive string
		wantCut   bool
	}{
		{name: "keepalive within the idle cut keeps the connection", keepalive: "500ms"},
		{name: "keepalive too rare: connection cut, rebuilt for the next change", keepalive: "30s", wantCut: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seed := testSeed(t)
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: seed, Dirs: 2, SmallFiles: 20})
			args := append([]string{"watch"}, r.syncArgs(r.knownHosts,
				"--keepalive", tc.keepalive, "--keepalive-max-missed", "3", "--connections", "1",
				"--rescan-every", "0")[1:]...)
			p := ferrybin.Start(t, args...)
			defer func() {
				p.Signal(syscall.SIGTERM)
				select {
				case <-p.Done():
				case <-time.After(15 * time.Second):
					t.Errorf("ferry watch still running 15s after SIGTERM")
				}
				if res := p.Wait(); res.ExitCode != ferrybin.ExitOK {
					t.Errorf("ferry watch after SIGTERM: %s", res)
				}
			}()
			waitFor(t, p, 30*time.Second, "the initial sync", func() bool { return identical(r) })
			conns := r.proxy.Open()
			if len(conns) != 1 {
				t.Fatalf("%d connections open after the initial sync with --connections 1, want 1", len(conns))
			}
			c, accepted := conns[0], r.proxy.Accepted()

			ic := startIdleCutter(r.proxy, idleCut)
			defer ic.Stop()
			up0, down0 := c.BytesUp(), c.BytesDown()
			time.Sleep(idle)
			upIdle, downIdle := c.BytesUp()-up0, c.BytesDown()-down0
			t.Logf("keepalive %s, idle %v behind a %v idle cut: %d bytes up, %d down while idle; %d cuts",
				tc.keepalive, idle, idleCut, upIdle, downIdle, ic.cuts.Load())

			// A change after the idle period.
			data := newMemSource(t, 256<<10).data
			if err := os.WriteFile(filepath.Join(r.src, "after-idle.bin"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			r.rescan(t)
			waitFor(t, p, 30*time.Second, "the change after the idle period to arrive", func() bool { return identical(r) })
			if cuts := ic.cuts.Load(); (cuts > 0) != tc.wantCut {
				t.Fatalf("the idle link was cut %d times; want cuts: %v", cuts, tc.wantCut)
			}
			if tc.wantCut {
				if r.proxy.Accepted() == accepted {
					t.Errorf("the change arrived with no new connection after the cut")
				}
			} else {
				if upIdle == 0 || downIdle == 0 {
					t.Errorf("no keepalive traffic while idle: %d bytes up, %d down", upIdle, downIdle)
				}
				if got := r.proxy.Accepted(); got != accepted {
					t.Errorf("proxy accepted %d connections by the end, %d after the initial sync: want the same one kept", got, accepted)
				}
				if c.Closed() {
					t.Errorf("the connection of the initial sync closed")
				}
				if got := c.BytesUp() - up0 - upIdle; got < int64(len(data)) {
					t.Errorf("the kept connection carried %d bytes after the idle period, want the change's %d", got, len(data))
				}
			}
			r.check(t)
		})
	}
}

// identical reports whether the target matches the source tree, partials
// aside; an I/O error (a file renamed during the scan) counts as not yet.
func identical(r *sftpRig) bool {
	diff, err := treecheck.CompareTo(r.srcTree, r.dst, sftpSyncChecks)
	return err == nil && len(diff) == 0
}
