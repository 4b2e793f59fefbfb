package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPHostKeyTypesPerHost runs ferry against a real sshd that holds
// ed25519, ecdsa and rsa host keys, with a known_hosts file that trusts one
// of them. The client's own preference puts ecdsa first; unless ferry asks
// for the key types that this host's known_hosts entries hold (and only
// this host's: the other lines hold other types for other hosts), the
// server answers with a key the file does not hold and the check fails.
func TestSFTPHostKeyTypesPerHost(t *testing.T) {
	otherECDSA, otherRSA := "ecdsa", "rsa"
	cases := []struct {
		name  string
		known string // the key type of the server's one trusted entry
		// others are key types of other hosts' entries written before it.
		others []string
	}{
		{"only ed25519 known", "ed25519", nil},
		{"only ed25519 known, other hosts with ecdsa and rsa", "ed25519", []string{otherECDSA, otherRSA}},
		{"only rsa known, another host with ecdsa", "ssh-rsa", []string{otherECDSA}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{HostKeyTypes: []string{"ecdsa", "rsa"}}, treecheck.Spec{Seed: 4, Dirs: 1, SmallFiles: 5})
			keys := map[string]ssh.PublicKey{}
			for _, k := range r.srv.HostKeys() {
				switch {
				case k.Type() == ssh.KeyAlgoED25519:
					keys["ed25519"] = k
				case strings.HasPrefix(k.Type(), "ecdsa-"):
					keys["ecdsa"] = k
				case k.Type() == ssh.KeyAlgoRSA:
					keys["ssh-rsa"] = k
				}
			}
			if len(keys) != 3 {
				t.Fatalf("server host keys: %v, want ed25519, ecdsa and rsa", keys)
			}
			var text strings.Builder
			for i, typ := range tc.others {
				// Other hosts' keys: the server's own keys of that type
				// under other names, the worst case for a file-wide choice.
				k := keys[map[string]string{"ecdsa": "ecdsa", "rsa": "ssh-rsa"}[typ]]
				text.WriteString(knownhosts.Line([]string{[]string{"192.0.2.9", "backup.example"}[i%2]}, k) + "\n")
			}
			text.WriteString(knownhosts.Line([]string{knownhosts.Normalize(r.proxy.Addr())}, keys[tc.known]) + "\n")
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(text.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			res := ferrybin.Run(t, time.Minute, r.syncArgs(kh)...)
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("sync to a server with several host key types, %s trusted: %s", tc.known, res)
			}
			r.check(t)
		})
	}
}
