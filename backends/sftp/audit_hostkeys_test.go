package sftp

import (
	"net"
	"os"
	"strconv"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestHostKeyAlgorithmsScopedPerHost checks that the host-key algorithms
// asked of a server come from that host's own known_hosts entries, not from
// the whole file. The server offers ecdsa, rsa and ed25519 keys and only
// its ed25519 key is known; other entries of the file hold ecdsa and rsa
// keys for other hosts, one of them on the same address with another port.
// Algorithms taken from the whole file would put ecdsa first (the client's
// own preference), the server would answer with its ecdsa key, and the
// check would fail with a key mismatch.
func TestHostKeyAlgorithmsScopedPerHost(t *testing.T) {
	ecdsaOther := newHostKey(t, "ecdsa").PublicKey()
	rsaOther := newHostKey(t, "rsa").PublicKey()
	cases := []struct {
		name string
		// others returns known_hosts lines for hosts other than the
		// server, given the server's address.
		others func(addr string) []string
	}{
		{"no other hosts", func(string) []string { return nil }},
		{"other hosts with other key types", func(string) []string {
			return []string{
				knownhosts.Line([]string{"192.0.2.7"}, ecdsaOther),
				knownhosts.Line([]string{"backup.example"}, rsaOther),
			}
		}},
		{"same address, other port", func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			p, _ := strconv.Atoi(port)
			other := net.JoinHostPort(host, strconv.Itoa(p+1))
			return []string{knownhosts.Line([]string{knownhosts.Normalize(other)}, ecdsaOther)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{hostKeyTypes: []string{"ecdsa", "rsa", "ed25519"}})
			if typ := e.srv.hostKeys[2].PublicKey().Type(); typ != ssh.KeyAlgoED25519 {
				t.Fatalf("third host key is %s, want ed25519", typ)
			}
			// The other hosts' lines come first, as they would in a file
			// that grew over time.
			text := ""
			for _, l := range tc.others(e.srv.addr) {
				text += l + "\n"
			}
			text += knownhosts.Line([]string{e.srv.addr}, e.srv.hostKeys[2].PublicKey()) + "\n"
			cfg := e.config()
			cfg.KnownHostsFile = e.knownHosts + ".scoped"
			if err := os.WriteFile(cfg.KnownHostsFile, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			b := dial(t, cfg)
			mustUpload(t, b, "f", newSource(1000, 5))
			// The file itself is left as it was: nothing was recorded.
			if got, _ := os.ReadFile(cfg.KnownHostsFile); string(got) != text {
				t.Errorf("known_hosts changed by a verified dial:\n%s", got)
			}
		})
	}
}
