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

// TestSFTPCAPatternWithoutHostCertificate: a known_hosts that trusts a host
// CA for every host ("@cert-authority *") must not lock out a server that
// has no certificate. Its plain key is asked for and checked as usual:
// found in known_hosts, trusted on first use where allowed, else refused as
// unknown (not as a changed key).
func TestSFTPCAPatternWithoutHostCertificate(t *testing.T) {
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8})
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(r.knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	caLine := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
	for _, tc := range []struct {
		name      string
		lines     string
		flags     []string
		wantExit  int
		wantInErr string
	}{
		{name: "plain key known", lines: caLine + string(plain), wantExit: ferrybin.ExitOK},
		{name: "trust on first use", lines: caLine, flags: []string{"--accept-new-host-key"}, wantExit: ferrybin.ExitOK},
		{name: "unknown", lines: caLine, wantExit: ferrybin.ExitUnreachable, wantInErr: "is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, []byte(tc.lines), 0o600); err != nil {
				t.Fatal(err)
			}
			res := ferrybin.Run(t, time.Minute, r.syncArgs(kh, tc.flags...)...)
			if res.ExitCode != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s", res.ExitCode, tc.wantExit, res)
			}
			if tc.wantExit == ferrybin.ExitOK {
				r.check(t)
				return
			}
			t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
			if !strings.Contains(res.Stderr, tc.wantInErr) {
				t.Errorf("error output lacks %q:\n%s", tc.wantInErr, res.Stderr)
			}
		})
	}
}
