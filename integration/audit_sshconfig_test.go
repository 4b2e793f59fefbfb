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

// TestSFTPUserSSHConfig runs `ferry sync SRC sftp://ALIAS/PATH` with no SSH
// flags at all, HOME pointing at a fresh home directory and no ssh-agent:
// everything about the connection must come from ~/.ssh/config (the Host
// alias's HostName, Port, User, IdentityFile and UserKnownHostsFile, with ~
// expanded) or from the default ~/.ssh/known_hosts. Each case leaves one of
// those out or wrong, so that a setting ferry ignored shows as a run that
// succeeds where it must fail, or the other way round.
func TestSFTPUserSSHConfig(t *testing.T) {
	cases := []struct {
		name string
		// user, identity and knownHosts are the alias's settings; empty
		// leaves the line out.
		user, identity, knownHosts string
		// defaultKnownHosts writes ~/.ssh/known_hosts too.
		defaultKnownHosts bool
		wantExit          int
		wantInErr         string
	}{
		{name: "alias supplies everything", user: "=", identity: "~/keys/id_backup", knownHosts: "~/trust/hosts", wantExit: ferrybin.ExitOK},
		{name: "default known_hosts", user: "=", identity: "~/keys/id_backup", defaultKnownHosts: true, wantExit: ferrybin.ExitOK},
		{name: "no known_hosts anywhere", user: "=", identity: "~/keys/id_backup", wantExit: ferrybin.ExitUnreachable, wantInErr: ".ssh/known_hosts"},
		{name: "wrong User", user: "nobody-here", identity: "~/keys/id_backup", knownHosts: "~/trust/hosts", wantExit: ferrybin.ExitUnreachable, wantInErr: "nobody-here@"},
		{name: "no IdentityFile", user: "=", knownHosts: "~/trust/hosts", wantExit: ferrybin.ExitUnreachable, wantInErr: "no SSH key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: 9, Dirs: 2, SmallFiles: 8})
			home := t.TempDir()
			for _, d := range []string{".ssh", "keys", "trust"} {
				if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			key, err := os.ReadFile(r.srv.ClientKeyPath())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, "keys", "id_backup"), key, 0o600); err != nil {
				t.Fatal(err)
			}
			kh, err := os.ReadFile(r.knownHosts)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, "trust", "hosts"), kh, 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.defaultKnownHosts {
				if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), kh, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			host, port, _ := strings.Cut(r.proxy.Addr(), ":")
			var cfg strings.Builder
			// A decoy first: only the alias's own block may apply.
			fmt.Fprintf(&cfg, "Host decoy\n  HostName 192.0.2.1\n  Port 1\n  User decoy\n\n")
			fmt.Fprintf(&cfg, "Host backup-box\n  HostName %s\n  Port %s\n", host, port)
			if tc.user == "=" {
				fmt.Fprintf(&cfg, "  User %s\n", r.srv.User())
			} else if tc.user != "" {
				fmt.Fprintf(&cfg, "  User %s\n", tc.user)
			}
			if tc.identity != "" {
				fmt.Fprintf(&cfg, "  IdentityFile %s\n", tc.identity)
			}
			if tc.knownHosts != "" {
				fmt.Fprintf(&cfg, "  UserKnownHostsFile %s\n", tc.knownHosts)
			}
			if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(cfg.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := ferrybin.Command(t, "-v", "sync", r.src, "sftp://backup-box"+r.dst)
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
					env = append(env, kv)
				}
			}
			cmd.Env = append(env, "HOME="+home)
			res := ferrybin.RunCmd(t, time.Minute, cmd)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d\n~/.ssh/config:\n%s\n%s", res.ExitCode, tc.wantExit, cfg.String(), res)
			}
			if tc.wantExit == ferrybin.ExitOK {
				r.check(t)
				return
			}
			t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			if !strings.Contains(res.Stderr, tc.wantInErr) {
				t.Errorf("error output lacks %q:\n%s", tc.wantInErr, res.Stderr)
			}
			if n, _ := countEntries(t, r.dst); n != 0 {
				t.Errorf("a refused connection left %d entries on the target", n)
			}
		})
	}
}
