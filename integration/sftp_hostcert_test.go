package integration

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
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
	ca, other := newCA(t), newCA(t)
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
			lines := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(tc.ca.PublicKey()))
			if tc.plain {
				lines += string(plain)
			}
			// Refused, the error must say the host is unknown and name the
			// CA that signed its certificate.
			kh := writeTemp(t, "known_hosts", []byte(lines))
			if _, ok := r.runExpect(t, r.syncArgs(kh, tc.flags...), tc.wantExit, []string{"is unknown", ssh.FingerprintSHA256(ca.PublicKey())}); ok {
				r.check(t)
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
	ca := newCA(t)
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
			kh := writeTemp(t, "known_hosts", []byte(tc.lines))
			if _, ok := r.runExpect(t, r.syncArgs(kh, tc.flags...), tc.wantExit, []string{tc.wantInErr}); ok {
				r.check(t)
			}
		})
	}
}

// newCA returns a new ed25519 key to sign certificates with.
func newCA(t *testing.T) ssh.Signer {
	t.Helper()
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
