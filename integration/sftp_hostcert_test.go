package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPHostCertificate connects to a server whose host key is certified
// by a host CA, trusted in known_hosts by one @cert-authority line instead
// of a line per host, as fleets of servers are. A CA that did not sign the
// host's certificate is no trust: as in OpenSSH, the host's plain key is
// then looked up, found unknown and refused, or recorded on first use
// where that is allowed; a plain key already in known_hosts is accepted.
func TestSFTPHostCertificate(t *testing.T) {
	dir := t.TempDir()
	certPath := filepath.Join(dir, "host-cert.pub")
	r := newSFTPRig(t, sshd.Options{ExtraConfig: []string{"HostCertificate " + certPath}},
		treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8})
	newCA := func() ssh.Signer {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ca, other := newCA(), newCA()
	cert := &ssh.Certificate{
		Key: r.srv.HostKeys()[0], Serial: 1, CertType: ssh.HostCert, KeyId: "ferry-test-host",
		ValidPrincipals: []string{"127.0.0.1"},
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	// sshd read the certificate's path at start, before the file existed.
	if err := r.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(r.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		ca       ssh.Signer
		plain    bool     // known_hosts also holds the host's plain key
		flags    []string // more flags
		wantExit int
	}{
		{name: "trusted host CA", ca: ca, wantExit: ferrybin.ExitOK},
		{name: "another CA", ca: other, wantExit: ferrybin.ExitUnreachable},
		{name: "another CA, plain key known", ca: other, plain: true, wantExit: ferrybin.ExitOK},
		{name: "another CA, trust on first use", ca: other, flags: []string{"--accept-new-host-key"}, wantExit: ferrybin.ExitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			lines := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(tc.ca.PublicKey()))
			if tc.plain {
				lines += string(plain)
			}
			if err := os.WriteFile(kh, []byte(lines), 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := countEntries(t, r.dst)
			res := ferrybin.Run(t, time.Minute, r.syncArgs(kh, tc.flags...)...)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s", res.ExitCode, tc.wantExit, res)
			}
			if tc.wantExit == ferrybin.ExitOK {
				r.check(t)
				return
			}
			t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			if !strings.Contains(res.Stderr, "is unknown") || !strings.Contains(res.Stderr, ssh.FingerprintSHA256(ca.PublicKey())) {
				t.Errorf("the error does not say the host is unknown and name the CA that signed its certificate:\n%s", res.Stderr)
			}
			if n, _ := countEntries(t, r.dst); n != before {
				t.Errorf("a refused connection changed the target: %d entries, %d before", n, before)
			}
		})
	}
}
