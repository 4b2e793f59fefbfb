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

// TestSFTPProxyJump reaches the server through a jump host that the SSH
// config names with ProxyJump. The jump host is the same sshd behind the
// fault proxy, and the target's own address is the sshd's port, which ferry
// could also reach directly: only the bytes counted at the proxy show that
// the connection went through the jump host. A link reset at the jump host
// in the middle of an upload must be survived like any other (a new path
// through the jump host, the upload resumed); a jump host with an unknown
// key must stop the run before anything is sent to the target; and a
// ProxyCommand, which ferry does not run, must be refused rather than
// silently bypassed.
func TestSFTPProxyJump(t *testing.T) {
	const large = 32 << 20
	cases := []struct {
		name       string
		trustJump  bool   // known_hosts holds the jump host's key
		extra      string // more lines for the target's Host block
		reset      bool   // reset the jump host's link after half the large file
		wantExit   int
		wantInErr  []string
		wantResume bool
	}{
		{name: "through the jump host", trustJump: true, wantExit: ferrybin.ExitOK},
		{name: "reset at the jump host", trustJump: true, reset: true, wantExit: ferrybin.ExitOK, wantResume: true},
		{name: "jump host key unknown", wantExit: ferrybin.ExitUnreachable, wantInErr: []string{"jump host", "is unknown"}},
		{name: "ProxyCommand refused", trustJump: true, extra: "  ProxyCommand nc %h %p\n", wantExit: ferrybin.ExitUsage, wantInErr: []string{"ProxyCommand is not supported"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8, LargeFiles: 1, LargeMin: large, LargeMax: large}
			r := newSFTPRig(t, sshd.Options{}, spec)
			kh, err := os.ReadFile(r.srv.KnownHostsPath())
			if err != nil {
				t.Fatal(err)
			}
			if tc.trustJump {
				jump, err := os.ReadFile(r.knownHosts)
				if err != nil {
					t.Fatal(err)
				}
				kh = append(kh, jump...)
			}
			dir := t.TempDir()
			khPath := filepath.Join(dir, "known_hosts")
			if err := os.WriteFile(khPath, kh, 0o600); err != nil {
				t.Fatal(err)
			}
			jumpHost, jumpPort, _ := strings.Cut(r.proxy.Addr(), ":")
			host, port, _ := strings.Cut(r.srv.Addr(), ":")
			cfg := fmt.Sprintf("Host target\n  HostName %s\n  Port %s\n  User %s\n  ProxyJump jumper\n%s\nHost jumper\n  HostName %s\n  Port %s\n  User %s\n",
				host, port, r.srv.User(), tc.extra, jumpHost, jumpPort, r.srv.User())
			cfgPath := filepath.Join(dir, "ssh_config")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.reset {
				r.proxy.ResetAfter(large / 2)
			}
			res := ferrybin.Run(t, 2*time.Minute, "sync", r.src, "sftp://target"+r.dst, "--identity", r.srv.ClientKeyPath(),
				"--known-hosts", khPath, "--ssh-config", cfgPath, "--retries", "3")
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d\nssh config:\n%s\n%s", res.ExitCode, tc.wantExit, cfg, res)
			}
			if tc.wantExit != ferrybin.ExitOK {
				t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
				for _, s := range tc.wantInErr {
					if !strings.Contains(res.Stderr, s) {
						t.Errorf("error output lacks %q:\n%s", s, res.Stderr)
					}
				}
				if n, _ := countEntries(t, r.dst); n != 0 {
					t.Errorf("a refused run left %d entries on the target", n)
				}
				return
			}
			r.check(t)
			if up := r.proxy.BytesUp(); up < large {
				t.Errorf("%d bytes went through the jump host for a tree with a %d-byte file: ferry did not connect through it", up, large)
			}
			if tc.reset && r.proxy.Armed() {
				t.Fatalf("the reset never fired: %d bytes went through the jump host", r.proxy.BytesUp())
			}
			if resumed := verifiedRE.MatchString(res.Stderr); resumed != tc.wantResume {
				t.Errorf("upload resumed: %v, want %v\n%s", resumed, tc.wantResume, res.Stderr)
			}
		})
	}
}
