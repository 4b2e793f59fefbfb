package sftp

import (
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/ferrysync/ferry/backends"
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

// TestHostKeyAlgorithmsHashedEntries is the per-host choice of host-key
// algorithms for a known_hosts file whose host names are hashed
// (HashKnownHosts yes, the default on Debian and Ubuntu): the server offers
// ecdsa, rsa and ed25519 and the file holds its ed25519 key under a hashed
// name. If the hashed entry is not matched when the algorithms are chosen,
// the client asks for ecdsa first and the check fails.
func TestHostKeyAlgorithmsHashedEntries(t *testing.T) {
	cases := []struct {
		name  string
		known int // index of the trusted host key: 0 ecdsa, 1 rsa, 2 ed25519
	}{
		{"ed25519 known", 2},
		{"rsa known", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{hostKeyTypes: []string{"ecdsa", "rsa", "ed25519"}})
			cfg := e.config()
			cfg.KnownHostsFile = e.knownHosts + ".hashed"
			line := knownhosts.Line([]string{knownhosts.HashHostname(knownhosts.Normalize(e.srv.addr))}, e.srv.hostKeys[tc.known].PublicKey())
			if err := os.WriteFile(cfg.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			b := dial(t, cfg)
			mustUpload(t, b, "f", newSource(1000, 6))
		})
	}
}

// TestRevokedHostKeyRefused: a host key marked @revoked in known_hosts is
// refused before authentication even when another line trusts it and trust
// on first use is on.
func TestRevokedHostKeyRefused(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.AcceptNewHostKey = true
	key := e.srv.hostKeys[0].PublicKey()
	text := "@revoked * " + string(ssh.MarshalAuthorizedKey(key)) + knownhosts.Line([]string{e.srv.addr}, key) + "\n"
	cfg.KnownHostsFile = e.knownHosts + ".revoked"
	if err := os.WriteFile(cfg.KnownHostsFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrAuth)
	if n := e.srv.authAttempts.Load(); n != 0 {
		t.Errorf("client offered %d keys to a server with a revoked host key", n)
	}
	if got, _ := os.ReadFile(cfg.KnownHostsFile); string(got) != text {
		t.Errorf("known_hosts changed:\n%s", got)
	}
	t.Logf("refused: %v", err)
}
